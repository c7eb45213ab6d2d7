"""The reference on the HR grid: any CRS, resolution and dtype, nodata kept as NaN.

The HR grid is the target and never moves. A coarse reference (e.g. Landsat at 30 m under a 1-4 m HR grid) is
warped by GDAL, with the chosen kernel, once onto an intermediate grid aligned with the HR grid but `factor`
times coarser (still at least 2x finer than the reference), and stored in a temporary tiled GeoTIFF. Windows are
then upsampled from it with weights that depend only on global pixel positions: Keys cubic convolution for the
cubic, cubic-spline and Lanczos kernels, linear for bilinear and average (which never overshoot), nearest for
nearest; linear wherever a cubic pixel would need a cell without data (reference nodata, or outside the
reference's footprint), renormalised over the cells with data. So a pixel's reference value never depends on
which window asked for it (per-window warps are not tile-invariant, rasterio#2839), and the expensive warp runs
over 1/factor^2 of the pixels. A reference less than 4x coarser is warped directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.coords import disjoint_bounds
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from extendgan_geo.errors import BandMismatchError, GridMismatchError
from extendgan_geo.io.raster import alpha_band, check_indexes, require_crs

logger = logging.getLogger(__name__)


def _fmt_bounds(bounds: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


def footprint_overlap(hr: DatasetReader, other: DatasetReader, role: str) -> float:
    """Share of the HR footprint covered by another raster's bounding box.

    Args:
        hr: the HR dataset (its CRS is the target).
        other: the other raster.
        role: name of the other raster in messages.

    Returns:
        Covered fraction of the HR bounding box, in (0, 1].

    Raises:
        GridMismatchError: the footprints are disjoint.
    """
    other_bounds = transform_bounds(other.crs, hr.crs, *other.bounds, densify_pts=21)
    if not all(math.isfinite(v) for v in other_bounds) or disjoint_bounds(hr.bounds, other_bounds):
        lonlat_other = transform_bounds(other.crs, "EPSG:4326", *other.bounds, densify_pts=21)
        lonlat_hr = transform_bounds(hr.crs, "EPSG:4326", *hr.bounds, densify_pts=21)
        raise GridMismatchError(
            f"{role} {other.name!r} does not overlap the HR raster: {role} bounds {_fmt_bounds(other.bounds)} "
            f"in {other.crs} (lon/lat {_fmt_bounds(lonlat_other)}), HR bounds {_fmt_bounds(tuple(hr.bounds))} "
            f"in {hr.crs} (lon/lat {_fmt_bounds(lonlat_hr)}); expected the same area: check both files' CRS"
        )
    left, bottom, right, top = hr.bounds
    ix = max(0.0, min(right, other_bounds[2]) - max(left, other_bounds[0]))
    iy = max(0.0, min(top, other_bounds[3]) - max(bottom, other_bounds[1]))
    return float(ix * iy / ((right - left) * (top - bottom)))


def default_ref_indexes(ref: DatasetReader, nbands: int) -> tuple[int, ...]:
    """Reference bands to pair with `nbands` HR bands when the user gave none.

    Raises:
        BandMismatchError: the reference has fewer usable bands than needed, or more (ambiguous).
    """
    usable = [i for i in ref.indexes if i != alpha_band(ref)]
    if len(usable) == nbands:
        return tuple(usable)
    raise BandMismatchError(
        f"the reference has {len(usable)} band(s) and {nbands} HR band(s) are filled; expected a band mapping: "
        f"pass --ref-bidx with {nbands} reference band number(s), e.g. --ref-bidx 2,3,4,5 for Landsat-8/9 B,G,R,NIR"
    )


# Cells of margin around the intermediate grid: cubic weights reach two cells beyond the cell holding a pixel.
_MARGIN = 2
# How each warp kernel is continued from the intermediate grid to the HR pixels.
_UPSAMPLING = {"nearest": "nearest", "bilinear": "linear", "average": "linear"}


def upsample_taps(start: int, length: int, factor: int, kernel: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """Interpolation taps from the intermediate grid, `factor` times coarser, for HR pixels [start, start + length).

    The grid has `_MARGIN` extra cells before the HR origin: cell j spans HR [(j - m) * factor, (j - m + 1) *
    factor) and its centre is at HR (j - m + 0.5) * factor. So HR pixel i (centre i + 0.5) sits at position
    (i + 0.5) / factor + m - 0.5 in units where cell j's centre is j, between cells floor(position) and
    floor(position) + 1, a fraction t of the way.

    Args:
        start: first HR pixel (row or column).
        length: number of HR pixels.
        factor: HR pixels per cell.
        kernel: "nearest" (1 tap: the cell holding the pixel), "linear" (2 taps) or "cubic" (4 taps: Keys
            cubic convolution with a = -0.5, GDAL's cubic; its weights sum to 1 and may be negative).

    Returns:
        Cell indexes (length, taps) and their weights (length, taps), float64.
    """
    pos = (np.arange(start, start + length, dtype=np.float64) + 0.5) / factor + _MARGIN - 0.5
    left = np.floor(pos).astype(np.int64)
    t = (pos - left)[:, None]
    if kernel == "nearest":
        return left[:, None] + (t > 0.5), np.ones((length, 1))
    if kernel == "linear":
        return left[:, None] + np.arange(2), np.hstack([1.0 - t, t])
    if kernel == "cubic":
        return left[:, None] + np.arange(-1, 3), _keys(np.hstack([1.0 + t, t, 1.0 - t, 2.0 - t]))
    raise ValueError(f"kernel must be nearest, linear or cubic, got {kernel!r}")


def _keys(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel at distances `x` (0 <= x <= 2)."""
    inner = ((a + 2) * x - (a + 3)) * x * x + 1
    outer = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return cast(np.ndarray, np.where(x <= 1, inner, outer))


@dataclass
class RefGrid:
    """The reference warped onto the HR grid.

    Attributes:
        indexes: reference bands read, 1-based, in HR band order.
        shift: (dx, dy) applied to the reference, in HR pixels (non-zero after co-registration).
        overlap: share of the HR footprint that the reference's bounding box covers.
        factor: HR pixels per intermediate pixel (1 = direct warp to the HR grid).
        kernel: how windows are upsampled from the intermediate grid: "nearest", "linear" or "cubic".
        scale: the reference's pixel size over the HR's (its scale factor).
    """

    source: WarpedVRT | rasterio.io.DatasetReader
    indexes: tuple[int, ...]
    shift: tuple[float, float]
    overlap: float
    factor: int
    kernel: str
    tmp: str | None = None
    vrt_source: tuple[str, dict[str, Any]] | None = None  # (reference path, WarpedVRT arguments) when factor is 1
    owns_tmp: bool = True
    scale: float = 1.0

    @property
    def _read_indexes(self) -> list[int]:
        """Bands of `source` to read: the reference's own, or 1..n of the intermediate file."""
        return list(range(1, len(self.indexes) + 1)) if self.tmp else list(self.indexes)

    @classmethod
    def build(
        cls,
        ref: DatasetReader,
        hr: DatasetReader,
        *,
        indexes: tuple[int, ...],
        nodata: float | None,
        resampling: str,
        shift: tuple[float, float] = (0.0, 0.0),
        tmpdir: str | None = None,
    ) -> RefGrid:
        """Warp `ref` onto the grid of `hr`.

        Args:
            ref: the reference dataset.
            hr: the HR dataset that defines the grid.
            indexes: reference bands to read, 1-based.
            nodata: reference nodata override; None = the file's.
            resampling: a rasterio Resampling name.
            shift: (dx, dy) in HR pixels to move the reference by (from co-registration).
            tmpdir: folder for the intermediate file (None = the system's).

        Raises:
            InputError: the reference is not georeferenced.
            GridMismatchError: the footprints are disjoint.
            BandMismatchError: a band index is out of range.
        """
        require_crs(ref, "reference")
        check_indexes(indexes, ref.count, "reference", "--ref-bidx")
        overlap = footprint_overlap(hr, ref, "reference")
        src_transform = ref.transform
        # Moving the reference by the estimated shift (HR pixels along the HR axes) is sampling it at positions
        # moved the other way: the shift is applied to the destination grid, in the HR CRS, so it works
        # whatever the reference's own CRS and units are.
        dx = shift[0] * hr.transform.a + shift[1] * hr.transform.b
        dy = shift[0] * hr.transform.d + shift[1] * hr.transform.e
        dst_grid = Affine.translation(-dx, -dy) @ hr.transform
        scale = _ratio(ref, hr)
        factor = _cell(scale)
        # The intermediate grid: HR-aligned, `factor` x coarser, `_MARGIN` cells of margin on each side.
        m = _MARGIN * factor
        transform = dst_grid @ Affine.translation(-m, -m) @ Affine.scale(factor)
        width, height = math.ceil(hr.width / factor) + 2 * _MARGIN, math.ceil(hr.height / factor) + 2 * _MARGIN
        vrt_kwargs: dict[str, Any] = {
            "src_transform": src_transform,
            "crs": hr.crs,
            "transform": transform if factor > 1 else dst_grid,
            "width": width if factor > 1 else hr.width,
            "height": height if factor > 1 else hr.height,
            "resampling": Resampling[resampling],
            "src_nodata": nodata if nodata is not None else ref.nodata,
            "nodata": np.nan,  # NaN never collides with a valid value (rasterio#3508)
            "dtype": "float32",
            "warp_mem_limit": 256,
        }
        if scale >= 1:
            # The reference is upsampled: GDAL's kernel must keep its own width. Left to itself GDAL derives the
            # scale from each destination chunk, and on a grid of about a dozen rows or fewer (a mosaic strip, a
            # small raster) it widens the cubic and Lanczos kernels as if downsampling, so values would depend on
            # the grid's extent.
            vrt_kwargs.update(XSCALE=1, YSCALE=1)
        vrt = WarpedVRT(ref, **vrt_kwargs)
        kernel = _UPSAMPLING.get(resampling, "cubic")
        if factor == 1:
            return cls(
                vrt, tuple(indexes), shift, overlap, factor, kernel, vrt_source=(ref.name, vrt_kwargs), scale=scale
            )
        tmp = _materialize(vrt, indexes, tmpdir)
        vrt.close()
        logger.info("reference warped once to a %dx%d grid (%d HR px per cell)", width, height, factor)
        return cls(rasterio.open(tmp), tuple(indexes), shift, overlap, factor, kernel, tmp, scale=scale)

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """Read the reference under an HR window.

        Returns:
            (bands, height, width) float32, NaN where the reference has no data.
        """
        if self.factor == 1:
            # dst nodata is NaN, so a plain read already marks missing pixels; masked=True would warp twice.
            window = Window(col_off, row_off, width, height)
            return cast(np.ndarray, self.source.read(indexes=self._read_indexes, window=window))
        f = self.factor
        iy, wy = upsample_taps(row_off, height, f, self.kernel)
        ix, wx = upsample_taps(col_off, width, f, self.kernel)
        r0, c0 = int(iy.min()), int(ix.min())
        window = Window(c0, r0, int(ix.max()) - c0 + 1, int(iy.max()) - r0 + 1)
        coarse = self.source.read(indexes=self._read_indexes, window=window)
        iy, ix = iy - r0, ix - c0
        # Interpolation over the cells with data, renormalised by their weights: next to a cell without data (the
        # reference's edge or nodata) a pixel takes its valid neighbours, so the reference reaches the last HR
        # pixel it covers; NaN only where no contributing cell has data. Cubic weights, which can be negative,
        # are used only where all four cells in each direction have data; elsewhere the pixel is linear.
        ok = np.isfinite(coarse)
        filled = np.where(ok, coarse, 0.0).astype(np.float32)
        if self.kernel == "cubic":
            out = _interp(filled, iy, wy, ix, wx)
            lacking = _interp((~ok).astype(np.float32), iy, wy != 0, ix, wx != 0) > 0
            if not lacking.any():
                return out
            iy, wy = upsample_taps(row_off, height, f, "linear")
            ix, wx = upsample_taps(col_off, width, f, "linear")
            iy, ix = iy - r0, ix - c0
        num = _interp(filled, iy, wy, ix, wx)
        den = _interp(ok.astype(np.float32), iy, wy, ix, wx)
        with np.errstate(invalid="ignore", divide="ignore"):
            linear = np.where(den > 1e-6, num / den, np.float32(np.nan)).astype(np.float32)
        return linear if self.kernel != "cubic" else np.where(lacking, linear, out)

    def reopen(self) -> RefGrid:
        """The same grid on new file handles (for a forked worker process); its close() keeps the parent's file."""
        if self.tmp:
            return dataclasses.replace(self, source=rasterio.open(self.tmp), owns_tmp=False)
        assert self.vrt_source is not None
        path, kwargs = self.vrt_source
        return dataclasses.replace(self, source=WarpedVRT(rasterio.open(path), **kwargs))

    def close(self) -> None:
        """Close the reference view and delete the intermediate file (when this grid made it)."""
        self.source.close()
        if self.tmp and self.owns_tmp:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.tmp)


def _interp(coarse: np.ndarray, iy: np.ndarray, wy: np.ndarray, ix: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """Separable interpolation of (bands, rows, cols) cells: rows `iy` weighted by `wy`, then columns `ix` by `wx`.

    Taps are summed one at a time, in a fixed order, so a pixel's value does not depend on the window read.
    """
    wy32, wx32 = wy.astype(np.float32), wx.astype(np.float32)
    a = coarse[:, iy[:, 0]] * wy32[None, :, 0, None]
    for k in range(1, iy.shape[1]):
        a += coarse[:, iy[:, k]] * wy32[None, :, k, None]
    out = a[:, :, ix[:, 0]] * wx32[None, None, :, 0]
    for k in range(1, ix.shape[1]):
        out += a[:, :, ix[:, k]] * wx32[None, None, :, k]
    return out


def _factor(ref: DatasetReader, hr: DatasetReader) -> int:
    """HR pixels per intermediate cell for this reference and HR grid."""
    return _cell(_ratio(ref, hr))


def _cell(scale: float) -> int:
    """HR pixels per intermediate cell: half the reference/HR resolution ratio, 1 below a ratio of 4."""
    return max(1, int(scale // 2)) if scale >= 4 else 1


def _ratio(ref: DatasetReader, hr: DatasetReader) -> float:
    """The reference's pixel size over the HR's, in the HR CRS (geometric mean of both axes).

    The intermediate grid of `RefGrid.build` has half that many HR pixels per cell (1 below a ratio of 4).
    """
    left, bottom, right, top = transform_bounds(ref.crs, hr.crs, *ref.bounds, densify_pts=21)
    ref_res = math.sqrt((right - left) * (top - bottom) / (ref.width * ref.height))
    return float(ref_res / math.sqrt(abs(hr.transform.determinant)))


def _materialize(vrt: WarpedVRT, indexes: tuple[int, ...], tmpdir: str | None) -> str:
    """Write the warped bands to a temporary tiled float32 GeoTIFF and return its path."""
    fd, path = tempfile.mkstemp(prefix=".egan-ref.", suffix=".tif", dir=tmpdir)
    os.close(fd)
    profile = {
        "driver": "GTiff",
        "width": vrt.width,
        "height": vrt.height,
        "count": len(indexes),
        "dtype": "float32",
        "crs": vrt.crs,
        "transform": vrt.transform,
        "nodata": np.nan,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "zstd",
        "zstd_level": 1,
        "bigtiff": "if_safer",
    }
    try:
        with rasterio.open(path, "w", **profile) as dst:
            for _, window in dst.block_windows(1):
                dst.write(vrt.read(indexes=list(indexes), window=window), window=window)
    except Exception:
        os.remove(path)
        raise
    return path
