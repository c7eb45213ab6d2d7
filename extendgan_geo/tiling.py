"""The window grid: where model windows sit on the HR scene (numpy only, no I/O).

Windows are `size` px squares placed every `stride` px. The last row and column of windows are placed flush with
the scene edge, so no window reads outside the scene; a scene smaller than one window gets a single window that
the engine pads. Weights normalised by their sum make the irregular last overlap harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def axis_origins(length: int, size: int, stride: int) -> list[int]:
    """Offsets of the windows along one axis.

    Args:
        length: scene extent along the axis, px.
        size: window extent, px.
        stride: distance between window origins, px (> 0).

    Returns:
        Increasing offsets; the last window ends exactly at `length` when `length >= size`.
    """
    if length <= size:
        return [0]
    origins = list(range(0, length - size, stride))
    origins.append(length - size)
    return origins


@dataclass(frozen=True)
class WindowGrid:
    """Window origins of a scene.

    Attributes:
        height: scene rows.
        width: scene columns.
        size: window edge, px.
        rows: row offsets of the window rows.
        cols: column offsets of the window columns.
    """

    height: int
    width: int
    size: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @classmethod
    def for_scene(cls, height: int, width: int, size: int, stride: int) -> WindowGrid:
        """Build the grid of a `height` x `width` scene."""
        return cls(
            height,
            width,
            size,
            tuple(axis_origins(height, size, stride)),
            tuple(axis_origins(width, size, stride)),
        )

    @property
    def count(self) -> int:
        """Number of windows in the full grid."""
        return len(self.rows) * len(self.cols)

    def extent(self, row_off: int, col_off: int) -> tuple[int, int]:
        """In-scene (rows, cols) of the window at this origin (smaller than `size` only for small scenes)."""
        return min(self.size, self.height - row_off), min(self.size, self.width - col_off)

    def rows_done_after(self, i: int) -> int:
        """Scene rows that no window after window row `i` touches (all rows after the last window row)."""
        return self.rows[i + 1] if i + 1 < len(self.rows) else self.height

    def cols_with_gap(self, gap_rows: np.ndarray) -> list[int]:
        """Column offsets of the windows of one window row that contain at least one gap pixel.

        Args:
            gap_rows: (rows, width) bool, the gap under the window row (True where a pixel must be filled).

        Returns:
            Column offsets, in increasing order.
        """
        # Prefix sums over "any gap in this column" answer each window in O(1).
        csum = np.concatenate([[0], np.cumsum(gap_rows.any(axis=0), dtype=np.int64)])
        return [c for c in self.cols if csum[min(c + self.size, self.width)] > csum[c]]
