"""Feathered blending of window predictions, the rolling strip accumulator and the dtype cast (numpy only).

A pixel's value is the weighted mean of the predictions of every window that covers it, with weights that fall
off smoothly towards a window's inner edges and stay 1 at the scene border (no taper there). Predictions are
accumulated in a strip that only spans the rows still in use, so memory does not grow with scene height.
"""

from __future__ import annotations

import numpy as np

from extendgan_geo.config import BlendKind

# Keeps the weight sum of a pixel covered only by ramps away from zero.
_EPS = 1e-6


def ramp(overlap: int, blend: BlendKind) -> np.ndarray:
    """Rising edge of the window weight, length `overlap`.

    A raised cosine or a linear ramp sampled at pixel centres, so that the rising edge of one window and the
    falling edge of its neighbour sum to exactly 1 when they overlap by `overlap` px.

    Returns:
        (overlap,) float32 in (0, 1).
    """
    t = (np.arange(overlap, dtype=np.float64) + 0.5) / max(overlap, 1)
    if blend == "cosine":
        return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)
    if blend == "linear":
        return t.astype(np.float32)
    return np.ones(overlap, dtype=np.float32)


def axis_weights(
    length: int, overlap: int, blend: BlendKind, *, taper_start: bool, taper_end: bool
) -> np.ndarray:
    """1-D window weights along one axis, tapered only on sides that face another window.

    Returns:
        (length,) float32.
    """
    w = np.ones(length, dtype=np.float32)
    n = min(overlap, length // 2)
    if n == 0 or blend == "none":
        return w
    edge = ramp(n, blend)
    if taper_start:
        w[:n] = edge
    if taper_end:
        w[length - n :] = np.minimum(w[length - n :], edge[::-1])
    return w


def window_weights(
    shape: tuple[int, int],
    overlap: int,
    blend: BlendKind,
    *,
    origin: tuple[int, int],
    scene: tuple[int, int],
) -> np.ndarray:
    """2-D separable weights of the window at `origin` in a scene of shape `scene`.

    Args:
        shape: (rows, cols) of the window inside the scene.
        overlap: ramp length, px.
        blend: ramp profile.
        origin: (row, col) of the window's top-left pixel.
        scene: (height, width) of the scene.

    Returns:
        (rows, cols) float32 weights.
    """
    (h, w), (r, c), (height, width) = shape, origin, scene
    wy = axis_weights(h, overlap, blend, taper_start=r > 0, taper_end=r + h < height)
    wx = axis_weights(w, overlap, blend, taper_start=c > 0, taper_end=c + w < width)
    return np.outer(wy, wx)


def cast_to_dtype(values: np.ndarray, dtype: np.dtype, nodata: float | None) -> np.ndarray:
    """Round, clip and cast predicted values so they are valid pixels of `dtype`, never equal to `nodata`.

    Args:
        values: float array of predictions in the HR value range.
        dtype: target numpy dtype.
        nodata: the output's nodata value (None if it has none).

    Returns:
        Array of `dtype`, same shape as `values`.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = np.clip(np.rint(values), info.min, info.max).astype(dtype)
        if nodata is not None and not np.isnan(nodata) and info.min <= nodata <= info.max:
            # A filled pixel equal to nodata would read as a hole again: nudge it one step inwards.
            step = 1 if nodata < info.max else -1
            out[out == dtype.type(nodata)] = dtype.type(nodata + step)
        return out
    info_f = np.finfo(dtype)
    out = np.clip(np.nan_to_num(values, nan=0.0), info_f.min, info_f.max).astype(dtype)
    if nodata is not None and not np.isnan(nodata):
        hit = out == dtype.type(nodata)
        out[hit] = np.nextafter(out[hit], dtype.type(np.inf))
    return out


class StripAccumulator:
    """Weighted sums of window predictions over a band of full-width rows.

    Rows are added at the bottom as window rows advance and taken from the top once no later window touches
    them, so at most about one window height plus one output block of rows is held.

    Attributes:
        top: scene row of the first row held.
        sums: (bands, rows, width) float32 sum of weight x prediction.
        weights: (rows, width) float32 sum of weights.
    """

    def __init__(self, bands: int, width: int) -> None:
        self.top = 0
        self.sums = np.zeros((bands, 0, width), dtype=np.float32)
        self.weights = np.zeros((0, width), dtype=np.float32)

    @property
    def bottom(self) -> int:
        """Scene row just below the last row held."""
        return self.top + self.weights.shape[0]

    def extend_to(self, row: int) -> None:
        """Grow the strip with zero rows so that it holds scene rows up to `row` (exclusive)."""
        extra = row - self.bottom
        if extra > 0:
            bands, _, width = self.sums.shape
            self.sums = np.concatenate([self.sums, np.zeros((bands, extra, width), np.float32)], axis=1)
            self.weights = np.concatenate([self.weights, np.zeros((extra, width), np.float32)], axis=0)

    def add(self, prediction: np.ndarray, weights: np.ndarray, origin: tuple[int, int]) -> None:
        """Add one window's prediction.

        Args:
            prediction: (bands, rows, cols) float32 in HR units; NaN where it is not defined.
            weights: (rows, cols) float32 window weights.
            origin: (row, col) of the window in the scene.
        """
        r, c = origin[0] - self.top, origin[1]
        h, w = weights.shape
        ok = np.isfinite(prediction).all(axis=0)
        wt = np.where(ok, weights, np.float32(0.0))
        self.sums[:, r : r + h, c : c + w] += np.where(ok, prediction, np.float32(0.0)) * wt
        self.weights[r : r + h, c : c + w] += wt

    def take(self, nrows: int) -> tuple[np.ndarray, np.ndarray]:
        """Remove the first `nrows` rows and return their blended values.

        Returns:
            (bands, nrows, width) float32 blended predictions (NaN where no window contributed) and
            (nrows, width) bool, True where at least one window contributed.
        """
        sums, weights = self.sums[:, :nrows], self.weights[:nrows]
        covered = weights > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(covered, sums / np.maximum(weights, _EPS), np.float32(np.nan))
        self.sums = self.sums[:, nrows:].copy()
        self.weights = self.weights[nrows:].copy()
        self.top += nrows
        return values.astype(np.float32, copy=False), covered
