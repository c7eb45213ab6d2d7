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


def axis_weights(length: int, overlap: int, blend: BlendKind, *, taper_start: bool, taper_end: bool) -> np.ndarray:
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
        out: np.ndarray = np.clip(np.rint(values), info.min, info.max).astype(dtype)
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


class UnitAccumulator:
    """Weighted sums of window predictions, kept only for the output units that windows touched.

    The scene is divided into units (rectangles aligned with the output file's blocks). A window's prediction
    is split over the units it overlaps; a unit is taken (blended, then written) once no later window can
    touch it, so memory holds only the units of about one window row that lie near the gap.

    Args:
        bands: prediction bands.
        scene: (height, width) of the scene.
        unit: (rows, cols) of a unit.
    """

    def __init__(self, bands: int, scene: tuple[int, int], unit: tuple[int, int]) -> None:
        self.bands, self.scene, self.unit = bands, scene, unit
        self.units: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def bounds(self, key: tuple[int, int]) -> tuple[int, int, int, int]:
        """(row_off, col_off, height, width) of a unit, clipped to the scene."""
        (i, j), (uh, uw), (height, width) = key, self.unit, self.scene
        r, c = i * uh, j * uw
        return r, c, min(uh, height - r), min(uw, width - c)

    def add(self, prediction: np.ndarray, weights: np.ndarray, origin: tuple[int, int]) -> None:
        """Add one window's prediction.

        Args:
            prediction: (bands, rows, cols) float32 in HR units; NaN where it is not defined.
            weights: (rows, cols) float32 window weights.
            origin: (row, col) of the window in the scene.
        """
        (r, c), (h, w), (uh, uw) = origin, weights.shape, self.unit
        ok = np.isfinite(prediction).all(axis=0)
        wt = np.where(ok, weights, np.float32(0.0))
        pw = np.where(ok, prediction, np.float32(0.0)) * wt
        for i in range(r // uh, (r + h - 1) // uh + 1):
            for j in range(c // uw, (c + w - 1) // uw + 1):
                ur, uc, un, um = self.bounds((i, j))
                r0, r1 = max(r, ur), min(r + h, ur + un)
                c0, c1 = max(c, uc), min(c + w, uc + um)
                if (i, j) not in self.units:
                    self.units[(i, j)] = (np.zeros((self.bands, un, um), np.float32), np.zeros((un, um), np.float32))
                sums, wsum = self.units[(i, j)]
                src = (slice(r0 - r, r1 - r), slice(c0 - c, c1 - c))
                dst = (slice(r0 - ur, r1 - ur), slice(c0 - uc, c1 - uc))
                sums[(slice(None), *dst)] += pw[(slice(None), *src)]
                wsum[dst] += wt[src]

    def finished(self, row: int) -> list[tuple[int, int]]:
        """Keys of the units held that end at or above scene row `row`, in row-major order."""
        return sorted(k for k in self.units if (k[0] + 1) * self.unit[0] <= row or row >= self.scene[0])

    def take(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Remove a unit and return its blended values.

        Returns:
            (bands, rows, cols) float32 blended predictions (NaN where no window contributed) and
            (rows, cols) bool, True where at least one window contributed.
        """
        sums, weights = self.units.pop(key)
        covered = weights > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(covered, sums / np.maximum(weights, _EPS), np.float32(np.nan))
        return values.astype(np.float32, copy=False), covered
