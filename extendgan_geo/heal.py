"""Edge healing: carry the residual of the known pixels next to the gap a few pixels into it.

A filler predicts every pixel of a window, the known ones too. Just outside the gap the difference between the
known pixels and the prediction says how far the prediction is off there; that difference, smoothed along the gap
edge (a normalised Gaussian average over a ring of known pixels) and fading with the distance into the gap, is
added to the prediction inside the gap. The step at the gap edge shrinks to what the texture itself has, and the
pixels deep inside the gap are left as predicted. The reach grows with the reference's scale factor (reference
pixel / HR pixel), the distance over which a coarse reference's errors stay correlated.

Settings were chosen on training rasters of the corpus only (never on the validation files), on `match` fills at
scale factors 1.5-10: sigma = max(0.5, 0.25 x scale) px, e-folding distance = 0.5 x max(2, scale) px.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SIGMA_PER_SCALE = 0.25
REACH_PER_SCALE = 0.5


def heal_window(pred: np.ndarray, hr: np.ndarray, gap: np.ndarray, scale: float) -> np.ndarray:
    """Heal one window.

    Args:
        pred: (C, H, W) float32 prediction in file units; NaN where the filler has none.
        hr: (C, H, W) HR values, valid outside the gap.
        gap: (H, W) bool, True where the pixel is filled.
        scale: reference pixel size over HR pixel size (>= 1).

    Returns:
        (C, H, W) float32: `pred` with the correction added inside the gap (unchanged outside it).
    """
    if not gap.any() or gap.all():
        return pred
    sigma = max(0.5, SIGMA_PER_SCALE * scale)
    reach = REACH_PER_SCALE * max(2.0, scale)
    known = ~gap
    inside = ndimage.distance_transform_edt(gap)  # distance of a gap pixel to the nearest known pixel
    outside = ndimage.distance_transform_edt(known)  # distance of a known pixel to the nearest gap pixel
    ring = known & (outside <= max(2.0, 2.0 * sigma)) & np.isfinite(pred).all(axis=0)
    weight = ndimage.gaussian_filter(ring.astype(np.float64), sigma, mode="nearest")
    fade = np.where(gap, np.exp(-inside / reach), 0.0) * (weight > 1e-3)
    out = np.empty_like(pred)
    for b in range(pred.shape[0]):
        residual = np.where(ring, hr[b].astype(np.float64) - np.nan_to_num(pred[b]), 0.0)
        smooth = ndimage.gaussian_filter(residual, sigma, mode="nearest") / np.maximum(weight, 1e-12)
        out[b] = pred[b] + (smooth * fade).astype(np.float32)
    return out


def heals(filler: object, enabled: bool) -> bool:
    """Whether a run heals: `--heal` is on and the filler's prediction at known pixels measures its error in the gap.

    Only `match` says so (`heals = True`). `gan` does not: the network sees the known pixels and shapes the edge
    itself, and healing its output made it worse (docs/usage.md); the floor baselines are never healed.
    """
    return enabled and bool(getattr(filler, "heals", False))


def heal_batch(pred: np.ndarray, hr: np.ndarray, gap: np.ndarray, scale: float, bands: int) -> np.ndarray:
    """Heal the first `bands` channels of each window of a batch (extra channels, e.g. a spread, stay).

    Args:
        pred: (N, C', T, T) filler output, C' >= bands.
        hr: (N, bands, T, T) HR values (0 inside the gap).
        gap: (N, 1, T, T) bool.
        scale: reference pixel size over HR pixel size.
        bands: channels that hold values.
    """
    out = pred.copy()
    for i in range(pred.shape[0]):
        out[i, :bands] = heal_window(pred[i, :bands], hr[i], gap[i, 0], scale)
    return out
