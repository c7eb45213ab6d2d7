"""`egan-fill evaluate`: punch gaps into a complete HR raster, fill them with each method, score and picture them.

Each *case* is a crop of the truth raster, a gap layout and a reference (the user's, or one simulated from the
truth at a given scale factor). The crop is written as a GeoTIFF, the gap as an aligned mask raster (or the user's
polygons), and every method runs through `fill_raster`, the same engine users run, so the scores include
co-registration, windowing and blending. Metrics come from `metrics.score` on the gap only and on the whole crop.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from extendgan_geo import __version__, masks_synth, metrics
from extendgan_geo.config import FillConfig, OutputConfig, ResamplingKind, TileConfig
from extendgan_geo.degrade import DegradeConfig, simulate_coarse
from extendgan_geo.errors import CheckpointError, ConfigError, InputError
from extendgan_geo.fillers.match import fit_gain_bias
from extendgan_geo.io.raster import HrRaster, open_raster
from extendgan_geo.io.reference import RefGrid
from extendgan_geo.scaling import band_range

logger = logging.getLogger(__name__)

LAYOUTS = ("right-half", "quarter", "seam", "cloud", "polygons")
BASE_METHODS = ("match", "reference", "fillnodata", "gan")
PLACEHOLDER_CRS = "EPSG:3857"  # for truths without a CRS (simulated references only)
TABLE_METRICS = ("psnr", "ssim", "ssim_d", "cc", "uqi", "sam", "ergas", "mae", "seam")


@dataclass(frozen=True)
class EvalConfig:
    """What `evaluate` runs.

    Attributes:
        layouts: gap layouts ("right-half" = the paper's protocol, "quarter", "seam", "cloud", "polygons" = the
            user's gap file clipped to each crop).
        factors: scale factors of simulated references (reference px / HR px); empty = use the given reference.
        methods: "match", "reference", "fillnodata", "gan" (the bundled or `model` checkpoint).
        models: extra checkpoints, each scored as its own method (named after the file).
        crop: crop edge, px.
        cases: crops per layout and reference.
        seed: seed of crop positions, gap shapes and simulated references.
        indexes: truth bands (None = all but alpha); ref_indexes: reference bands paired with them.
        model: checkpoint for "gan" (None = the bundled model).
        tiles: window grid of every method.
        paper_protocol: the paper's Table I layout: 256 px crops, right half, scores over the whole tile.
        rgb: three band positions (1-based, within `indexes`) shown in the pictures; None = first three.
        device: torch device of learned methods.
        resampling: kernel that warps the reference onto the HR grid, for every method and for SSIM-D.
        heal: edge healing for match (`FillConfig.heal`).
        coarse_to_fine: two-pass gan fills for references beyond the model's range (`FillConfig.coarse_to_fine`).
    """

    layouts: tuple[str, ...] = ("right-half", "quarter", "seam", "cloud")
    factors: tuple[float, ...] = ()
    methods: tuple[str, ...] = BASE_METHODS
    models: tuple[str, ...] = ()
    crop: int = 512
    cases: int = 2
    seed: int = 0
    indexes: tuple[int, ...] | None = None
    ref_indexes: tuple[int, ...] | None = None
    model: str | None = None
    tiles: TileConfig = field(default_factory=TileConfig)
    paper_protocol: bool = False
    rgb: tuple[int, ...] | None = None
    device: str = "auto"
    resampling: ResamplingKind = "lanczos"
    heal: bool = True
    coarse_to_fine: bool = True

    def __post_init__(self) -> None:
        if self.resampling not in get_args(ResamplingKind):
            raise ConfigError(f"resampling must be one of {get_args(ResamplingKind)}, got {self.resampling!r}")
        bad = sorted(set(self.layouts) - set(LAYOUTS))
        if bad or not self.layouts:
            raise ConfigError(f"unknown gap layout(s) {bad}; expected some of {list(LAYOUTS)}")
        bad = sorted(set(self.methods) - set(BASE_METHODS))
        if bad or not (self.methods or self.models):
            raise ConfigError(f"unknown method(s) {bad}; expected some of {list(BASE_METHODS)} or --model-eval PATH")
        if any(f < 1.0 for f in self.factors):
            raise ConfigError(f"scale factors must be >= 1 (reference px per HR px), got {list(self.factors)}")
        if self.crop < 64 or self.cases < 1:
            raise ConfigError(f"crop must be >= 64 px and cases >= 1, got {self.crop} and {self.cases}")
        if self.rgb is not None and len(self.rgb) not in (1, 3):
            raise ConfigError(f"--rgb takes 1 or 3 band positions, got {list(self.rgb)}")


@dataclass
class Case:
    """One crop x layout x reference."""

    name: str
    row: int
    col: int
    layout: str
    factor: float | None
    truth: np.ndarray
    valid: np.ndarray
    gap: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    reference: np.ndarray | None = None
    matched: np.ndarray | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class EvalResult:
    """Rows of scores and the files written."""

    rows: list[dict[str, Any]]
    files: list[str]


def _crop_origins(hr: HrRaster, size: int, n: int, seed: int) -> list[tuple[int, int]]:
    """N crop positions with >= 99 % valid truth, spread over the raster (seeded)."""
    height, width = hr.shape
    if height < size or width < size:
        raise InputError(
            f"truth raster is {width}x{height} px, smaller than one {size} px crop; expected a larger raster or --crop"
        )
    rng = np.random.default_rng(seed)
    # Candidates a quarter crop apart, visited in a seeded order: distinct crops first, overlapping ones only
    # when the raster has few fully valid places.
    step = max(1, size // 4)
    rows = sorted({*range(0, height - size + 1, step), height - size})
    cols = sorted({*range(0, width - size + 1, step), width - size})
    grid = [(r, c) for r in rows for c in cols]
    rng.shuffle(grid)
    grid.sort(key=lambda rc: (rc[0] % size != 0) + (rc[1] % size != 0))
    picked: list[tuple[int, int]] = []
    for r, c in grid:
        data = hr.src.read(window=Window(c, r, size, size))
        if (~hr.holes(data, None)).mean() >= 0.99:
            picked.append((int(r), int(c)))
        if len(picked) == n:
            break
    if not picked:
        raise InputError(
            f"no {size} px crop of the truth raster is at least 99 % valid; expected a gap-free truth: "
            "pass a smaller --crop or another raster"
        )
    return picked


def _layout(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    size = max(h, w)
    if kind == "right-half":
        gap = np.zeros(shape, bool)
        gap[:, w // 2 :] = True
        return gap
    draw = {"quarter": masks_synth.quarter, "seam": masks_synth.seam, "cloud": masks_synth.cloud}[kind]
    return draw(size, rng)[:h, :w]


def _write(path: str, data: np.ndarray, profile: dict[str, Any], **extra: Any) -> None:
    prof = {**profile, **extra, "count": data.shape[0], "driver": "GTiff"}
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data.astype(prof["dtype"]))


def evaluate(
    truth_path: str,
    out_dir: str,
    *,
    ref_path: str | None = None,
    gaps_path: str | None = None,
    cfg: EvalConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Score every method on every case; write metrics.csv, metrics.json, metrics.md and PNG figures to `out_dir`.

    Args:
        truth_path: a complete HR raster (the truth).
        out_dir: folder for the tables and figures (created).
        ref_path: a real reference raster; required unless `cfg.factors` simulates references.
        gaps_path: vector or raster gaps for the "polygons" layout.
        cfg: what to run.
        progress: called with a short description before each case.

    Raises:
        EganError: bad inputs or settings.
    """
    cfg = cfg or EvalConfig()
    if cfg.paper_protocol:
        cfg = dataclasses.replace(cfg, crop=256, layouts=("right-half",))
    if not cfg.factors and ref_path is None:
        raise ConfigError("evaluate needs a reference: pass --ref REF or simulate ones with --factor 1.5,3,6,10")
    if "polygons" in cfg.layouts and gaps_path is None:
        raise ConfigError("the 'polygons' layout needs --gaps FILE (vector polygons or a mask raster)")
    _check_models(cfg)
    os.makedirs(out_dir, exist_ok=True)
    # A truth without georeferencing (e.g. a photo mosaic) works with simulated references: its crops get a
    # placeholder 1 m grid in a local projected CRS.
    hr = HrRaster.open(truth_path, indexes=cfg.indexes, nodata=None, georeferenced=ref_path is not None)
    rows: list[dict[str, Any]] = []
    files: list[str] = []
    methods = [*cfg.methods, *(os.path.splitext(os.path.basename(m))[0] for m in cfg.models)]
    if len(set(methods)) != len(methods):
        raise ConfigError(f"method names must be unique, got {methods}; rename the --model-eval files")
    from extendgan_geo.figures import case_panel, metrics_chart

    # Everything is made in a hidden folder inside `out_dir` and moved out only when the whole evaluation
    # succeeded: a failed run adds nothing to `out_dir`.
    try:
        origins = _crop_origins(hr, cfg.crop, cfg.cases, cfg.seed)
        refs: list[float | None] = list(cfg.factors) or [None]
        with tempfile.TemporaryDirectory(prefix=".egan-eval-", dir=out_dir) as tmp:
            staged = os.path.join(tmp, "out")
            os.makedirs(staged)
            for i, (r, c) in enumerate(origins):
                for factor in refs:
                    for layout in cfg.layouts:
                        name = f"c{i}-{layout}" + (f"-x{factor:g}" if factor else "")
                        if progress:
                            progress(name)
                        case = _run_case(hr, name, r, c, layout, factor, ref_path, gaps_path, cfg, methods, tmp)
                        rows.extend(_score(case, cfg, methods, factor, ref_path, hr))
                        png = os.path.join(staged, f"{name}.png")
                        case_panel(case, methods, png, rgb=cfg.rgb)
                        files.append(png)
            files.extend(_write_tables(rows, cfg, staged, truth_path, ref_path, methods))
            chart = os.path.join(staged, "metrics.png")
            metrics_chart(rows, methods, chart, region="whole" if cfg.paper_protocol else "gap")
            files.append(chart)
            final = [os.path.join(out_dir, os.path.basename(f)) for f in files]
            for src, dst in zip(files, final, strict=True):
                os.replace(src, dst)
    finally:
        hr.src.close()
    return EvalResult(rows, final)


def _check_models(cfg: EvalConfig) -> None:
    """Read every checkpoint's metadata before any case runs, so a bad path fails at once."""
    from extendgan_geo.fillers.gan import bundled_model
    from extendgan_geo.model.checkpoint import read_metadata

    if "gan" in cfg.methods:
        path = cfg.model or bundled_model()
        if path is None:
            raise CheckpointError(
                "method gan needs a model: this installation bundles none; expected --model PATH or other --methods"
            )
        read_metadata(path)
    for path in cfg.models:
        read_metadata(path)


def _run_case(
    hr: HrRaster,
    name: str,
    r: int,
    c: int,
    layout: str,
    factor: float | None,
    ref_path: str | None,
    gaps_path: str | None,
    cfg: EvalConfig,
    methods: list[str],
    tmp: str,
) -> Case:
    from extendgan_geo.pipeline import fill_raster

    size = cfg.crop
    win = Window(c, r, size, size)
    src = hr.src
    sel = list(hr.indexes)
    data = src.read(window=win)
    valid = ~hr.holes(data, None)
    truth = data[[i - 1 for i in sel]].astype(np.float64)
    georef = src.crs is not None and not src.transform.is_identity
    transform = src.window_transform(win) if georef else Affine(1.0, 0.0, float(c), 0.0, -1.0, -float(r))
    crs = src.crs if georef else PLACEHOLDER_CRS
    profile = {
        "crs": crs,
        "transform": transform,
        "width": size,
        "height": size,
        "dtype": src.dtypes[0],
        "nodata": hr.nodata,
        "tiled": True,
        "blockxsize": 256 if size % 256 == 0 else 16 * max(1, size // 16),
        "blockysize": 256 if size % 256 == 0 else 16 * max(1, size // 16),
    }
    case_dir = os.path.join(tmp, name)
    os.makedirs(case_dir)
    truth_file = os.path.join(case_dir, "truth.tif")
    _write(truth_file, data[[i - 1 for i in sel]], profile)
    rng = np.random.default_rng([cfg.seed, r, c, LAYOUTS.index(layout), int((factor or 0) * 1000)])
    mask_file: str | None
    if layout == "polygons":
        mask_file = gaps_path
    else:
        mask_file = os.path.join(case_dir, "gap.tif")
        gap = _layout(layout, (size, size), rng) & valid
        _write(mask_file, gap[None].astype(np.uint8), {**profile, "dtype": "uint8", "nodata": None})
    # The reference: a real one, or one simulated from the truth crop at `factor`, written on its coarse grid.
    ref_indexes = cfg.ref_indexes
    if factor is not None:
        coarse, _ = simulate_coarse(
            np.where(valid, truth, truth[:, valid].mean(axis=1)[:, None, None]).astype(np.float32),
            band_range(truth[:, valid]),
            rng,
            DegradeConfig(factor=(factor, factor)),
        )
        ref_file = os.path.join(case_dir, "ref.tif")
        ref_profile = {
            "crs": crs,
            "transform": transform @ Affine.scale(size / coarse.shape[2], size / coarse.shape[1]),
            "width": coarse.shape[2],
            "height": coarse.shape[1],
            "dtype": "float32",
            "nodata": None,
        }
        _write(ref_file, coarse, ref_profile)
        ref_indexes = None
    else:
        assert ref_path is not None
        ref_file = ref_path
    case = Case(name, r, c, layout, factor, truth, valid)
    base = FillConfig(
        ref_indexes=ref_indexes,
        tiles=cfg.tiles,
        device=cfg.device,  # type: ignore[arg-type]
        resampling=cfg.resampling,
        heal=cfg.heal,
        coarse_to_fine=cfg.coarse_to_fine,
    )
    out_cfg = OutputConfig(cog=False, overwrite=True)
    models = dict(zip(methods[len(cfg.methods) :], cfg.models, strict=True))
    for method in methods:
        out = os.path.join(case_dir, f"{method}.tif")
        if method in models:
            fcfg = dataclasses.replace(base, method="gan", model=models[method])
        else:
            fcfg = dataclasses.replace(base, method=method, model=cfg.model if method == "gan" else None)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        fill_raster(truth_file, ref_file, out, cfg=fcfg, out_cfg=out_cfg, mask=mask_file)
        seconds = time.perf_counter() - t0
        with rasterio.open(out) as o, rasterio.open(out + ".fillmask.tif") as m:
            case.outputs[method] = o.read().astype(np.float64)
            codes = m.read(1)
        case.outputs[method + ":codes"] = codes
        case.outputs[method + ":seconds"] = np.array(seconds)
        if not case.gap.size:
            case.gap = codes > 0
    # The reference on the HR grid (for SSIM-D and the picture), raw and matched to the truth's known pixels.
    with open_raster(ref_file, "reference") as ref_src, rasterio.open(truth_file) as truth_src:
        idx = ref_indexes or tuple(range(1, len(sel) + 1))
        grid = RefGrid.build(ref_src, truth_src, indexes=idx, nodata=None, resampling=cfg.resampling, tmpdir=case_dir)
        try:
            ref = grid.read(0, 0, size, size).astype(np.float64)
        finally:
            grid.close()
    case.reference = ref
    known = valid & ~case.gap & np.isfinite(ref).all(axis=0)
    gain, bias, _ = fit_gain_bias(truth.astype(np.float32), np.nan_to_num(ref).astype(np.float32), known)
    case.matched = gain[:, None, None] * ref + bias[:, None, None]
    return case


def _score(
    case: Case, cfg: EvalConfig, methods: list[str], factor: float | None, ref_path: str | None, hr: HrRaster
) -> list[dict[str, Any]]:
    scale = factor or _pixel_ratio(ref_path, hr)
    rows = []
    # Every method is scored on the same pixels: valid truth, and filled by all methods. A gap pixel one method
    # left unfilled still holds the truth in its output, so it is left out for all (and counted per method).
    common = case.valid.copy()
    for method in methods:
        common &= case.outputs[method + ":codes"] != 2
    for method in methods:
        codes = case.outputs[method + ":codes"]
        pred = case.outputs[method]
        scores = metrics.score(
            case.truth,
            pred,
            case.gap,
            reference=case.matched,
            scale=scale,
            valid=common,
        )
        for region in ("gap", "whole"):
            s = scores[region]
            rows.append(
                {
                    "case": case.name,
                    "crop_row": case.row,
                    "crop_col": case.col,
                    "layout": case.layout,
                    "factor": factor if factor is not None else round(scale, 3),
                    "reference": "simulated" if factor is not None else "given",
                    "method": method,
                    "region": region,
                    "gap_share": round(float(case.gap.mean()), 4),
                    "unfilled": int((codes == 2).sum()),
                    **{k: s.get(k, math.nan) for k in TABLE_METRICS},
                    "seconds": round(float(case.outputs[method + ":seconds"]), 3),
                }
            )
    return rows


def _pixel_ratio(ref_path: str | None, hr: HrRaster) -> float:
    """Reference pixel size over HR pixel size, from the reference's footprint on the HR CRS."""
    if ref_path is None:
        return 1.0
    from rasterio.warp import calculate_default_transform

    with rasterio.open(ref_path) as ref:
        transform, _, _ = calculate_default_transform(ref.crs, hr.src.crs, ref.width, ref.height, *ref.bounds)
    return float(abs(transform.a) / abs(hr.src.transform.a))


def _mean_rows(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    out = []
    for key, members in groups.items():
        agg: dict[str, Any] = dict(zip(keys, key, strict=True))
        agg["cases"] = len(members)
        for m in TABLE_METRICS:
            vals = [float(x[m]) for x in members if x[m] is not None and math.isfinite(float(x[m]))]
            agg[m] = float(np.mean(vals)) if vals else math.nan
        out.append(agg)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def _markdown(rows: list[dict[str, Any]], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _write_tables(
    rows: list[dict[str, Any]],
    cfg: EvalConfig,
    out_dir: str,
    truth_path: str,
    ref_path: str | None,
    methods: list[str],
) -> list[str]:
    csv_path = os.path.join(out_dir, "metrics.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = _mean_rows(rows, ("region", "layout", "factor", "method"))
    overall = _mean_rows(rows, ("region", "method"))
    json_path = os.path.join(out_dir, "metrics.json")
    with open(json_path, "w") as f:
        json.dump(
            {
                "truth": truth_path,
                "reference": ref_path,
                "config": {k: v for k, v in dataclasses.asdict(cfg).items()},
                "version": __version__,
                "rows": rows,
                "summary": summary,
                "overall": overall,
            },
            f,
            indent=1,
            default=float,
        )
    md_path = os.path.join(out_dir, "metrics.md")
    cols = ["method", "cases", *TABLE_METRICS]
    parts = [f"# Evaluation of `{os.path.basename(truth_path)}`\n"]
    if cfg.paper_protocol:
        parts.append(
            "Paper protocol (Cui et al. 2023, Table I layout): 256 px crops, right half missing, scores over the "
            "whole tile (known half included; whole-tile PSNR = gap PSNR + ~3 dB).\n"
        )
        parts.append(_markdown([r for r in overall if r["region"] == "whole"], cols))
    parts.append("\n## Gap only (the honest figure), mean over cases\n\n")
    parts.append(_markdown([r for r in overall if r["region"] == "gap"], cols))
    parts.append("\n## Whole crop, mean over cases\n\n")
    parts.append(_markdown([r for r in overall if r["region"] == "whole"], cols))
    parts.append("\n## Gap only, per layout and scale factor\n\n")
    parts.append(_markdown([r for r in summary if r["region"] == "gap"], ["layout", "factor", *cols]))
    parts.append("\n## Every case, gap only\n\n")
    parts.append(
        _markdown(
            [r for r in rows if r["region"] == "gap"],
            ["case", "layout", "factor", "method", "gap_share", "unfilled", *TABLE_METRICS, "seconds"],
        )
    )
    parts.append(
        "\nPSNR in dB with each band's data range = max - min of the truth crop; MAE as a share of that range; "
        "SAM in radians; ERGAS per Wald with the scale factor; seam 1.0 = seamless. SSIM-D uses the reference "
        "matched to the truth's known pixels (per-band gain and bias). Definitions: docs/metrics.md.\n"
    )
    with open(md_path, "w") as f:
        f.write("".join(parts))
    return [csv_path, json_path, md_path]
