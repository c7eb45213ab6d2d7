"""The gap of the HR raster, window by window: its own holes plus --mask sources, grown by --mask-buffer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window
from scipy import ndimage

from extendgan_geo.io.masks import GapSource
from extendgan_geo.io.raster import HrRaster


@dataclass(frozen=True)
class GapScan:
    """Where the gap is, at a coarse cell resolution, from one pass over the scene.

    Attributes:
        cells: (ceil(H / cell), ceil(W / cell)) bool, True where a cell holds at least one gap pixel.
        cell: cell edge, px.
        gap_pixels: gap pixels in the scene.
    """

    cells: np.ndarray
    cell: int
    gap_pixels: int

    def any_in(self, row_off: int, col_off: int, height: int, width: int) -> bool:
        """Whether the cells under an HR window hold gap (conservative: a cell may be only partly inside)."""
        c = self.cell
        return bool(
            self.cells[row_off // c : -(-(row_off + height) // c), col_off // c : -(-(col_off + width) // c)].any()
        )


class GapReader:
    """Reads HR windows and the gap over them.

    Args:
        hr: the HR raster.
        sources: extra gap sources (polygons, raster masks).
        buffer: grow the gap by this many pixels (Euclidean distance); pixels beyond the window are read for it.
    """

    def __init__(self, hr: HrRaster, sources: list[GapSource], *, buffer: int = 0) -> None:
        self.hr = hr
        self.sources = sources
        self.buffer = buffer

    def _base(self, window: Window, data: np.ndarray | None, mask: np.ndarray | None) -> np.ndarray:
        """HR holes and --mask sources over `window`, before buffering."""
        if data is None:
            gap = np.zeros((int(window.height), int(window.width)), dtype=bool)
        else:
            gap = self.hr.holes(data, mask)
        for source in self.sources:
            gap |= source.window(int(window.row_off), int(window.col_off), int(window.height), int(window.width))
        return gap

    def _grown(self, row_off: int, col_off: int, height: int, width: int) -> Window:
        h, w = self.hr.shape
        k = self.buffer
        r0, c0 = max(0, row_off - k), max(0, col_off - k)
        return Window(c0, r0, min(w, col_off + width + k) - c0, min(h, row_off + height + k) - r0)

    def read(
        self, row_off: int, col_off: int, height: int, width: int, *, data: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """Read an in-scene window.

        Args:
            row_off: first row of the window, HR px.
            col_off: first column of the window, HR px.
            height: rows of the window.
            width: columns of the window.
            data: return the pixels too (False: only what the gap needs; no HR read when the HR has no holes).

        Returns:
            data (count, height, width) in the file dtype (or None), gap (height, width) bool, and the HR
            per-dataset mask (height, width) uint8 or None.
        """
        outer = self._grown(row_off, col_off, height, width)
        need = data or self.hr.has_holes
        pixels = self.hr.read(outer) if need else None
        mask = self.hr.read_mask(outer)
        gap = self._base(outer, pixels, mask)
        if self.buffer and gap.any():
            # Distance to the nearest gap pixel, within the margin read around the window.
            gap = ndimage.distance_transform_edt(~gap) <= self.buffer
        a, b = row_off - int(outer.row_off), col_off - int(outer.col_off)
        crop = (slice(a, a + height), slice(b, b + width))
        pixels = None if pixels is None else pixels[(slice(None), *crop)]
        return pixels, gap[crop], None if mask is None else mask[crop]

    def scan(self, *, cell: int = 16, rows: int = 512) -> GapScan:
        """One pass over the scene in full-width strips: gap pixels and the coarse gap cells.

        Args:
            cell: cell edge of the coarse map, px.
            rows: strip height, px (a multiple of `cell`; block-aligned reads are fastest).
        """
        height, width = self.hr.shape
        rows = max(cell, rows // cell * cell)
        cells = np.zeros((-(-height // cell), -(-width // cell)), dtype=bool)
        total = 0
        for start in range(0, height, rows):
            stop = min(height, start + rows)
            _, gap, _ = self.read(start, 0, stop - start, width, data=False)
            total += int(gap.sum())
            ph, pw = -gap.shape[0] % cell, -gap.shape[1] % cell
            padded = np.pad(gap, ((0, ph), (0, pw)))
            blocks = padded.reshape(padded.shape[0] // cell, cell, padded.shape[1] // cell, cell)
            cells[start // cell : start // cell + blocks.shape[0]] = blocks.any(axis=(1, 3))
        return GapScan(cells, cell, total)
