"""Mosaics of overlapping scenes on an in-process Dask cluster: grid, gap, seam buffer, kept pixels, CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner, Result
from distributed import Client, LocalCluster
from rasterio.features import geometry_mask
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rio_cogeo.cogeo import cog_validate
from scipy import ndimage

from extendgan_geo.cli.batch import mosaic
from extendgan_geo.config import FillConfig, OutputConfig, TileConfig
from extendgan_geo.errors import BandMismatchError, ConfigError, InputError, OutputExistsError
from extendgan_geo.mosaic import MosaicConfig, fill_mosaic, plan_mosaic, seam_band
from extendgan_geo.pipeline import FILL_MASK_SUFFIX

from .conftest import HR_CRS, HR_ORIGIN, HR_RES, scene

H, W = 120, 160
# Scenes as (row0, row1, col0, col1) of the mosaic grid, in priority order; they overlap pairwise.
RECTS = [(0, 70, 0, 90), (10, 80, 70, 160), (60, 120, 30, 110)]
HOLE_COVERED = (20, 30, 74, 88)  # a nodata hole of scene 0 that scene 1 covers: scene 1 shows through
HOLE_OPEN = (30, 45, 10, 30)  # a nodata hole of scene 0 that no scene covers: gap
CFG = FillConfig(ref_indexes=(2, 3, 4, 5), method="match", tiles=TileConfig(size=32, overlap=8))
SEAM = 8.0  # metres: 2 px


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as c,
    ):
        yield c


def truth() -> np.ndarray:
    return scene(H, W).astype(np.uint16)


def write_scene(path: Path, i: int, rect: tuple[int, int, int, int], crs: str = HR_CRS) -> Path:
    """Scene `i`: the truth over `rect`, brightened by 40 * i (so seams show), nodata 0, tiled 32."""
    r0, r1, c0, c1 = rect
    data = truth()[:, r0:r1, c0:c1] + np.uint16(40 * i)
    if i == 0:
        for hr0, hr1, hc0, hc1 in (HOLE_COVERED, HOLE_OPEN):
            data[:, hr0 - r0 : hr1 - r0, hc0 - c0 : hc1 - c0] = 0
    transform = from_origin(HR_ORIGIN[0] + c0 * HR_RES, HR_ORIGIN[1] - r0 * HR_RES, HR_RES, HR_RES)
    profile = {
        "driver": "GTiff",
        "width": c1 - c0,
        "height": r1 - r0,
        "count": 4,
        "dtype": "uint16",
        "nodata": 0,
        "crs": HR_CRS,
        "transform": transform,
        "tiled": True,
        "blockxsize": 32,
        "blockysize": 32,
    }
    if crs != HR_CRS:
        dt, dw, dh = calculate_default_transform(
            HR_CRS, crs, c1 - c0, r1 - r0, *rasterio.transform.array_bounds(r1 - r0, c1 - c0, transform)
        )
        out = np.zeros((4, dh, dw), np.uint16)
        reproject(data, out, src_transform=transform, src_crs=HR_CRS, dst_transform=dt, dst_crs=crs,
                  resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)  # fmt: skip
        data, profile = out, {**profile, "crs": crs, "transform": dt, "width": dw, "height": dh}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture
def scenes(tmp_path: Path) -> list[Path]:
    return [write_scene(tmp_path / f"s{i}.tif", i, rect) for i, rect in enumerate(RECTS)]


@pytest.fixture
def ref(make_reference: Callable[..., Path]) -> Path:
    return make_reference(height=H, width=W)


def composite() -> tuple[np.ndarray, np.ndarray]:
    """What the mosaic holds before filling: values and owner (-1 = no scene), first valid scene wins."""
    data = np.zeros((4, H, W), np.uint16)
    owner = np.full((H, W), -1)
    t = truth()
    for i, (r0, r1, c0, c1) in enumerate(RECTS):
        valid = np.zeros((H, W), bool)
        valid[r0:r1, c0:c1] = True
        if i == 0:
            for hr0, hr1, hc0, hc1 in (HOLE_COVERED, HOLE_OPEN):
                valid[hr0:hr1, hc0:hc1] = False
        take = valid & (owner < 0)
        data[:, take] = t[:, take] + np.uint16(40 * i)
        owner[take] = i
    return data, owner


def pixel_mask(geom: Any) -> np.ndarray:
    """Pixels of the mosaic grid whose centre is inside `geom`."""
    transform = from_origin(*HR_ORIGIN, HR_RES, HR_RES)
    return geometry_mask([geom], out_shape=(H, W), transform=transform, invert=True)


def hull() -> Any:
    x0, y0 = HR_ORIGIN
    boxes = [
        shapely.box(x0 + c0 * HR_RES, y0 - r1 * HR_RES, x0 + c1 * HR_RES, y0 - r0 * HR_RES) for r0, r1, c0, c1 in RECTS
    ]
    return shapely.convex_hull(shapely.union_all(boxes))


def expected_band(owner: np.ndarray, buffer: float) -> np.ndarray:
    """Pixels within `buffer` metres of a pixel that touches another scene's pixel (4-neighbours)."""
    seam = np.zeros(owner.shape, bool)
    for axis in (0, 1):
        a, b = np.moveaxis(owner, axis, 0)[1:], np.moveaxis(owner, axis, 0)[:-1]
        edge = (a != b) & (a >= 0) & (b >= 0)
        s = np.moveaxis(seam, axis, 0)
        s[1:] |= edge
        s[:-1] |= edge
    return (ndimage.distance_transform_edt(~seam) * HR_RES <= buffer) & (owner >= 0)


def read(path: Path | str) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


# --- the mosaic ---------------------------------------------------------------------------------------------


def test_mosaic_fills_the_gap_and_keeps_scene_pixels_outside_the_seam_buffer(scenes, ref, tmp_path, client):
    out = tmp_path / "mosaic.tif"
    steps = []
    result = fill_mosaic(
        scenes, ref, out, CFG, OutputConfig(), MosaicConfig(seam_buffer=SEAM, strip_rows=32), where=client,
        progress=lambda n, total: steps.append((n, total)),
    )  # fmt: skip
    assert result.strips == 4 == len(steps) and steps[-1] == (1, 4)
    expected, owner = composite()
    band = expected_band(owner, SEAM)
    inside = pixel_mask(hull())
    got = read(out)
    with rasterio.open(out) as src:
        assert (src.shape, src.crs.to_string(), src.res, src.nodata) == ((H, W), HR_CRS, (HR_RES, HR_RES), 0)
        assert src.transform == from_origin(*HR_ORIGIN, HR_RES, HR_RES)
        tags = src.tags()
    assert cog_validate(str(out))[0]

    keep = (owner >= 0) & ~band
    assert np.array_equal(got[:, keep], expected[:, keep])  # every scene pixel outside the seam buffer, bit for bit
    assert (got[:, 25, 80] == expected[:, 25, 80]).all() and owner[25, 80] == 1  # scene 1 through scene 0's hole
    assert (got[:, inside] != 0).all()  # no gap left inside the AOI (the reference is valid everywhere)
    assert (got[:, ~inside & (owner < 0)] == 0).all()  # outside the AOI, no scene: nodata
    assert (got[:, band] != expected[:, band]).any()  # the seam band was regenerated

    codes = read(str(out) + FILL_MASK_SUFFIX)[0]
    gap = inside & (owner < 0)
    assert np.array_equal(codes == 1, gap | band)
    assert result.gap_pixels == gap.sum() and result.seam_pixels == band.sum()
    assert result.filled_pixels == (gap | band).sum() and result.unfilled_pixels == 0
    assert tags["EGAN_MOSAIC_SCENES"] == "s0.tif;s1.tif;s2.tif" and tags["EGAN_METHOD"] == "match"
    assert tags["EGAN_FILLED_PIXELS"] == str(result.filled_pixels) and tags["EGAN_SEAM_PIXELS"] == str(band.sum())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no strip or partial left


def test_mosaic_with_an_aoi_and_without_seam_buffer(scenes, ref, tmp_path, client):
    x0, y0 = HR_ORIGIN
    aoi = shapely.box(x0, y0 - 100 * HR_RES, x0 + 60 * HR_RES, y0)  # the left part: rows 0-100, cols 0-60
    gpkg = tmp_path / "aoi.gpkg"
    gpd.GeoDataFrame(geometry=[aoi], crs=HR_CRS).to_crs("EPSG:4326").to_file(gpkg, layer="aoi")
    out = tmp_path / "aoi.tif"
    result = fill_mosaic(scenes, ref, out, CFG, OutputConfig(cog=False), MosaicConfig(aoi=str(gpkg)), where=client)
    expected, owner = composite()
    inside = pixel_mask(aoi)
    got = read(out)
    assert np.array_equal(got[:, owner >= 0], expected[:, owner >= 0])
    assert (got[:, inside] != 0).all()
    assert (got[:, ~inside & (owner < 0)] == 0).all()
    assert result.seam_pixels == 0 and result.gap_pixels == (inside & (owner < 0)).sum() > 0
    assert result.aoi == "aoi.gpkg"


def test_scene_in_another_crs_is_warped_onto_the_grid(scenes, ref, tmp_path, client):
    lonlat = write_scene(tmp_path / "ll.tif", 1, RECTS[1], crs="EPSG:4326")
    plan = plan_mosaic([scenes[0], lonlat, scenes[2]])
    assert plan.scenes[0].offset == (0, 0) and plan.scenes[1].offset is None and plan.scenes[2].offset == (60, 30)
    assert plan.crs.to_string() == HR_CRS and plan.res == HR_RES
    out = tmp_path / "warped.tif"
    fill_mosaic([scenes[0], lonlat, scenes[2]], ref, out, CFG, OutputConfig(), MosaicConfig(strip_rows=64),
                where=client)  # fmt: skip
    expected, owner = composite()
    got = read(out)
    on_grid = owner != 1
    assert np.array_equal(got[:, on_grid & (owner >= 0)], expected[:, on_grid & (owner >= 0)])
    core = np.zeros((H, W), bool)
    core[20:70, 95:150] = True  # well inside scene 1, away from its warped edges
    diff = np.abs(got[:, core].astype(int) - expected[:, core].astype(int))
    assert (diff == 0).mean() > 0.5 and diff.max() < 200  # nearest through lon/lat: same pixel, or a neighbour


def test_seam_band_is_both_sides_of_an_ownership_change():
    owner = np.zeros((5, 8), np.int32)
    owner[:, 4:] = 1
    owner[0, :] = -1  # no scene: not a seam
    band = seam_band(owner, np.ones(owner.shape, bool), 1.0, 1.0)
    assert band[1:, 2:6].all() and not band[1:, :2].any() and not band[1:, 6:].any()
    assert not band[0, :3].any()  # row 0 is no seam: only its pixels within 1 m of row 1's seam pixels are near
    assert not seam_band(owner, np.zeros(owner.shape, bool), 5.0, 1.0).any()  # outside the AOI: no seam


def test_mosaic_errors(scenes, ref, tmp_path):
    with pytest.raises(ConfigError, match="seam buffer"):
        MosaicConfig(seam_buffer=-1)
    with pytest.raises(ConfigError, match="no scene"):
        plan_mosaic([])
    odd = tmp_path / "odd.tif"
    with rasterio.open(odd, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint16", crs=HR_CRS,
                       transform=from_origin(*HR_ORIGIN, HR_RES, HR_RES)) as dst:  # fmt: skip
        dst.write(np.ones((3, 8, 8), np.uint16))
    with pytest.raises(InputError, match="same bands and data type"):
        plan_mosaic([scenes[0], odd])
    with pytest.raises(InputError, match="does not exist"):
        plan_mosaic(scenes, MosaicConfig(aoi=str(tmp_path / "none.gpkg")))
    (tmp_path / "taken.tif").write_text("x")
    with pytest.raises(OutputExistsError):
        fill_mosaic(scenes, ref, tmp_path / "taken.tif", CFG)


def test_cli_mosaic(scenes, ref, tmp_path):
    out = tmp_path / "cli.tif"
    args = [*scenes, "--ref", ref, "-o", out, "--seam-buffer", "8", "--strip-rows", "48", "--threads"]
    args += ["--workers", "2", "--method", "match", "--ref-bidx", "2,3,4,5", "--tile", "32", "--overlap", "8"]
    result = run_cli(*args)
    assert "mosaic of 3 scene(s), 160x120 px, in 3 strip(s)" in result.stderr
    assert "LocalCluster" in result.stderr
    expected, owner = composite()
    keep = (owner >= 0) & ~expected_band(owner, SEAM)
    assert np.array_equal(read(out)[:, keep], expected[:, keep])
    assert "already exists" in run_cli(*args, code=1).stderr


def run_cli(*args: Any, code: int = 0) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(mosaic, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def test_a_failing_strip_stops_the_mosaic_with_its_error_and_leaves_nothing(scenes, ref, tmp_path, client):
    out = tmp_path / "bad.tif"
    bad = FillConfig(ref_indexes=(2, 3, 4, 9), method="match", tiles=TileConfig(size=32, overlap=8))
    with pytest.raises(BandMismatchError, match=r"^strip \d+ \(rows \d+-\d+\): ") as info:
        fill_mosaic(scenes, ref, out, bad, mcfg=MosaicConfig(strip_rows=64), where=client)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ref.tif", *(p.name for p in scenes)])
