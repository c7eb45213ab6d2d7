"""Non-learned floor baselines: the reference as it is, and GDAL's inverse-distance fill without a reference.

They run through the same engine as `match` and `gan` (same windows, blending, outputs), so `egan-fill evaluate`
compares methods, not plumbing.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from extendgan_geo.fillers.base import TileBatch


class ReferenceFiller:
    """`--method reference`: the reference warped onto the HR grid, values taken as they are.

    Only meaningful when the reference is already in HR units (same sensor and processing level); otherwise it
    shows how far the raw reference is from the HR radiometry, the bar every other method must clear.
    """

    name = "reference"
    tile: int | None = None
    min_tile = None
    model_hash = ""

    def __init__(self, bands: int) -> None:
        self.bands: int | None = bands
        self.ref_bands: int | None = bands

    def prepare(self, sample: TileBatch) -> None:
        """Nothing to fit."""

    def __call__(self, batch: TileBatch) -> np.ndarray:
        """(N, C, T, T) float32: the reference, NaN where it has no data."""
        return np.asarray(batch.ref, dtype=np.float32).copy()


class FillnodataFiller:
    """`--method fillnodata`: GDAL's inverse-distance interpolation from the gap edges (rasterio.fill.fillnodata).

    Uses no reference at all: the floor a reference-guided method must clear by far. Windows are large
    (`min_tile`, or the whole scene when smaller) so that most gaps see their edges; gap pixels farther than
    `max_search_distance` from any known pixel of their window are left unfilled (NaN) and counted as such.

    Args:
        bands: HR band count.
        max_search_distance: GDAL's search radius in px (None = the window size).
        smoothing_iterations: GDAL's 3x3 smoothing passes over the filled area.
    """

    name = "fillnodata"
    tile: int | None = None
    min_tile = 2048
    model_hash = ""

    def __init__(self, bands: int, *, max_search_distance: float | None = None, smoothing_iterations: int = 0) -> None:
        self.bands: int | None = bands
        self.ref_bands: int | None = None
        self.max_search_distance = max_search_distance
        self.smoothing_iterations = smoothing_iterations

    def prepare(self, sample: TileBatch) -> None:
        """Nothing to fit."""

    def __call__(self, batch: TileBatch) -> np.ndarray:
        """(N, C, T, T) float32 interpolated from each window's known pixels; NaN out of reach."""
        from rasterio.fill import fillnodata

        out = np.full(batch.hr.shape, np.nan, dtype=np.float32)
        for i in range(len(batch)):
            known = ~batch.gap[i, 0]
            if not known.any():
                continue
            reach = float(self.max_search_distance or max(known.shape))
            far = ndimage.distance_transform_edt(~known) > reach
            for b in range(batch.hr.shape[1]):
                band = np.ascontiguousarray(batch.hr[i, b], dtype=np.float32)
                filled = fillnodata(
                    band,
                    mask=known.astype(np.uint8),
                    max_search_distance=reach,
                    smoothing_iterations=self.smoothing_iterations,
                )
                out[i, b] = np.where(far, np.nan, filled)
        return out
