"""`--method match`: the reference mapped to HR radiometry by a per-band least-squares gain and bias.

In each window, HR = gain * ref + bias is fitted per band on the known HR pixels whose reference is valid, so a
radiometric gradient across the scene is followed window by window. A window with few known pixels (deep inside a
large hole) leans on a scene-wide fit from a sparse sample, in proportion to how many known pixels it has. This is
the baseline a learned model must beat, and a fast mode that needs no model.
"""

from __future__ import annotations

import logging

import numpy as np

from extendgan_geo.fillers.base import TileBatch

logger = logging.getLogger(__name__)


def fit_gain_bias(hr: np.ndarray, ref: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-band least-squares fit of hr ~ gain * ref + bias over the `known` pixels.

    Args:
        hr: (C, ...) HR values.
        ref: (C, ...) reference values on the same pixels.
        known: (...) bool, pixels to fit on.

    Returns:
        gain (C,), bias (C,) as float64, and the number of pixels used. With fewer than 2 pixels or a flat
        reference, the gain is 1 and the bias matches the means (or 0 when there are none).
    """
    n = int(known.sum())
    c = hr.shape[0]
    gain, bias = np.ones(c), np.zeros(c)
    if n == 0:
        return gain, bias, 0
    for b in range(c):
        x = ref[b][known].astype(np.float64)
        y = hr[b][known].astype(np.float64)
        mx, my = x.mean(), y.mean()
        var = ((x - mx) ** 2).mean()
        if n >= 2 and var > 1e-12 * max(mx * mx, 1.0):
            gain[b] = ((x - mx) * (y - my)).mean() / var
        bias[b] = my - gain[b] * mx
    return gain, bias, n


class MatchFiller:
    """Per-window radiometric matching of the reference to the known HR pixels.

    Args:
        bands: number of HR bands (= reference bands; band k of the reference is matched to band k of HR).
        min_known: share of known pixels in a window at which the window's own fit gets full weight.
    """

    name = "match"
    tile: int | None = None
    model_hash = ""
    supports_spread = True
    spread_methods = ("local", "fit")
    heals = True  # its prediction at the known pixels is the same fit as in the gap (extendgan_geo.heal)

    def __init__(self, bands: int, *, min_known: float = 0.05) -> None:
        self.bands: int | None = bands
        self.ref_bands: int | None = bands
        self.min_known = min_known
        self.scene_gain = np.ones(bands)
        self.scene_bias = np.zeros(bands)
        self.scene_pixels = 0
        self.scene_residual = 0.0
        # Set by the pipeline for --uncertainty-method fit: one extra channel, the RMS residual of the window's fit.
        self.spread = False
        self.spread_method = "local"

    def prepare(self, sample: TileBatch) -> None:
        """Fit the scene-wide gain and bias on a sparse sample of known pixels."""
        known = ~sample.gap[:, 0] & np.isfinite(sample.ref).all(axis=1)
        hr = np.moveaxis(sample.hr, 1, 0)
        ref = np.moveaxis(sample.ref, 1, 0)
        self.scene_gain, self.scene_bias, self.scene_pixels = fit_gain_bias(hr, ref, known)
        if self.scene_pixels:
            fit = self.scene_gain[:, None] * ref[:, known] + self.scene_bias[:, None]
            self.scene_residual = float(np.sqrt(np.mean((hr[:, known] - fit) ** 2)))
        logger.info(
            "match: scene fit on %d sample pixels: gain %s, bias %s",
            self.scene_pixels,
            np.round(self.scene_gain, 4).tolist(),
            np.round(self.scene_bias, 2).tolist(),
        )

    def __call__(self, batch: TileBatch) -> np.ndarray:
        """Predict each window as gain * reference + bias, per band.

        Returns:
            (N, C, T, T) float32; NaN where the reference has no data.
        """
        count, c, th, tw = batch.hr.shape
        out = np.empty((count, c + self.spread, th, tw), dtype=np.float32)
        full = self.min_known * batch.gap.shape[-1] * batch.gap.shape[-2]
        for i in range(len(batch)):
            ref, hr = batch.ref[i], batch.hr[i]
            known = ~batch.gap[i, 0] & np.isfinite(ref).all(axis=0)
            gain, bias, n = fit_gain_bias(hr, ref, known)
            # Shrink towards the scene fit when the window has few known pixels.
            w = min(1.0, n / full) if self.scene_pixels else 1.0
            gain = w * gain + (1 - w) * self.scene_gain
            bias = w * bias + (1 - w) * self.scene_bias
            out[i, :c] = gain[:, None, None] * ref + bias[:, None, None]
            if self.spread:
                # RMS residual over the window's known pixels (blended with the scene's as the fit is).
                res = float(np.sqrt(np.mean((hr[:, known] - out[i, :c][:, known]) ** 2))) if n else 0.0
                out[i, c] = w * res + (1 - w) * self.scene_residual
        return out
