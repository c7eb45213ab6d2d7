"""Optional global co-registration of the reference to the HR raster (--coregister).

The shift is estimated between the band-mean HR image and the band-mean warped reference on a common decimated
grid: masked phase correlation (scikit-image's `phase_cross_correlation` with masks, Padfield 2012) gives the
whole-pixel shift while ignoring holes, then a parabola through the normalised cross-correlation at the
neighbouring shifts refines it to a fraction of a pixel.
"""

from __future__ import annotations

import logging

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT

from extendgan_geo.errors import GridMismatchError
from extendgan_geo.io.raster import HrRaster

logger = logging.getLogger(__name__)


def _flatten(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Standardise the valid pixels and set the rest to 0 (their mean), as float64."""
    out = np.zeros(image.shape, dtype=np.float64)
    v = image[valid].astype(np.float64)
    out[valid] = (v - v.mean()) / max(v.std(), 1e-9)
    return out


def estimate_shift(
    hr: HrRaster, ref: DatasetReader, indexes: tuple[int, ...], *, nodata: float | None, size: int = 512
) -> tuple[float, float]:
    """Estimate the (dx, dy) shift, in HR pixels, that moves the reference onto the HR raster.

    Args:
        hr: the HR raster.
        ref: the reference dataset.
        indexes: reference bands paired with `hr.indexes`.
        nodata: reference nodata override.
        size: longest side of the decimated comparison grid, px.

    Returns:
        (dx, dy) in HR pixels along the HR grid's column and row axes.

    Raises:
        GridMismatchError: too few pixels are valid in both images to estimate a shift.
    """
    from skimage.registration import phase_cross_correlation

    height, width = hr.shape
    factor = max(1.0, max(height, width) / size)
    shape = (max(1, round(height / factor)), max(1, round(width / factor)))
    data = hr.src.read(list(hr.indexes), out_shape=(len(hr.indexes), *shape), resampling=Resampling.average)
    mask = hr.src.read_masks(1, out_shape=shape) if hr.internal_mask else None
    alpha = hr.src.read(hr.alpha, out_shape=shape) if hr.alpha is not None else None
    hr_valid = ~hr.holes(hr.expand(data, alpha), mask)
    transform = hr.src.transform @ Affine.scale(width / shape[1], height / shape[0])
    with WarpedVRT(
        ref,
        crs=hr.src.crs,
        transform=transform,
        width=shape[1],
        height=shape[0],
        resampling=Resampling.bilinear,
        src_nodata=nodata if nodata is not None else ref.nodata,
        nodata=np.nan,
        dtype="float32",
    ) as vrt:
        ref_data = vrt.read(list(indexes), masked=True).filled(np.nan)
    ref_valid = np.isfinite(ref_data).all(axis=0)
    both = hr_valid & ref_valid
    if both.sum() < 64:
        raise GridMismatchError(
            f"--coregister found only {int(both.sum())} pixels valid in both rasters on a {shape} grid; "
            "expected a larger common valid area: drop --coregister"
        )
    fixed = _flatten(data.astype(np.float64).mean(axis=0), hr_valid)
    moving = _flatten(ref_data.astype(np.float64).mean(axis=0), ref_valid)
    coarse = phase_cross_correlation(  # type: ignore[no-untyped-call]
        fixed, moving, reference_mask=hr_valid, moving_mask=ref_valid
    )[0]
    shift = [float(s) + _refine(fixed, moving, hr_valid, ref_valid, coarse, axis) for axis, s in enumerate(coarse)]
    # The shift registers `moving` onto `fixed` as (row, col) on the decimated grid.
    dy, dx = (s * f for s, f in zip(shift, (height / shape[0], width / shape[1]), strict=True))
    logger.info("co-registration: reference shift dx=%.2f px, dy=%.2f px (HR pixels)", dx, dy)
    return dx, dy


def _ncc(fixed: np.ndarray, moving: np.ndarray, fmask: np.ndarray, mmask: np.ndarray, shift: np.ndarray) -> float:
    """Normalised cross-correlation of `fixed` with `moving` moved by an integer (row, col) shift."""
    dy, dx = (round(float(v)) for v in shift)
    moved = np.roll(moving, (dy, dx), axis=(0, 1))
    mvalid = np.roll(mmask, (dy, dx), axis=(0, 1))
    both = fmask & mvalid
    # np.roll wraps around: drop the wrapped rows and columns.
    if dy > 0:
        both[:dy] = False
    elif dy < 0:
        both[dy:] = False
    if dx > 0:
        both[:, :dx] = False
    elif dx < 0:
        both[:, dx:] = False
    a, b = fixed[both], moved[both]
    if a.size < 16:
        return -1.0
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-12))


def _refine(
    fixed: np.ndarray, moving: np.ndarray, fmask: np.ndarray, mmask: np.ndarray, coarse: np.ndarray, axis: int
) -> float:
    """Sub-pixel offset along `axis` from a parabola through the correlation at coarse - 1, coarse, coarse + 1."""
    step = np.zeros(2)
    step[axis] = 1
    lo, mid, hi = (_ncc(fixed, moving, fmask, mmask, coarse + k * step) for k in (-1, 0, 1))
    denom = lo - 2 * mid + hi
    if denom >= 0:  # not a maximum: keep the whole-pixel estimate
        return 0.0
    return float(np.clip(0.5 * (lo - hi) / denom, -0.5, 0.5))
