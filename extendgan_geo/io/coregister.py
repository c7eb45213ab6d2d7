"""Optional global co-registration of the reference to the HR raster (--coregister).

The shift is estimated by phase correlation (scikit-image's `phase_cross_correlation`, sub-pixel by upsampled
DFT) between the band-mean HR image and the band-mean warped reference, both on a common decimated grid, over the
pixels where both are valid (invalid pixels are set to the valid mean so they add no edges).
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
    hr_valid = ~hr.holes(_full_count(hr, data), mask)
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
    fixed = _flatten(data.astype(np.float64).mean(axis=0), both)
    moving = _flatten(ref_data.astype(np.float64).mean(axis=0), both)
    shift, _, _ = phase_cross_correlation(fixed, moving, upsample_factor=20, normalization=None)
    # phase_cross_correlation returns the (row, col) shift that registers `moving` onto `fixed`.
    dy, dx = (float(s) * f for s, f in zip(shift, (height / shape[0], width / shape[1]), strict=True))
    logger.info("co-registration: reference shift dx=%.2f px, dy=%.2f px (HR pixels)", dx, dy)
    return dx, dy


def _full_count(hr: HrRaster, data: np.ndarray) -> np.ndarray:
    """Place the selected bands back at their file positions so `HrRaster.holes` can index them."""
    full = np.zeros((hr.src.count, *data.shape[1:]), dtype=data.dtype)
    for k, band in enumerate(hr.indexes):
        full[band - 1] = data[k]
    if hr.alpha is not None:
        full[hr.alpha - 1] = hr.src.read(hr.alpha, out_shape=data.shape[1:])
    return full
