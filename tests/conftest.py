"""Shared fixtures: synthetic HR rasters with holes and coarse references in another CRS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform, reproject

HR_CRS = "EPSG:32633"
HR_ORIGIN = (500000.0, 4000000.0)
HR_RES = 4.0


def scene(height: int, width: int, bands: int = 4, seed: int = 0) -> np.ndarray:
    """A smooth, textured multiband field in [500, 3500] (float64, (bands, height, width))."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = []
    for b in range(bands):
        field = 1500 + 3 * xx * (b + 1) / bands + 2 * yy + 300 * np.sin(xx / (9 + b)) * np.cos(yy / 14)
        out.append(field + rng.normal(0, 10, (height, width)))
    return np.clip(np.stack(out), 500, 3500)


def hole(height: int, width: int) -> np.ndarray:
    """A large rectangular hole plus a corner hole, True where missing."""
    gap = np.zeros((height, width), dtype=bool)
    gap[height // 4 : height // 4 + height // 3, width // 5 : width // 5 + width // 2] = True
    gap[-height // 6 :, -width // 6 :] = True
    return gap


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic HR GeoTIFF with holes; returns its path.

    Args (keywords): name, height, width, bands, dtype, kind ("nodata" | "mask" | "alpha" | "none"),
    gap (bool array or None for `hole()`), crs (None = no CRS), seed.
    """

    def _make(
        name: str = "hr.tif",
        *,
        height: int = 300,
        width: int = 340,
        bands: int = 4,
        dtype: str = "uint16",
        kind: str = "nodata",
        gap: np.ndarray | None = None,
        crs: str | None = HR_CRS,
        seed: int = 0,
        values: np.ndarray | None = None,
    ) -> Path:
        data = scene(height, width, bands, seed) if values is None else values
        if dtype == "uint8":
            data = data / 14.0
        data = data.astype(dtype)
        gap = hole(height, width) if gap is None else gap
        path = tmp_path / name
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": bands + (kind == "alpha"),
            "dtype": dtype,
            "tiled": True,
            "blockxsize": 128,
            "blockysize": 128,
            "compress": "deflate",
        }
        if crs is not None:
            profile.update(crs=crs, transform=from_origin(*HR_ORIGIN, HR_RES, HR_RES))
        if kind == "nodata":
            profile["nodata"] = 0
            data[:, gap] = 0
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
            dst.write(data, indexes=list(range(1, bands + 1)))
            dst.descriptions = tuple(f"band {i}" for i in range(1, dst.count + 1))
            if kind == "alpha":
                dst.write(np.where(gap, 0, 255).astype(dtype), bands + 1)
                dst.colorinterp = [ColorInterp.undefined] * bands + [ColorInterp.alpha]
            elif kind == "mask":
                dst.write_mask(np.where(gap, 0, 255).astype(np.uint8))
            if kind != "alpha":
                dst.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (bands - 1)
        return path

    return _make


@pytest.fixture
def make_reference(tmp_path: Path) -> Callable[..., Path]:
    """Write a reference of a `scene()` degraded 7.5x (30 m), gain/offset changed, in EPSG:4326.

    The reference has `bands + 2` bands: band 1 and the last are decoys, bands 2..bands+1 match HR 1..bands.
    """

    def _make(
        name: str = "ref.tif",
        *,
        height: int = 300,
        width: int = 340,
        bands: int = 4,
        seed: int = 0,
        crs: str = "EPSG:4326",
        nodata: float = 0,
        values: np.ndarray | None = None,
    ) -> Path:
        data = scene(height, width, bands, seed) if values is None else values
        hr_transform = from_origin(*HR_ORIGIN, HR_RES, HR_RES)
        res = HR_RES * 7.5
        margin = 2
        rw, rh = int(width * HR_RES / res) + 2 * margin, int(height * HR_RES / res) + 2 * margin
        rt = from_origin(HR_ORIGIN[0] - margin * res, HR_ORIGIN[1] + margin * res, res, res)
        coarse = np.zeros((bands + 2, rh, rw), np.float32)
        for k in range(bands):
            reproject(
                data[k] * 0.8 + 150,
                coarse[k + 1],
                src_transform=hr_transform,
                src_crs=HR_CRS,
                dst_transform=rt,
                dst_crs=HR_CRS,
                resampling=Resampling.average,
            )
        coarse[0] = 77
        coarse[-1] = 99
        bounds = rasterio.transform.array_bounds(rh, rw, rt)
        dt, dw, dh = calculate_default_transform(HR_CRS, crs, rw, rh, *bounds)
        out = np.full((bands + 2, dh, dw), nodata, np.float32)
        reproject(
            coarse,
            out,
            src_transform=rt,
            src_crs=HR_CRS,
            dst_transform=dt,
            dst_crs=crs,
            resampling=Resampling.bilinear,
            dst_nodata=nodata,
        )
        path = tmp_path / name
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=dw,
            height=dh,
            count=bands + 2,
            dtype="float32",
            crs=crs,
            transform=dt,
            nodata=nodata,
        ) as dst:
            dst.write(out)
        return path

    return _make


def coarsened(path: Path, factor: int, out: Path) -> Path:
    """Write `path` averaged `factor` x `factor` to `out` (e.g. the 7.5x `make_reference` at 4: 30x)."""
    from affine import Affine

    with rasterio.open(path) as src:
        shape = (src.count, src.height // factor, src.width // factor)
        profile = src.profile | {
            "height": shape[1],
            "width": shape[2],
            "transform": src.transform @ Affine.scale(factor),
        }
        data = src.read(out_shape=shape, resampling=Resampling.average)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """An in-process Dask cluster of 2 single-thread workers, one per test module (batch and mosaic tests)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as c,
    ):
        yield c
