"""Training masks (numpy only): the paper's half/quarter/rectangle layouts, mosaic seams and cloud shapes.

Every function returns a (size, size) bool array, True where the pixel is missing, drawn from `rng`.
"""

from __future__ import annotations

from typing import Literal, cast

import numpy as np
from scipy import ndimage

MaskKind = Literal["half", "quarter", "rectangle", "seam", "cloud", "full", "file"]
# The default layouts; "full" (no known pixel) and "file" (user masks) are asked for by name.
MASK_KINDS: tuple[MaskKind, ...] = ("half", "quarter", "rectangle", "seam", "cloud")
KNOWN_KINDS: tuple[MaskKind, ...] = (*MASK_KINDS, "full", "file")


def half(size: int, rng: np.random.Generator) -> np.ndarray:
    """Left, right, top or bottom half (the paper's 'one direction' layouts, 50 % area)."""
    gap = np.zeros((size, size), bool)
    h = size // 2
    side = rng.integers(4)
    if side == 0:
        gap[:, :h] = True
    elif side == 1:
        gap[:, h:] = True
    elif side == 2:
        gap[:h] = True
    else:
        gap[h:] = True
    return gap


def quarter(size: int, rng: np.random.Generator) -> np.ndarray:
    """One of the four quadrants (25 % area)."""
    gap = np.zeros((size, size), bool)
    h = size // 2
    r, c = rng.integers(2), rng.integers(2)
    gap[r * h : (r + 1) * h, c * h : (c + 1) * h] = True
    return gap


def rectangle(size: int, rng: np.random.Generator) -> np.ndarray:
    """An axis-aligned rectangle of about half the area at a random position ('four direction')."""
    area = size * size // 2
    w = int(rng.integers(size // 2, size))
    h = min(size, area // w)
    top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    gap = np.zeros((size, size), bool)
    gap[top : top + h, left : left + w] = True
    return gap


def seam(size: int, rng: np.random.Generator) -> np.ndarray:
    """A straight strip 6-20 % of the tile wide at a random angle, like the seam between mosaic scenes."""
    width = rng.uniform(0.06, 0.2) * size
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) - (size - 1) / 2
    offset = rng.uniform(-0.3, 0.3) * size
    dist = np.abs(xx * np.cos(angle) + yy * np.sin(angle) - offset)
    return cast(np.ndarray, dist < width / 2)


def cloud(size: int, rng: np.random.Generator) -> np.ndarray:
    """A cloud-like blob field: thresholded smooth noise covering 20-60 % of the tile."""
    noise = rng.standard_normal((size, size))
    field = ndimage.gaussian_filter(noise, sigma=size / rng.uniform(6, 14), mode="wrap")
    cover = rng.uniform(0.2, 0.6)
    return cast(np.ndarray, field > np.quantile(field, 1 - cover))


def full(size: int, rng: np.random.Generator) -> np.ndarray:
    """The whole tile missing: a window deep inside a hole wider than it, with no HR context at all."""
    return np.ones((size, size), bool)


def from_pool(size: int, rng: np.random.Generator, pool: list[np.ndarray]) -> np.ndarray:
    """A random crop (with flips) of a user mask raster from `pool`, resampled to cover >= 5 % of the tile."""
    for _ in range(20):
        m = pool[int(rng.integers(len(pool)))]
        h, w = m.shape
        if h < size or w < size:
            m = np.kron(m, np.ones((size // min(h, w) + 1,) * 2, bool))
            h, w = m.shape
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crop = m[top : top + size, left : left + size]
        if 0.05 <= crop.mean() <= 0.9:
            return crop[:: rng.choice([-1, 1]), :: rng.choice([-1, 1])].copy()
    return cloud(size, rng)


def draw(
    size: int, rng: np.random.Generator, kinds: tuple[str, ...], pool: list[np.ndarray] | None = None
) -> np.ndarray:
    """One mask of a kind drawn uniformly from `kinds` ("file" draws from `pool`, clouds when it is empty)."""
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "file":
        return from_pool(size, rng, pool) if pool else cloud(size, rng)
    makers = {"half": half, "quarter": quarter, "rectangle": rectangle, "seam": seam, "cloud": cloud, "full": full}
    return makers[kind](size, rng)
