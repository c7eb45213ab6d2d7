"""The tiled engine: windows that touch the gap go through the filler and are blended into sparse output units.

The output starts as a copy of the HR raster (a byte copy when the file allows it); only the units (block-aligned
rectangles) that hold gap are read, composited and rewritten. So the work grows with the gap, not the scene,
every pixel outside the gap stays bit-identical, and memory holds only the units near the current window row.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from rasterio.io import DatasetWriter
from rasterio.windows import Window

from extendgan_geo.blending import UnitAccumulator, cast_to_dtype, window_weights
from extendgan_geo.config import FillConfig
from extendgan_geo.fillers.base import Filler, TileBatch, local_variability
from extendgan_geo.heal import heal_batch, heals
from extendgan_geo.io.gaps import GapReader, GapScan
from extendgan_geo.io.raster import HrRaster
from extendgan_geo.io.reference import RefGrid
from extendgan_geo.tiling import WindowGrid

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
KEPT, FILLED, UNFILLED = 0, 1, 2


@dataclass
class Counts:
    """Pixel and window counts of a run."""

    gap_pixels: int = 0
    filled_pixels: int = 0
    unfilled_pixels: int = 0
    windows_computed: int = 0
    windows_total: int = 0
    units_written: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall time of the block to `seconds[stage]`."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - t0


def pad_to(a: np.ndarray, size: int) -> np.ndarray:
    """Pad the last two axes to `size` by mirror reflection (only scenes smaller than a window need it)."""
    ph, pw = size - a.shape[-2], size - a.shape[-1]
    if ph == 0 and pw == 0:
        return a
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)], mode="symmetric")


class Engine:
    """One run over the window grid.

    Args:
        hr: the HR raster.
        ref: the reference on the HR grid.
        reader: HR windows and their gap.
        filler: what predicts the gap.
        cfg: fill settings (tiles, bands).
        unit: (rows, cols) of an output unit (a multiple of the output's block shape).
        spread: the uncertainty asked for (OutputConfig.uncertainty_method), or None. "local" is computed here from
            the image written (after healing); other kinds come from the filler as one extra channel.
    """

    def __init__(
        self,
        hr: HrRaster,
        ref: RefGrid,
        reader: GapReader,
        filler: Filler,
        cfg: FillConfig,
        unit: tuple[int, int],
        spread: str | None = None,
    ) -> None:
        self.hr, self.ref, self.reader, self.filler, self.cfg = hr, ref, reader, filler, cfg
        height, width = hr.shape
        self.grid = WindowGrid.for_scene(height, width, cfg.tiles.size, cfg.tiles.stride)
        # The uncertainty is one extra channel, blended like the values.
        self.local = spread == "local"
        self.spread = spread is not None
        self.acc = UnitAccumulator(len(hr.indexes) + self.spread, (height, width), unit)
        self.heal = heals(filler, cfg.heal)
        self.counts = Counts(windows_total=self.grid.count)
        self.alpha_max = 0.0
        self._weight_cache: dict[tuple[int | bool, ...], np.ndarray] = {}

    def _weights(self, shape: tuple[int, int], origin: tuple[int, int], scene: tuple[int, int]) -> np.ndarray:
        """Window weights, cached by what they depend on: shape and which sides face the scene border."""
        (h, w), (r, c) = shape, origin
        key = (h, w, r > 0, c > 0, r + h < scene[0], c + w < scene[1])
        if key not in self._weight_cache:
            tiles = self.cfg.tiles
            self._weight_cache[key] = window_weights(shape, tiles.overlap, tiles.blend, origin=origin, scene=scene)
        return self._weight_cache[key]

    def windows(self, scan: GapScan, i: int) -> list[int]:
        """Column offsets of the windows of window row `i` that touch the gap."""
        r = self.grid.rows[i]
        return [c for c in self.grid.cols if scan.any_in(r, c, *self.grid.extent(r, c))]

    def compute(self, r: int, cols: list[int]) -> None:
        """Run the filler over windows of one window row, in batches, and accumulate their predictions."""
        size, seconds = self.grid.size, self.counts.seconds
        sel = [b - 1 for b in self.hr.indexes]
        scene = (self.grid.height, self.grid.width)
        for k in range(0, len(cols), self.cfg.tiles.batch_size):
            chunk = cols[k : k + self.cfg.tiles.batch_size]
            hrs, refs, gaps = [], [], []
            for c in chunk:
                h, w = self.grid.extent(r, c)
                with timed(seconds, "read"):
                    data, gap, _ = self.reader.read(r, c, h, w)
                assert data is not None  # data=True always returns pixels
                hr = data[sel].astype(np.float32)
                hr[:, gap] = 0.0
                with timed(seconds, "reference"):
                    refs.append(pad_to(self.ref.read(r, c, h, w), size))
                hrs.append(pad_to(hr, size))
                gaps.append(pad_to(gap[None], size))
            batch = TileBatch(
                np.stack(hrs), np.stack(refs), np.stack(gaps), np.array([[r, c] for c in chunk]), self.ref.scale
            )
            with timed(seconds, "filler"):
                pred = self.filler(batch)
            if self.heal:
                with timed(seconds, "heal"):
                    pred = heal_batch(pred, batch.hr, batch.gap, self.ref.scale, len(sel))
            if self.local:
                pred = np.concatenate([pred, local_variability(pred, batch)], axis=1)
            with timed(seconds, "blend"):
                for j, c in enumerate(chunk):
                    h, w = self.grid.extent(r, c)
                    self.acc.add(pred[j, :, :h, :w], self._weights((h, w), (r, c), scene), (r, c))
            self.counts.windows_computed += len(chunk)

    def composite(
        self, key: tuple[int, int]
    ) -> tuple[Window, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Blend a finished unit into the HR pixels under it.

        Returns:
            The unit's window, output pixels (count, rows, cols), fill codes (rows, cols) uint8, the
            output mask (rows, cols) uint8 or None, and the spread (rows, cols) float32 or None.
        """
        r, c, h, w = self.acc.bounds(key)
        values, covered = self.acc.take(key)
        data, gap, mask = self.reader.read(r, c, h, w)
        assert data is not None
        filled = gap & covered
        out = data.copy()
        dtype = np.dtype(self.hr.src.dtypes[0])
        for k, band in enumerate(self.hr.indexes):
            out[band - 1][filled] = cast_to_dtype(values[k][filled], dtype, self.hr.nodata)
        if self.hr.alpha is not None and filled.any():
            self.alpha_max = max(self.alpha_max, float(data[self.hr.alpha - 1].max(initial=0)))
            out[self.hr.alpha - 1][filled] = self.alpha_max or 255.0
        codes = np.zeros(gap.shape, np.uint8)
        codes[gap] = UNFILLED
        codes[filled] = FILLED
        n_gap, n_filled = int(gap.sum()), int(filled.sum())
        self.counts.filled_pixels += n_filled
        self.counts.unfilled_pixels += n_gap - n_filled
        out_mask = None if mask is None else np.where(filled, np.uint8(255), mask)
        spread = None
        if self.spread:
            spread = np.where(filled, values[-1], np.where(gap, np.float32(np.nan), np.float32(0.0)))
            spread = spread.astype(np.float32)
        return Window(c, r, w, h), out, codes, out_mask, spread

    def run(
        self,
        scan: GapScan,
        dst: DatasetWriter | None,
        codes_dst: DatasetWriter | None,
        progress: Progress | None,
        spread_dst: DatasetWriter | None = None,
    ) -> Counts:
        """Compute every window that touches the gap and write the finished units into `dst` (r+ copy of HR).

        Args:
            scan: where the gap is.
            dst: the output opened for update, or None to compute without writing (dry runs and tests).
            codes_dst: the fill-mask sidecar, or None.
            progress: called with (windows advanced, windows in the grid) after each window row.
            spread_dst: the uncertainty raster (float32, one band), or None.
        """
        seconds = self.counts.seconds
        self.counts.gap_pixels = scan.gap_pixels
        for i, r in enumerate(self.grid.rows):
            cols = self.windows(scan, i)
            if cols:
                self.compute(r, cols)
            for key in self.acc.finished(self.grid.rows_done_after(i)):
                with timed(seconds, "composite"):
                    window, out, codes, out_mask, spread = self.composite(key)
                if dst is None:
                    continue
                with timed(seconds, "write"):
                    dst.write(out, window=window)
                    if out_mask is not None:
                        dst.write_mask(out_mask, window=window)
                    if codes_dst is not None:
                        codes_dst.write(codes[None], window=window)
                    if spread_dst is not None and spread is not None:
                        spread_dst.write(spread[None], window=window)
                self.counts.units_written += 1
            if progress:
                progress(len(self.grid.cols), self.grid.count)
        return self.counts
