"""`fill_raster`: the tool that joins I/O, the window grid, a filler, blending and the writer.

1. Open and validate every input (HR, reference, masks, filler, output path) before any work.
2. Scan the gap once (a coarse map of where it is and how many pixels it has).
3. Start the output as a copy of the HR raster, compute the windows that touch the gap and rewrite only the
   output units that hold gap pixels (engine.py).
4. Turn the copy into a COG (or keep it as a GeoTIFF) and move it onto the output path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio

from extendgan_geo import __version__, allocator
from extendgan_geo.config import FillConfig, OutputConfig
from extendgan_geo.engine import Counts, Engine, Progress, timed
from extendgan_geo.errors import BandMismatchError, ConfigError
from extendgan_geo.fillers.base import Filler, TileBatch
from extendgan_geo.heal import heals
from extendgan_geo.io.cog import (
    check_output,
    copies_bytes,
    finalize,
    make_base,
    move_into_place,
    output_profile,
    removing_on_error,
    temp_path,
)
from extendgan_geo.io.gaps import GapReader
from extendgan_geo.io.masks import GapSource, open_gap_source
from extendgan_geo.io.raster import HrRaster, open_raster
from extendgan_geo.io.reference import RefGrid, default_ref_indexes

logger = logging.getLogger(__name__)

FILL_MASK_SUFFIX = ".fillmask.tif"
# Interpolating kernels a model trained on one of them fills well from: cubic-trained models gain from Lanczos
# references (+0.19 dB for the bundled model, 80 validation cases; docs/model.md), so no warning between them.
INTERPOLATING: dict[str, tuple[str, ...]] = {"cubic": ("lanczos",), "lanczos": ("cubic",)}
# A reference coarser than this share above a model's trained scale range is logged (measured: docs/model.md).
SCALE_SLACK = 1.2


def summary_tail(unfilled: int, shift: tuple[float, float], output: str | None, seconds: dict[str, float]) -> list[str]:
    """The lines every run summary ends with: unfilled pixels, reference shift, output and stage timings."""
    lines = []
    if unfilled:
        lines.append(f"{unfilled:,} gap px left unfilled: the reference has no data there")
    if shift != (0.0, 0.0):
        lines.append(f"reference shifted by dx={shift[0]:+.2f} px, dy={shift[1]:+.2f} px")
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in seconds.items() if k != "total")
    lines.append(f"wrote {output} in {seconds.get('total', 0.0):.2f}s ({stages})")
    return lines


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
        return "\n".join([head, *summary_tail(self.unfilled_pixels, self.shift, self.output, self.seconds)])


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
    method = cfg.method
    if method == "auto":
        from extendgan_geo.fillers.gan import model_fits

        method = "gan" if model_fits(cfg.model, bands) else "match"
        logger.info("method auto: %s", method)
    if method == "match":
        from extendgan_geo.fillers.match import MatchFiller

        return MatchFiller(bands, min_known=cfg.match_min_known)
    if method == "reference":
        from extendgan_geo.fillers.baselines import ReferenceFiller

        return ReferenceFiller(bands)
    if method == "fillnodata":
        from extendgan_geo.fillers.baselines import FillnodataFiller

        return FillnodataFiller(bands)
    from extendgan_geo.fillers.gan import load_gan_filler

    return load_gan_filler(
        cfg.model,
        device=cfg.device,
        bands=bands,
        precision=cfg.precision,
        compile=cfg.compile,
        coarse_to_fine=cfg.coarse_to_fine,
    )


def _check_filler(filler: Filler, cfg: FillConfig, bands: int, ref_bands: int) -> None:
    """Raise when the band counts or the tile size do not fit the filler."""
    if filler.bands is not None and filler.bands != bands:
        raise BandMismatchError(
            f"{bands} HR band(s) are selected but the {filler.name} filler expects {filler.bands}; "
            f"expected matching counts: select {filler.bands} band(s) with -b/--bidx"
        )
    if filler.ref_bands is not None and filler.ref_bands != ref_bands:
        layout = ""
        if getattr(filler, "bandwise", False):
            layout = " (the model fills any number of bands, each guided by its own reference band)"
        raise BandMismatchError(
            f"{ref_bands} reference band(s) are selected but the {filler.name} filler expects "
            f"{filler.ref_bands}{layout}; expected matching counts: pair one reference band with each HR band "
            f"with --ref-bidx, e.g. --ref-bidx {','.join(str(i) for i in range(1, bands + 1))}"
        )
    if filler.tile is not None and filler.tile != cfg.tiles.size:
        raise ConfigError(
            f"--tile is {cfg.tiles.size} but the {filler.name} model works on {filler.tile} px windows; "
            f"expected --tile {filler.tile}"
        )


def _fit_tiles(cfg: FillConfig, inputs: _Inputs) -> FillConfig:
    """Widen the windows for fillers that need large ones (`min_tile`), up to the scene size."""
    want = getattr(inputs.filler, "min_tile", None)
    if not want or cfg.tiles.size >= want:
        return cfg
    size = min(want, -(-max(inputs.hr.shape) // 16) * 16)
    if size <= cfg.tiles.size:
        return cfg
    tiles = dataclasses.replace(cfg.tiles, size=size, overlap=min(size // 2, max(cfg.tiles.overlap, size // 8)))
    logger.info("%s: windows widened to %d px (overlap %d)", inputs.filler.name, tiles.size, tiles.overlap)
    return dataclasses.replace(cfg, tiles=tiles)


def _open_inputs(
    hr_path: str | os.PathLike[str],
    ref_path: str | os.PathLike[str],
    mask_path: str | os.PathLike[str] | None,
    cfg: FillConfig,
    filler: Filler | None,
    tmpdir: str | None,
    shift: tuple[float, float] | None = None,
) -> _Inputs:
    """Open and validate every input; close what was opened when a later one fails.

    A given `shift` is used as it is (no co-registration estimate).
    """
    hr_path, ref_path = os.fspath(hr_path), os.fspath(ref_path)
    mask = None if mask_path is None else os.fspath(mask_path)
    with contextlib.ExitStack() as stack:
        hr = HrRaster.open(hr_path, indexes=cfg.indexes, nodata=cfg.nodata)
        stack.callback(hr.src.close)
        ref_src = open_raster(ref_path, "reference")
        stack.callback(ref_src.close)
        ref_indexes = cfg.ref_indexes or default_ref_indexes(ref_src, len(hr.indexes))
        if shift is None and cfg.coregister:
            from extendgan_geo.io.coregister import estimate_shift

            shift = estimate_shift(hr, ref_src, ref_indexes, nodata=cfg.ref_nodata)
        ref = RefGrid.build(
            ref_src,
            hr.src,
            indexes=ref_indexes,
            nodata=cfg.ref_nodata,
            resampling=cfg.resampling,
            shift=shift or (0.0, 0.0),
            tmpdir=tmpdir,
        )
        stack.callback(ref.close)
        sources = [open_gap_source(mask, layer=cfg.mask_layer, hr=hr.src)] if mask else []
        for source in sources:
            stack.callback(source.close)
        filler = filler or make_filler(cfg, len(hr.indexes))
        _check_filler(filler, cfg, len(hr.indexes), len(ref_indexes))
        _warn_model_mismatch(
            getattr(filler, "meta", {}), cfg.resampling, ref.scale, max(1, len(_passes(filler, ref.scale, cfg)))
        )
        stack.pop_all()
    return _Inputs(hr, ref, sources, filler, os.path.basename(ref_path))


def _warn_model_mismatch(meta: dict[str, Any], resampling: str, scale: float, passes: int = 1) -> None:
    """Log when a model meets references unlike its training ones: another kernel, or coarser than its range."""
    trained = meta.get("resampling")
    if trained and resampling not in (trained, *INTERPOLATING.get(trained, ())):
        logger.warning(
            "the model was trained on references upsampled with %s, this run warps them with %s "
            "(--resampling %s matches the model)",
            trained,
            resampling,
            trained,
        )
    top = float((meta.get("scale_range") or [0, math.inf])[1])
    if scale > SCALE_SLACK * top:
        gains = (
            f"it fills coarse to fine ({passes} passes) and gains less over --method match (bundled model: +0.4 dB "
            "at 15-20x, +0.3 dB at 30x with 1 case in 20 below it; docs/model.md)"
            if passes > 1
            else "in one pass it gains little over --method match (bundled model: +0.2 dB at 15-20x, -0.1 dB at "
            "30x; coarse to fine, the bundled model's default, +0.4 and +0.3 dB; docs/model.md)"
        )
        logger.warning(
            "the reference is %.1fx coarser than the HR, beyond the %gx the model was trained on; %s",
            scale,
            top,
            gains,
        )


def _sample(inputs: _Inputs, reader: GapReader, size: int = 64, grid: int = 8) -> TileBatch:
    """A sparse sample of the scene for fillers that fit scene-wide statistics: a grid of small windows."""
    height, width = inputs.hr.shape
    h, w = min(size, height), min(size, width)
    rows = sorted({int(v) for v in np.linspace(0, height - h, grid)})
    cols = sorted({int(v) for v in np.linspace(0, width - w, grid)})
    sel = [i - 1 for i in inputs.hr.indexes]
    hrs, refs, gaps, origins = [], [], [], []
    for r in rows:
        for c in cols:
            data, gap, _ = reader.read(r, c, h, w)
            if data is None:
                continue
            hr = data[sel].astype(np.float32)
            hr[:, gap] = 0.0  # fillers never see what lies under the gap
            hrs.append(hr)
            gaps.append(gap[None])
            refs.append(inputs.ref.read(r, c, h, w))
            origins.append((r, c))
    return TileBatch(np.stack(hrs), np.stack(refs), np.stack(gaps), np.array(origins, dtype=np.int64), inputs.ref.scale)


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
        "EGAN_HEAL": "yes" if heals(inputs.filler, cfg.heal) else "no",
        "EGAN_MODEL_PASSES": ",".join(f"{s:.2f}x" for s in _passes(inputs.filler, inputs.ref.scale, cfg)) or "none",
        "EGAN_REFERENCE_SHIFT_PX": f"{inputs.ref.shift[0]:.4f},{inputs.ref.shift[1]:.4f}",
        "EGAN_TILE": str(tiles.size),
        "EGAN_OVERLAP": str(tiles.overlap),
        "EGAN_BLEND": tiles.blend,
        "EGAN_MASK_BUFFER_PX": str(cfg.mask_buffer),
        "EGAN_MASKS": ";".join(s.description for s in inputs.sources) or "none",
        "EGAN_RASTERIO_GDAL": f"rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}",
    }


def _passes(filler: Filler, scale: float, cfg: FillConfig) -> list[float]:
    """The reference's scale factor in each model pass over a window (several: coarse to fine; none: no model)."""
    passes = getattr(filler, "passes", None)
    return list(passes(scale, cfg.tiles.size)) if passes else []


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
    sample: TileBatch | None = None,
    shift: tuple[float, float] | None = None,
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
        sample: prepare the filler on this sample (of a larger scene this raster is part of, e.g. a mosaic
            strip) instead of on a sample of this raster, so that scene-wide statistics are shared.
        shift: (dx, dy) reference shift in HR pixels to apply instead of estimating one (`cfg.coregister`).

    Returns:
        A FillResult with pixel counts and timings.

    Raises:
        EganError: bad input (see errors.py); nothing is written at `output` then.
    """
    t0 = time.perf_counter()
    cfg, out_cfg = cfg or FillConfig(), out_cfg or OutputConfig()
    output = os.fspath(output)
    check_output(output, out_cfg, sidecars=(FILL_MASK_SUFFIX,) if out_cfg.write_fill_mask else ())
    if out_cfg.uncertainty:
        check_output(os.fspath(out_cfg.uncertainty), out_cfg)
    inputs = _open_inputs(hr_path, ref_path, mask, cfg, filler, out_cfg.tmpdir, shift)
    cfg = _fit_tiles(cfg, inputs)
    try:
        if out_cfg.uncertainty:
            _ask_spread(inputs.filler, out_cfg)
        # GDAL_CACHEMAX is left to the process (the CLI sets it): set through rasterio.Env it slows GDAL's COG
        # driver by ~1.5x (measured, docs/benchmarks.md).
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_TIFF_INTERNAL_MASK=True):
            result = _run(inputs, cfg, out_cfg, output, progress, sample)
    finally:
        inputs.close()
        allocator.release()  # what a CPU generator kept for reuse goes back to the system
    result.seconds["total"] = time.perf_counter() - t0
    logger.info("%s", result.summary())
    return result


def _run(
    inputs: _Inputs,
    cfg: FillConfig,
    out_cfg: OutputConfig,
    output: str,
    progress: Progress | None,
    sample: TileBatch | None = None,
) -> FillResult:
    """Scan the gap, copy the HR raster to a temporary file, patch the gap units, finalize."""
    hr = inputs.hr
    profile = output_profile(hr.src, out_cfg, nodata=hr.nodata)
    reader = GapReader(hr, inputs.sources, buffer=cfg.mask_buffer)
    seconds: dict[str, float] = {}
    with timed(seconds, "scan"):
        scan = reader.scan()
    with timed(seconds, "sample"):
        inputs.filler.prepare(_sample(inputs, reader) if sample is None else sample)
    tmp = temp_path(output, out_cfg.tmpdir, ".tif")
    mask_out = output + FILL_MASK_SUFFIX
    tmp_mask = temp_path(mask_out, out_cfg.tmpdir, ".tif")
    spread_out = os.fspath(out_cfg.uncertainty) if out_cfg.uncertainty else None
    tmp_spread = temp_path(spread_out, out_cfg.tmpdir, ".tif") if spread_out else None
    with removing_on_error(tmp, tmp_mask, *([tmp_spread] if tmp_spread else [])):
        with timed(seconds, "copy"):
            make_base(hr.src, tmp, profile, byte_copy=copies_bytes(hr.src, out_cfg), cog=out_cfg.cog)
        with (
            rasterio.open(tmp, "r+") as dst,
            _open_codes(tmp_mask, hr, output) as codes_dst,
            _open_spread(tmp_spread, hr, output, out_cfg.uncertainty_method) as spread_dst,
        ):
            spread = out_cfg.uncertainty_method if out_cfg.uncertainty else None
            engine = Engine(hr, inputs.ref, reader, inputs.filler, cfg, _unit(dst), spread)
            engine.counts.seconds.update(seconds)
            if hr.nodata is not None and dst.nodata != hr.nodata:
                dst.nodata = hr.nodata
            counts = engine.run(scan, dst, codes_dst, progress, spread_dst)
            tags = {**_provenance(inputs, cfg), **_count_tags(counts, mask_out, out_cfg)}
            tags["EGAN_UNCERTAINTY"] = os.path.basename(spread_out) if spread_out else "none"
            dst.update_tags(**tags)
        with timed(counts.seconds, "finalize"):
            finalize(tmp, output, profile, cog=out_cfg.cog, tmpdir=out_cfg.tmpdir)
            if out_cfg.write_fill_mask:
                move_into_place(tmp_mask, mask_out)
            if tmp_spread and spread_out:
                move_into_place(tmp_spread, spread_out)
    result = _result(inputs, counts, output)
    result.fill_mask = mask_out if out_cfg.write_fill_mask else None
    return result


def _result(inputs: _Inputs, counts: Counts, output: str | None) -> FillResult:
    return FillResult(
        output=output,
        shape=inputs.hr.shape,
        gap_pixels=counts.gap_pixels,
        filled_pixels=counts.filled_pixels,
        unfilled_pixels=counts.unfilled_pixels,
        windows_computed=counts.windows_computed,
        windows_total=counts.windows_total,
        method=inputs.filler.name,
        shift=inputs.ref.shift,
        seconds=counts.seconds,
    )


def _unit(dst: Any) -> tuple[int, int]:
    """Output unit: the file's block shape, grown to at least 256 x 256 px (whole blocks are rewritten)."""
    bh, bw = dst.block_shapes[0]
    return bh * -(-256 // bh), bw * -(-256 // bw)


def _sidecar_profile(hr: HrRaster, dtype: str, **extra: Any) -> dict[str, Any]:
    """One-band sparse tiled GeoTIFF on the HR grid (unwritten blocks read as 0)."""
    src = hr.src
    return {
        "driver": "GTiff",
        "width": src.width,
        "height": src.height,
        "count": 1,
        "dtype": dtype,
        "crs": src.crs,
        "transform": src.transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "sparse_ok": True,
        **extra,
    }


def _open_codes(path: str, hr: HrRaster, output: str) -> Any:
    """The fill-mask sidecar: a sparse tiled uint8 GeoTIFF (unwritten blocks read as 0, "kept")."""
    dst = rasterio.open(path, "w", **_sidecar_profile(hr, "uint8"))
    dst.set_band_description(1, "0 kept, 1 filled, 2 gap left unfilled")
    dst.update_tags(EGAN_FILL_MASK="0=kept,1=filled,2=unfilled", EGAN_OUTPUT=os.path.basename(output))
    return dst


def _ask_spread(filler: Filler, out_cfg: OutputConfig) -> None:
    """Ask the filler for its uncertainty channel, the way `out_cfg` says.

    Raises:
        ConfigError: the filler has no uncertainty, or not of that kind.
    """
    kinds = tuple(getattr(filler, "spread_methods", ()))
    if not getattr(filler, "supports_spread", False) or not kinds:
        raise ConfigError(f"--uncertainty is not available for method {filler.name!r}; expected --method gan or match")
    if out_cfg.uncertainty_method not in kinds:
        raise ConfigError(
            f"--uncertainty-method {out_cfg.uncertainty_method} is not available for method {filler.name!r}; "
            f"expected one of {', '.join(kinds)}"
        )
    # "local" is the engine's (from the image written); the filler adds its own kinds as an extra channel.
    filler.spread = out_cfg.uncertainty_method != "local"  # type: ignore[attr-defined]
    filler.spread_method = out_cfg.uncertainty_method  # type: ignore[attr-defined]


SPREAD_DESCRIPTIONS = {
    "local": "RMS over bands of the 7x7 local standard deviation of the filled image",
    "flips": "spread over 4 flips",
    "fit": "RMS residual of the window fit",
}


def _open_spread(path: str | None, hr: HrRaster, output: str, method: str) -> Any:
    """The uncertainty raster: sparse tiled float32 (unwritten blocks, outside the gap, read as 0)."""
    if path is None:
        return contextlib.nullcontext(None)
    dst = rasterio.open(path, "w", **_sidecar_profile(hr, "float32", predictor=3))
    how = SPREAD_DESCRIPTIONS[method]
    dst.set_band_description(1, f"uncertainty of filled pixels, file units ({how}); 0 kept, NaN unfilled")
    dst.update_tags(EGAN_UNCERTAINTY=how, EGAN_OUTPUT=os.path.basename(output))
    return dst


def _count_tags(counts: Counts, mask_out: str, out_cfg: OutputConfig) -> dict[str, str]:
    return {
        "EGAN_GAP_PIXELS": str(counts.gap_pixels),
        "EGAN_FILLED_PIXELS": str(counts.filled_pixels),
        "EGAN_UNFILLED_PIXELS": str(counts.unfilled_pixels),
        "EGAN_FILL_MASK": os.path.basename(mask_out) if out_cfg.write_fill_mask else "none",
    }


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

    Scans the gap once, row strip by row strip, to count gap pixels and the windows to compute.

    Returns:
        A JSON-ready dict: HR and reference grids, footprint overlap, gap size, windows, output profile.

    Raises:
        EganError: the same input errors as `fill_raster`.
    """
    cfg, out_cfg = cfg or FillConfig(), out_cfg or OutputConfig()
    output = os.fspath(output)
    check_output(output, out_cfg)
    inputs = _open_inputs(hr_path, ref_path, mask, cfg, filler, out_cfg.tmpdir)
    cfg = _fit_tiles(cfg, inputs)
    try:
        if out_cfg.uncertainty:
            _ask_spread(inputs.filler, out_cfg)
        reader = GapReader(inputs.hr, inputs.sources, buffer=cfg.mask_buffer)
        scan = reader.scan()
        engine = Engine(inputs.hr, inputs.ref, reader, inputs.filler, cfg, (256, 256))
        windows = sum(len(engine.windows(scan, i)) for i in range(len(engine.grid.rows)))
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
                "scale_factor": round(inputs.ref.scale, 2),  # its pixel size over the HR's (models: docs/model.md)
                "resampling": cfg.resampling,
            },
            "masks": [s.description for s in inputs.sources],
            "gap": {"pixels": scan.gap_pixels, "fraction": round(scan.gap_pixels / (height * width), 6)},
            "windows": {
                "tile": cfg.tiles.size,
                "overlap": cfg.tiles.overlap,
                "in_grid": engine.grid.count,
                "to_compute": windows,
            },
            "method": inputs.filler.name,
            # The reference's scale factor in each model pass over a window: more than one is coarse to fine.
            "model_passes": [round(s, 2) for s in _passes(inputs.filler, inputs.ref.scale, cfg)],
            "output": {
                "path": output,
                "format": "COG" if out_cfg.cog else "GTiff",
                "starts_as_byte_copy": copies_bytes(inputs.hr.src, out_cfg),
                **{k: str(v) for k, v in profile.items() if k not in {"transform"}},
            },
        }
    finally:
        inputs.close()
