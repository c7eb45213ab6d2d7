"""Fixed per-band scaling between file units and the model range, shared by training and filling (numpy).

Values are mapped linearly so that each band's low and high statistic (e.g. the 1st and 99th percentiles of the
training data) land on -1 and +1. The statistics are stored with the model and never recomputed per window
(per-window min/max scaling makes seams).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np


@dataclass(frozen=True)
class BandScaling:
    """Per-band linear map: model = 2 (x - low) / (high - low) - 1.

    Attributes:
        low: per-band value mapped to -1.
        high: per-band value mapped to +1.
    """

    low: tuple[float, ...]
    high: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.low) != len(self.high) or any(h <= lo for lo, h in zip(self.low, self.high, strict=True)):
            raise ValueError(f"expected one low < high pair per band, got low={self.low}, high={self.high}")

    @property
    def bands(self) -> int:
        """Number of bands."""
        return len(self.low)

    def _ab(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        shape = (-1,) + (1,) * (ndim - 1)
        lo = np.asarray(self.low, np.float32).reshape(shape)
        hi = np.asarray(self.high, np.float32).reshape(shape)
        return lo, hi

    def to_model(self, x: np.ndarray, *, axis: int = 0) -> np.ndarray:
        """File units -> model range. x: bands on `axis`."""
        x = np.moveaxis(np.asarray(x, np.float32), axis, 0)
        lo, hi = self._ab(x.ndim)
        return np.moveaxis(2.0 * (x - lo) / (hi - lo) - 1.0, 0, axis)

    def from_model(self, y: np.ndarray, *, axis: int = 0) -> np.ndarray:
        """Model range -> file units. y: bands on `axis`."""
        y = np.moveaxis(np.asarray(y, np.float32), axis, 0)
        lo, hi = self._ab(y.ndim)
        return np.moveaxis((y + 1.0) * 0.5 * (hi - lo) + lo, 0, axis)

    @classmethod
    def fit(cls, samples: np.ndarray, *, q: tuple[float, float] = (1.0, 99.0)) -> BandScaling:
        """Percentile statistics of `samples` (bands, N) ignoring NaN."""
        lo = np.nanpercentile(samples, q[0], axis=1)
        hi = np.nanpercentile(samples, q[1], axis=1)
        hi = np.maximum(hi, lo + 1e-3 * np.maximum(np.abs(lo), 1.0))
        return cls(tuple(float(v) for v in lo), tuple(float(v) for v in hi))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BandScaling:
        """Inverse of `to_dict`."""
        return cls(tuple(float(v) for v in data["low"]), tuple(float(v) for v in data["high"]))


@dataclass(frozen=True)
class WindowScaling:
    """Per-window, per-band standardisation for band-agnostic (bandwise) models.

    Each band of a window is shifted and scaled by the mean and standard deviation of the *matched reference*
    over the window (defined everywhere, gap included), so the model sees the same range whatever the dtype,
    sensor or band. The deviation never falls below `floor` times the scene's p1..p99 range of that band, so
    flat windows (water, shadow) are not blown up into noise. Windows overlap and are blended, so the per-window
    affine map does not make seams (tests/test_bandwise.py).

    Attributes:
        floor: smallest standard deviation, as a share of the band's scene range.
    """

    floor: float = 0.02

    def stats(self, ref: np.ndarray, band_range: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and deviation per window and band.

        Args:
            ref: (N, C, H, W) matched reference in file units (NaN where it has no data).
            band_range: (C,) scene p99 - p1 per band.

        Returns:
            (mean, std), each (N, C, 1, 1) float32; windows without reference get mean 0, std = the floor.
        """
        ref = np.asarray(ref, np.float32)
        ok = np.isfinite(ref)
        n = ok.sum(axis=(2, 3), keepdims=True)
        z = np.where(ok, ref, 0.0)
        mean = z.sum(axis=(2, 3), keepdims=True) / np.maximum(n, 1)
        var = (np.where(ok, (ref - mean) ** 2, 0.0)).sum(axis=(2, 3), keepdims=True) / np.maximum(n, 1)
        floor = self.floor * np.maximum(np.asarray(band_range, np.float32), 1e-12).reshape(1, -1, 1, 1)
        std = np.maximum(np.sqrt(var), floor)
        return mean.astype(np.float32), std.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": "window", "floor": self.floor}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowScaling:
        """Inverse of `to_dict`."""
        return cls(float(data["floor"]))


def band_range(samples: np.ndarray) -> np.ndarray:
    """(C,) p99 - p1 of (C, N) samples ignoring NaN (at least 1e-6 of the magnitude, never 0)."""
    lo = np.nanpercentile(samples, 1.0, axis=1)
    hi = np.nanpercentile(samples, 99.0, axis=1)
    return cast(np.ndarray, np.maximum(hi - lo, 1e-6 * np.maximum(np.abs(hi), 1.0)).astype(np.float32))
