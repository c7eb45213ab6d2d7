"""Simulated low-resolution references for training on HR imagery alone (numpy/scipy).

`simulate_reference` turns an HR crop into what a coarse sensor of another date might have seen, on the HR grid:
Gaussian sensor blur (an MTF stand-in), a sub-pixel misregistration, area downsampling by a factor drawn from a
range, per-band gain and offset, optional band mixing, a smooth haze gradient and noise, then upsampling
back to the HR grid (bilinear, cubic convolution or Lanczos, GDAL's kernels). All draws come from the caller's `rng`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy import ndimage

from extendgan_geo.config import SIMULATED_KERNELS


@dataclass(frozen=True)
class DegradeConfig:
    """Ranges of the simulated degradation (documented in docs/training.md).

    Attributes:
        factor: (min, max) HR pixels per reference pixel, drawn log-uniformly.
        blur: Gaussian sigma of the sensor blur, in reference pixels.
        shift: largest misregistration, in reference pixels (each axis, uniform).
        gain: (min, max) per-band multiplicative change.
        offset: largest per-band additive change, as a share of the band's range.
        mixing: largest off-diagonal band-mixing weight (0 = none).
        haze: largest haze ramp amplitude across the crop, as a share of the band's range.
        noise: Gaussian noise sigma, as a share of the band's range, per reference pixel.
    """

    factor: tuple[float, float] = (2.0, 10.0)
    blur: float = 0.5
    shift: float = 0.3
    gain: tuple[float, float] = (0.85, 1.15)
    offset: float = 0.05
    mixing: float = 0.05
    haze: float = 0.05
    noise: float = 0.005

    def __post_init__(self) -> None:
        if not 1.0 <= self.factor[0] <= self.factor[1]:
            raise ValueError(f"factor range must satisfy 1 <= min <= max, got {self.factor}")


def _keys(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.5, GDAL's "cubic") at distances t."""
    t = np.abs(t)
    return np.where(t <= 1, (1.5 * t - 2.5) * t * t + 1, np.where(t < 2, ((-0.5 * t + 2.5) * t - 4) * t + 2, 0.0))


def _lanczos(t: np.ndarray) -> np.ndarray:
    """Lanczos-3 window (sinc(t) sinc(t / 3) for |t| < 3, GDAL's "lanczos") at distances t."""
    return np.where(np.abs(t) < 3, np.sinc(t) * np.sinc(t / 3), 0.0)


def _kernel_matrix(
    n_out: int, n_in: int, factor: float, kernel: Callable[[np.ndarray], np.ndarray], taps: range, normalize: bool
) -> np.ndarray:
    """(n_out, n_in) weights of a separable interpolation kernel from cells `factor` px wide.

    Unnormalised kernels (cubic) repeat the edge cells; normalised ones (Lanczos) drop the taps outside the grid and
    share their weight among the others, as GDAL does.
    """
    u = (np.arange(n_out) + 0.5) / factor - 0.5
    base = np.floor(u).astype(int)
    m = np.zeros((n_out, n_in))
    weights = np.stack([kernel(u - (base + k)) for k in taps])
    if normalize:
        inside = np.stack([(base + k >= 0) & (base + k < n_in) for k in taps])
        weights = np.where(inside, weights, 0.0)
        weights /= weights.sum(axis=0)
    for k, w in zip(taps, weights, strict=True):
        np.add.at(m, (np.arange(n_out), np.clip(base + k, 0, n_in - 1)), w)
    return m


def upsample_cubic(coarse: np.ndarray, factor: float, shape: tuple[int, int]) -> np.ndarray:
    """Cubic-convolution upsampling of (C, h, w) cell values to (C, *shape) HR pixels, cells `factor` HR px wide.

    GDAL's "cubic" kernel (`egan-fill --resampling cubic`); edge cells repeat.
    """
    rows = _kernel_matrix(shape[0], coarse.shape[1], factor, _keys, range(-1, 3), False)
    cols = _kernel_matrix(shape[1], coarse.shape[2], factor, _keys, range(-1, 3), False)
    fine: np.ndarray = rows @ coarse.astype(np.float64) @ cols.T
    return fine


def upsample_lanczos(coarse: np.ndarray, factor: float, shape: tuple[int, int]) -> np.ndarray:
    """Lanczos-3 upsampling, as GDAL's "lanczos" (the fill engine's default kernel): six taps, normalised weights."""
    rows = _kernel_matrix(shape[0], coarse.shape[1], factor, _lanczos, range(-2, 4), True)
    cols = _kernel_matrix(shape[1], coarse.shape[2], factor, _lanczos, range(-2, 4), True)
    fine: np.ndarray = rows @ coarse.astype(np.float64) @ cols.T
    return fine


def upsample(coarse: np.ndarray, factor: float, shape: tuple[int, int], kernel: str = "bilinear") -> np.ndarray:
    """Upsample with the engine's `kernel` ("bilinear", "cubic" or "lanczos")."""
    if kernel == "lanczos":
        return upsample_lanczos(coarse, factor, shape)
    if kernel == "cubic":
        return upsample_cubic(coarse, factor, shape)
    if kernel == "bilinear":
        return upsample_bilinear(coarse, factor, shape)
    raise ValueError(f"simulated references support {', '.join(SIMULATED_KERNELS)} upsampling, got {kernel!r}")


def upsample_bilinear(coarse: np.ndarray, factor: float, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of (C, h, w) cell values to (C, *shape) HR pixels, cells `factor` HR px wide."""
    rows = (np.arange(shape[0]) + 0.5) / factor - 0.5
    cols = (np.arange(shape[1]) + 0.5) / factor - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([ndimage.map_coordinates(band, [rr, cc], order=1, mode="nearest") for band in coarse])


def simulate_reference(
    hr: np.ndarray, band_range: np.ndarray, rng: np.random.Generator, cfg: DegradeConfig, kernel: str = "bilinear"
) -> tuple[np.ndarray, float]:
    """Degrade an HR crop into a reference on the same grid.

    Args:
        hr: (C, H, W) float32 HR values in file units (complete, no holes).
        band_range: (C,) typical value range per band (e.g. p99 - p1), scales offsets, haze and noise.
        rng: random generator.
        cfg: degradation ranges.
        kernel: upsampling back to the HR grid, "bilinear", "cubic" or "lanczos" (as the model will see it filling).

    Returns:
        (C, H, W) float32 reference on the HR grid, and its grid's factor (HR px per reference cell).
    """
    coarse, _ = simulate_coarse(hr, band_range, rng, cfg)
    h, w = hr.shape[1:]
    grid = float(np.sqrt(h / coarse.shape[1] * w / coarse.shape[2]))  # whole cells: the drawn factor, rounded
    return upsample(coarse, h / coarse.shape[1], (h, w), kernel).astype(np.float32), grid


def _coarse_matrix(n: int, m: int, sigma: float, shift: float) -> np.ndarray:
    """(m, n) matrix of the 1-D chain: Gaussian blur, linear shift by `shift` px, linear zoom to m cells.

    The same steps as scipy.ndimage's `gaussian_filter1d` (mode "reflect", truncate 4), `shift` and `zoom` (order 1,
    grid mode, mode "nearest"), written as matrices (tests/test_bandwise.py checks them against scipy).
    """
    i = np.arange(n)
    blur = np.zeros((n, n))
    if sigma > 0:
        radius = int(4.0 * sigma + 0.5)
        taps = np.arange(-radius, radius + 1)
        weights = np.exp(-0.5 * (taps / sigma) ** 2)
        # Reflected edges, "d c b a | a b c d", repeated for kernels wider than the crop.
        j = np.mod(i[:, None] + taps[None], 2 * n)
        j = np.where(j >= n, 2 * n - 1 - j, j)
        np.add.at(blur, (np.broadcast_to(i[:, None], j.shape), j), weights / weights.sum())
    else:
        blur[i, i] = 1.0
    cells = _linear_matrix((np.arange(m) + 0.5) * (n / m) - 0.5, n)
    return cast(np.ndarray, (cells @ _linear_matrix(i - shift, n)) @ blur)


def _linear_matrix(coords: np.ndarray, n: int) -> np.ndarray:
    """(len(coords), n) weights of linear interpolation at `coords`, edge values repeated outside [0, n - 1]."""
    x = np.clip(coords, 0, n - 1)
    left = np.minimum(np.floor(x).astype(int), n - 1)
    frac = x - left
    out = np.zeros((len(coords), n))
    rows = np.arange(len(coords))
    out[rows, left] += 1 - frac
    out[rows, np.minimum(left + 1, n - 1)] += frac
    return out


def simulate_coarse(
    hr: np.ndarray, band_range: np.ndarray, rng: np.random.Generator, cfg: DegradeConfig
) -> tuple[np.ndarray, float]:
    """The coarse-grid half of `simulate_reference`: (C, h, w) float32 reference cells and the factor drawn.

    The cells are round(H / factor) x round(W / factor); the exact factor of the grid is H / h.
    """
    c, h, w = hr.shape
    factor = float(np.exp(rng.uniform(np.log(cfg.factor[0]), np.log(cfg.factor[1]))))
    sigma = cfg.blur * factor
    dy, dx = rng.uniform(-cfg.shift, cfg.shift, 2) * factor
    ch, cw = max(1, round(h / factor)), max(1, round(w / factor))
    # Blur, shift and cell sampling are each separable and linear, so together they are one (ch, H) matrix on the
    # rows and one (cw, W) on the columns: coarse = rows @ band @ cols.T. Exactly scipy's chain (Gaussian blur with
    # reflected edges, a linear-interpolation shift and a linear zoom at cell centres, both with edge repeat),
    # about 10x faster than filtering the full-resolution crop.
    rows, cols = _coarse_matrix(h, ch, sigma, dy), _coarse_matrix(w, cw, sigma, dx)
    coarse = rows @ hr.astype(np.float64) @ cols.T
    gain = cast(np.ndarray, rng.uniform(*cfg.gain, c))[:, None, None]
    offset = (rng.uniform(-cfg.offset, cfg.offset, c) * band_range)[:, None, None]
    coarse = coarse * gain + offset
    if cfg.mixing > 0 and c > 1:
        mix = np.eye(c) + rng.uniform(-cfg.mixing, cfg.mixing, (c, c)) * (1 - np.eye(c))
        coarse = np.einsum("ij,jhw->ihw", mix / mix.sum(axis=1, keepdims=True), coarse)
    yy, xx = np.mgrid[0:ch, 0:cw] / max(ch, cw, 1)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(angle) + yy * np.sin(angle))[None]
    coarse = coarse + rng.uniform(0, cfg.haze) * band_range[:, None, None] * ramp
    coarse = coarse + rng.normal(0, 1, coarse.shape) * cfg.noise * band_range[:, None, None]
    return coarse.astype(np.float32), factor
