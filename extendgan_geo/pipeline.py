"""`fill_raster`: the tool that joins I/O, the window grid, a filler, blending and the writer.

The scene is processed in window rows from top to bottom. Each window row reads only the HR rows it adds,
computes only the windows that contain a gap pixel, adds their predictions to a rolling strip with feathered
weights, and writes every row that no later window touches, in whole output blocks. Pixels outside the gap are
copied from the input unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from extendgan_geo import __version__
from extendgan_geo.blending import StripAccumulator, cast_to_dtype, window_weights
from extendgan_geo.config import FillConfig, OutputConfig
from extendgan_geo.errors import BandMismatchError, ConfigError
from extendgan_geo.fillers.base import Filler, TileBatch
from extendgan_geo.io.cog import check_output, copy_metadata, finalize, open_temp, output_profile, temp_path
from extendgan_geo.io.masks import GapSource, open_gap_source
from extendgan_geo.io.raster import HrRaster, open_raster
from extendgan_geo.io.reference import RefGrid, default_ref_indexes
from extendgan_geo.io.strips import GapReader, HrStrip
from extendgan_geo.tiling import WindowGrid

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

FILL_MASK_SUFFIX = ".fillmask.tif"
KEPT, FILLED, UNFILLED = 0, 1, 2


@dataclass
class FillResult:
    """What a fill run did.

    Attributes:
        output: path written (None for a dry run).
        shape: (height, width) of the scene.
        gap_pixels: pixels in the gap.
        filled_pixels: gap pixels that received a value.
        unfilled_pixels: gap pixels left as they were because the reference had no data there.
        windows_computed: windows passed to the filler.
        windows_total: windows in the full grid.
        method: filler name.
        shift: (dx, dy) reference shift applied, HR pixels.
        seconds: wall time per stage ("read", "reference", "filler", "blend", "write", "finalize", "total").
        fill_mask: path of the fill-mask sidecar, or None.
    """

    output: str | None
    shape: tuple[int, int]
    gap_pixels: int = 0
    filled_pixels: int = 0
    unfilled_pixels: int = 0
    windows_computed: int = 0
    windows_total: int = 0
    method: str = ""
    shift: tuple[float, float] = (0.0, 0.0)
    seconds: dict[str, float] = field(default_factory=dict)
    fill_mask: str | None = None

    def summary(self) -> str:
        """A few lines for people: what was filled, what was left, how long it took."""
        h, w = self.shape
        total = h * w
        if self.gap_pixels == 0:
            head = f"no gap found in {w}x{h} px: the output is a copy of the input"
        else:
            head = (
                f"filled {self.filled_pixels:,} of {self.gap_pixels:,} gap px "
                f"({100 * self.gap_pixels / total:.2f} % of {w}x{h}) with {self.method}; "
                f"{self.windows_computed} of {self.windows_total} windows computed"
            )
        lines = [head]
        if self.unfilled_pixels:
            lines.append(f"{self.unfilled_pixels:,} gap px left unfilled: the reference has no data there")
        if self.shift != (0.0, 0.0):
            lines.append(f"reference shifted by dx={self.shift[0]:+.2f} px, dy={self.shift[1]:+.2f} px")
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items() if k != "total")
        lines.append(f"wrote {self.output} in {self.seconds.get('total', 0.0):.2f}s ({stages})")
        return "\n".join(lines)


@dataclass
class _Inputs:
    """Everything opened for a run."""

    hr: HrRaster
    ref: RefGrid
    sources: list[GapSource]
    filler: Filler
    ref_name: str

    def close(self) -> None:
        for source in self.sources:
            source.close()
        self.ref.close()
        self.hr.src.close()


def make_filler(cfg: FillConfig, bands: int) -> Filler:
    """The filler named by `cfg.method`.

    Raises:
        ConfigError: the method cannot be built.
    """
    if cfg.method == "match":
        from extendgan_geo.fillers.match import MatchFiller

        return MatchFiller(bands, min_known=cfg.match_min_known)
    from extendgan_geo.fillers.gan import load_gan_filler

    return load_gan_filler(cfg.model, device=cfg.device, bands=bands, precision=cfg.precision)


def _check_filler(filler: Filler, cfg: FillConfig, bands: int, ref_bands: int) -> None:
    """Raise when the band counts or the tile size do not fit the filler."""
    if filler.bands is not None and filler.bands != bands:
        raise BandMismatchError(
            f"{bands} HR band(s) are selected but the {filler.name} filler expects {filler.bands}; "
            f"expected matching counts: select {filler.bands} band(s) with -b/--bidx"
        )
    if filler.ref_bands is not None and filler.ref_bands != ref_bands:
        raise BandMismatchError(
            f"{ref_bands} reference band(s) are selected but the {filler.name} filler expects "
            f"{filler.ref_bands}; expected matching counts: select them with --ref-bidx"
        )
    if filler.tile is not None and filler.tile != cfg.tiles.size:
        raise ConfigError(
            f"--tile is {cfg.tiles.size} but the {filler.name} model works on {filler.tile} px windows; "
            f"expected --tile {filler.tile}"
        )


def _open_inputs(
    hr_path: str, ref_path: str, mask: str | None, cfg: FillConfig, filler: Filler | None, tmpdir: str | None
) -> _Inputs:
    """Open and validate every input; close what was opened when a later one fails."""
    with contextlib.ExitStack() as stack:
        hr = HrRaster.open(hr_path, indexes=cfg.indexes, nodata=cfg.nodata)
        stack.callback(hr.src.close)
        ref_src = open_raster(ref_path, "reference")
        stack.callback(ref_src.close)
        ref_indexes = cfg.ref_indexes or default_ref_indexes(ref_src, len(hr.indexes))
        shift = (0.0, 0.0)
        if cfg.coregister:
            from extendgan_geo.io.coregister import estimate_shift

            shift = estimate_shift(hr, ref_src, ref_indexes, nodata=cfg.ref_nodata)
        ref = RefGrid.build(
            ref_src,
            hr.src,
            indexes=ref_indexes,
            nodata=cfg.ref_nodata,
            resampling=cfg.resampling,
            shift=shift,
            tmpdir=tmpdir,
        )
        stack.callback(ref.close)
        sources = [open_gap_source(mask, layer=cfg.mask_layer, hr=hr.src)] if mask else []
        for source in sources:
            stack.callback(source.close)
        filler = filler or make_filler(cfg, len(hr.indexes))
        _check_filler(filler, cfg, len(hr.indexes), len(ref_indexes))
        stack.pop_all()
    return _Inputs(hr, ref, sources, filler, os.path.basename(ref_path))


def _sample(
    inputs: _Inputs, reader: GapReader, rows: int = 32, strips: int = 8, max_cols: int = 2048
) -> TileBatch:
    """A sparse sample of the scene: a few thin full-width strips, columns decimated."""
    height, width = inputs.hr.shape
    step = max(1, width // max_cols)
    starts = sorted({int(s) for s in np.linspace(0, max(0, height - rows), strips)})
    hrs, refs, gaps = [], [], []
    sel = [i - 1 for i in inputs.hr.indexes]
    for start in starts:
        stop = min(height, start + rows)
        data, gap, _ = reader.read(start, stop)
        hrs.append(data[sel][:, :, ::step].astype(np.float32))
        gaps.append(gap[None, :, ::step])
        refs.append(inputs.ref.read(start, 0, stop - start, width)[:, :, ::step])
    n = min(x.shape[1] for x in hrs)
    return TileBatch(
        hr=np.stack([x[:, :n] for x in hrs]),
        ref=np.stack([x[:, :n] for x in refs]),
        gap=np.stack([x[:, :n] for x in gaps]),
        origins=np.array([[s, 0] for s in starts], dtype=np.int64),
    )


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    """Pad the last two axes to `size` by mirror reflection (only small scenes need it)."""
    ph, pw = size - a.shape[-2], size - a.shape[-1]
    if ph == 0 and pw == 0:
        return a
    pad = [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(a, pad, mode="symmetric")


@contextlib.contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - t0


class _Engine:
    """The streaming loop over window rows (one run)."""

    def __init__(self, inputs: _Inputs, cfg: FillConfig, progress: Progress | None) -> None:
        self.inputs = inputs
        self.cfg = cfg
        self.progress = progress
        height, width = inputs.hr.shape
        tiles = cfg.tiles
        self.grid = WindowGrid.for_scene(height, width, tiles.size, tiles.stride)
        self.reader = GapReader(inputs.hr, inputs.sources, buffer=cfg.mask_buffer)
        self.strip = HrStrip(self.reader)
        self.acc = StripAccumulator(len(inputs.hr.indexes), width)
        self.result = FillResult(None, (height, width), method=inputs.filler.name, shift=inputs.ref.shift)
        self.result.windows_total = self.grid.count
        self.seconds = self.result.seconds
        self.alpha_max = 0.0

    def windows(self, i: int) -> list[int]:
        """Read what window row `i` needs and return the column offsets of its windows to compute."""
        r = self.grid.rows[i]
        h = min(self.grid.size, self.grid.height - r)
        with _timed(self.seconds, "read"):
            self.strip.extend_to(r + h)
        self.acc.extend_to(r + h)
        return self.grid.cols_with_gap(self.strip.gap[r - self.strip.top : r - self.strip.top + h])

    def compute(self, r: int, cols: list[int]) -> None:
        """Run the filler over the windows of one window row and add their predictions to the strip."""
        size, top = self.grid.size, self.strip.top
        sel = [b - 1 for b in self.inputs.hr.indexes]
        scene = (self.grid.height, self.grid.width)
        for k in range(0, len(cols), self.cfg.tiles.batch_size):
            chunk = cols[k : k + self.cfg.tiles.batch_size]
            hrs, refs, gaps = [], [], []
            for c in chunk:
                h, w = self.grid.extent(r, c)
                gap = self.strip.gap[r - top : r - top + h, c : c + w]
                hr = self.strip.data[sel, r - top : r - top + h, c : c + w].astype(np.float32)
                hr[:, gap] = 0.0
                with _timed(self.seconds, "reference"):
                    refs.append(_pad(self.inputs.ref.read(r, c, h, w), size))
                hrs.append(_pad(hr, size))
                gaps.append(_pad(gap[None], size))
            batch = TileBatch(
                np.stack(hrs), np.stack(refs), np.stack(gaps), np.array([[r, c] for c in chunk])
            )
            with _timed(self.seconds, "filler"):
                pred = self.inputs.filler(batch)
            with _timed(self.seconds, "blend"):
                for j, c in enumerate(chunk):
                    h, w = self.grid.extent(r, c)
                    weights = window_weights(
                        (h, w), self.cfg.tiles.overlap, self.cfg.tiles.blend, origin=(r, c), scene=scene
                    )
                    self.acc.add(pred[j, :, :h, :w], weights, (r, c))
            self.result.windows_computed += len(chunk)

    def composite(self, nrows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Take the first `nrows` finished rows and merge predictions into the gap.

        Returns:
            Output pixels (count, nrows, width), fill codes (nrows, width) uint8 and the output mask or None.
        """
        hr = self.inputs.hr
        values, covered = self.acc.take(nrows)
        data, gap, mask = self.strip.take(nrows)
        filled = gap & covered
        out = data.copy()
        dtype = np.dtype(hr.src.dtypes[0])
        for k, band in enumerate(hr.indexes):
            out[band - 1][filled] = cast_to_dtype(values[k][filled], dtype, hr.nodata)
        if hr.alpha is not None and filled.any():
            out[hr.alpha - 1][filled] = self._opaque(data[hr.alpha - 1], dtype)
        codes = np.where(filled, FILLED, np.where(gap, UNFILLED, KEPT)).astype(np.uint8)
        n_gap, n_filled = int(gap.sum()), int(filled.sum())
        self.result.gap_pixels += n_gap
        self.result.filled_pixels += n_filled
        self.result.unfilled_pixels += n_gap - n_filled
        out_mask = None if mask is None else np.where(filled, np.uint8(255), mask)
        return out, codes, out_mask

    def _opaque(self, alpha: np.ndarray, dtype: np.dtype) -> float:
        """The alpha value that means opaque in this file: the largest seen so far, else 255."""
        self.alpha_max = max(self.alpha_max, float(alpha.max(initial=0)))
        return self.alpha_max or 255.0

    def rows(self) -> Iterator[tuple[int, int]]:
        """Walk the window rows; yield (start, stop) of each run of finished rows, block-aligned."""
        written = 0
        for i, r in enumerate(self.grid.rows):
            cols = self.windows(i)
            if cols:
                self.compute(r, cols)
            if self.progress:
                self.progress(len(self.grid.cols), self.grid.count)
            done = self.grid.rows_done_after(i)
            upto = done if done == self.grid.height else written + (done - written) // 512 * 512
            if upto > written:
                yield written, upto
                written = upto


def _provenance(inputs: _Inputs, cfg: FillConfig) -> dict[str, str]:
    """Dataset tags that record how the output was made."""
    tiles = cfg.tiles
    return {
        "EGAN_VERSION": __version__,
        "EGAN_METHOD": inputs.filler.name,
        "EGAN_MODEL_SHA256": inputs.filler.model_hash or "none",
        "EGAN_REFERENCE": inputs.ref_name,
        "EGAN_REFERENCE_BANDS": ",".join(map(str, inputs.ref.indexes)),
        "EGAN_BANDS": ",".join(map(str, inputs.hr.indexes)),
        "EGAN_RESAMPLING": cfg.resampling,
        "EGAN_REFERENCE_SHIFT_PX": f"{inputs.ref.shift[0]:.4f},{inputs.ref.shift[1]:.4f}",
        "EGAN_TILE": str(tiles.size),
        "EGAN_OVERLAP": str(tiles.overlap),
        "EGAN_BLEND": tiles.blend,
        "EGAN_MASK_BUFFER_PX": str(cfg.mask_buffer),
        "EGAN_MASKS": ";".join(s.description for s in inputs.sources) or "none",
        "EGAN_RASTERIO_GDAL": f"rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}",
    }


def fill_raster(
    hr_path: str | os.PathLike[str],
    ref_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    cfg: FillConfig | None = None,
    out_cfg: OutputConfig | None = None,
    *,
    mask: str | os.PathLike[str] | None = None,
    filler: Filler | None = None,
    progress: Progress | None = None,
) -> FillResult:
    """Fill the gaps of an HR raster guided by a reference, writing a georeferenced GeoTIFF or COG.

    The gap is the union of the HR's nodata / internal mask / alpha and the polygons or raster of `mask`.
    Every pixel outside it is copied bit for bit.

    Args:
        hr_path: the raster to fill.
        ref_path: the low-resolution reference of the same area (any CRS, resolution, dtype).
        output: path of the output GeoTIFF/COG.
        cfg: what to compute (bands, masks, resampling, method, tiles); defaults if None.
        out_cfg: how to write it (COG, creation options, overwrite); defaults if None.
        mask: vector file of gap polygons or a raster mask (non-zero = gap), optional.
        filler: a custom filler instead of `cfg.method` (for research and tests).
        progress: called with (windows advanced, windows in the grid) after each window row.

    Returns:
        A FillResult with pixel counts and timings.

    Raises:
        EganError: bad input (see errors.py); nothing is written at `output` then.
    """
    t0 = time.perf_counter()
    cfg, out_cfg = cfg or FillConfig(), out_cfg or OutputConfig()
    output = os.fspath(output)
    check_output(output, out_cfg, sidecars=(FILL_MASK_SUFFIX,) if out_cfg.write_fill_mask else ())
    inputs = _open_inputs(
        os.fspath(hr_path), os.fspath(ref_path), mask and os.fspath(mask), cfg, filler, out_cfg.tmpdir
    )
    try:
        with rasterio.Env(GDAL_CACHEMAX=256, GDAL_NUM_THREADS="ALL_CPUS"):
            result = _run(inputs, cfg, out_cfg, output, progress)
    finally:
        inputs.close()
    result.seconds["total"] = time.perf_counter() - t0
    logger.info("%s", result.summary())
    return result


def _run(
    inputs: _Inputs, cfg: FillConfig, out_cfg: OutputConfig, output: str, progress: Progress | None
) -> FillResult:
    """Stream the scene through the engine into temporary files, then move them into place."""
    engine = _Engine(inputs, cfg, progress)
    hr = inputs.hr
    profile = output_profile(hr.src, out_cfg, nodata=hr.nodata)
    with _timed(engine.seconds, "sample"):
        inputs.filler.prepare(_sample(inputs, engine.reader))
    profile["num_threads"] = "all_cpus"
    tmp = temp_path(output, out_cfg.tmpdir, ".tif")
    mask_out = output + FILL_MASK_SUFFIX
    tmp_mask = temp_path(mask_out, out_cfg.tmpdir, ".tif")
    mask_profile = dict(profile, count=1, dtype="uint8", nodata=None, predictor=2)
    from extendgan_geo.io.cog import removing_on_error

    with removing_on_error(tmp, tmp_mask):
        env = rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True)
        with (
            env,
            open_temp(tmp, profile, compress_temp=not out_cfg.cog) as dst,
            rasterio.open(tmp_mask, "w", **mask_profile) as mdst,
        ):
            copy_metadata(hr.src, dst, _provenance(inputs, cfg))
            mdst.set_band_description(1, "0 kept, 1 filled, 2 gap left unfilled")
            mdst.update_tags(
                EGAN_FILL_MASK="0=kept,1=filled,2=unfilled", EGAN_OUTPUT=os.path.basename(output)
            )
            for start, stop in engine.rows():
                with _timed(engine.seconds, "composite"):
                    out, codes, out_mask = engine.composite(stop - start)
                with _timed(engine.seconds, "write"):
                    window = Window(0, start, hr.shape[1], stop - start)
                    dst.write(out, window=window)
                    if out_mask is not None:
                        dst.write_mask(out_mask, window=window)
                    mdst.write(codes[None], window=window)
            dst.update_tags(
                EGAN_GAP_PIXELS=str(engine.result.gap_pixels),
                EGAN_FILLED_PIXELS=str(engine.result.filled_pixels),
                EGAN_UNFILLED_PIXELS=str(engine.result.unfilled_pixels),
                EGAN_FILL_MASK=os.path.basename(mask_out) if out_cfg.write_fill_mask else "none",
            )
        with _timed(engine.seconds, "finalize"):
            finalize(tmp, output, profile, cog=out_cfg.cog, tmpdir=out_cfg.tmpdir, add_mask=hr.internal_mask)
            if out_cfg.write_fill_mask:
                os.replace(tmp_mask, mask_out)
    engine.result.output = output
    engine.result.fill_mask = mask_out if out_cfg.write_fill_mask else None
    return engine.result


def _grid_info(src: Any) -> dict[str, Any]:
    return {
        "path": src.name,
        "crs": src.crs.to_string() if src.crs else None,
        "size": f"{src.width} x {src.height} px",
        "resolution": tuple(round(r, 6) for r in src.res),
        "bounds": tuple(round(b, 6) for b in src.bounds),
        "dtype": src.dtypes[0],
        "count": src.count,
        "nodata": src.nodata,
    }


def plan_fill(
    hr_path: str | os.PathLike[str],
    ref_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    cfg: FillConfig | None = None,
    out_cfg: OutputConfig | None = None,
    *,
    mask: str | os.PathLike[str] | None = None,
    filler: Filler | None = None,
) -> dict[str, Any]:
    """Validate the inputs and describe a fill run without writing anything (`--dry-run`).

    Reads the HR gap once, row strip by row strip, to count gap pixels and the windows to compute.

    Returns:
        A JSON-ready dict: HR and reference grids, footprint overlap, gap size, windows, output profile.

    Raises:
        EganError: the same input errors as `fill_raster`.
    """
    cfg, out_cfg = cfg or FillConfig(), out_cfg or OutputConfig()
    output = os.fspath(output)
    check_output(output, out_cfg)
    inputs = _open_inputs(
        os.fspath(hr_path), os.fspath(ref_path), mask and os.fspath(mask), cfg, filler, out_cfg.tmpdir
    )
    try:
        engine = _Engine(inputs, cfg, None)
        gap_pixels, windows = 0, 0
        for i in range(len(engine.grid.rows)):
            windows += len(engine.windows(i))
            upto = engine.grid.rows_done_after(i)
            gap_pixels += int(engine.strip.take(upto - engine.strip.top)[1].sum())
            engine.acc.take(upto - engine.acc.top)
        height, width = inputs.hr.shape
        profile = output_profile(inputs.hr.src, out_cfg, nodata=inputs.hr.nodata)
        with rasterio.open(ref_path) as ref_src:
            ref_info = _grid_info(ref_src)
        return {
            "hr": {**_grid_info(inputs.hr.src), "bands": list(inputs.hr.indexes)},
            "reference": {
                **ref_info,
                "bands": list(inputs.ref.indexes),
                "hr_footprint_covered": round(inputs.ref.overlap, 4),
                "resampling": cfg.resampling,
            },
            "masks": [s.description for s in inputs.sources],
            "gap": {"pixels": gap_pixels, "fraction": round(gap_pixels / (height * width), 6)},
            "windows": {
                "tile": cfg.tiles.size,
                "overlap": cfg.tiles.overlap,
                "in_grid": engine.grid.count,
                "to_compute": windows,
            },
            "method": inputs.filler.name,
            "output": {
                "path": output,
                "format": "COG" if out_cfg.cog else "GTiff",
                **{k: str(v) for k, v in profile.items() if k not in {"transform"}},
            },
        }
    finally:
        inputs.close()
