"""Row strips of the HR raster with their gap: what the tiled engine holds in memory at any time."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from extendgan_geo.io.masks import GapSource
from extendgan_geo.io.raster import HrRaster


class GapReader:
    """Reads HR rows and the gap over them: HR holes, --mask sources, grown by `buffer` px.

    Args:
        hr: the HR raster.
        sources: extra gap sources (polygons, raster masks).
        buffer: grow the gap by this many pixels (Euclidean distance), rows beyond the strip included.
    """

    def __init__(self, hr: HrRaster, sources: list[GapSource], *, buffer: int = 0) -> None:
        self.hr = hr
        self.sources = sources
        self.buffer = buffer

    def base_gap(self, start: int, stop: int, data: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Union of HR holes and --mask sources over rows [start, stop), before buffering."""
        gap = self.hr.holes(data, mask)
        for source in self.sources:
            gap |= source.rows(start, stop)
        return gap

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Read rows [start, stop).

        Returns:
            data (count, rows, width) in the file dtype, gap (rows, width) bool, and the HR per-dataset mask
            (rows, width) uint8 or None.
        """
        height = self.hr.shape[0]
        lo, hi = max(0, start - self.buffer), min(height, stop + self.buffer)
        data = self.hr.read_rows(lo, hi)
        mask = self.hr.read_mask_rows(lo, hi)
        gap = self.base_gap(lo, hi, data, mask)
        if self.buffer and gap.any():
            # Distance to the nearest gap pixel, within the margin rows read above and below.
            gap = ndimage.distance_transform_edt(~gap) <= self.buffer
        a, b = start - lo, stop - lo
        return data[:, a:b], gap[a:b], None if mask is None else mask[a:b]


class HrStrip:
    """Full-width HR rows [top, bottom) with their gap, grown at the bottom and taken from the top."""

    def __init__(self, reader: GapReader) -> None:
        self.reader = reader
        self.top = 0
        count, width = reader.hr.src.count, reader.hr.shape[1]
        self.data = np.zeros((count, 0, width), dtype=reader.hr.src.dtypes[0])
        self.gap = np.zeros((0, width), dtype=bool)
        self.mask: np.ndarray | None = None if not reader.hr.internal_mask else np.zeros((0, width), np.uint8)

    @property
    def bottom(self) -> int:
        """Scene row just below the last row held."""
        return self.top + self.gap.shape[0]

    def extend_to(self, row: int) -> None:
        """Read rows so that the strip holds scene rows up to `row` (exclusive)."""
        if row <= self.bottom:
            return
        data, gap, mask = self.reader.read(self.bottom, row)
        self.data = np.concatenate([self.data, data], axis=1)
        self.gap = np.concatenate([self.gap, gap], axis=0)
        if self.mask is not None and mask is not None:
            self.mask = np.concatenate([self.mask, mask], axis=0)

    def take(self, nrows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Remove and return the first `nrows` rows: data, gap and mask (as in `GapReader.read`)."""
        data, gap = self.data[:, :nrows], self.gap[:nrows]
        mask = None if self.mask is None else self.mask[:nrows]
        self.data, self.gap = self.data[:, nrows:].copy(), self.gap[nrows:].copy()
        if self.mask is not None:
            self.mask = self.mask[nrows:].copy()
        self.top += nrows
        return data, gap, mask
