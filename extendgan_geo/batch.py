"""Batch fills on dask.distributed: manifests, job signatures, resumable runs and a report.

A batch is a list of `Job`s (one HR raster, its reference, an optional gap mask, an output and the fill
settings), read from a CSV or YAML manifest or made from a glob of HR files. `run_batch` submits one
`run_job` task per job to a dask.distributed cluster (a LocalCluster started here, or an existing scheduler), so
the same code runs on a laptop and on a cluster. Every job is `fill_raster`; a failing job is recorded with its
error and does not stop the others.

Resuming: each output carries an `EGAN_JOB_SIGNATURE` tag, the sha256 of its inputs' identities (path, size,
modification time; for a VRT also those of its sources), the normalized settings and the package version. A job
whose output exists with the same signature (and its fill-mask sidecar, when one is asked for) is skipped.

Outputs appear atomically: the fill writes a hidden temporary GeoTIFF next to the output, the signature is added
to it, and only then is it turned into the final COG (or moved) onto the output path. (Tags cannot be added to a
finished COG: updating it in place breaks the COG layout, which GDAL refuses.)
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import glob
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from extendgan_geo import __version__
from extendgan_geo.config import FillConfig, OutputConfig, TileConfig
from extendgan_geo.errors import ConfigError, OutputExistsError
from extendgan_geo.pipeline import FILL_MASK_SUFFIX

logger = logging.getLogger(__name__)

SIGNATURE_TAG = "EGAN_JOB_SIGNATURE"
PATH_COLUMNS = ("hr", "ref", "mask", "out")
STATUSES = ("done", "skipped", "failed")
_CONNECT_TIMEOUT = "20s"  # to reach an existing scheduler


# --- per-job options ----------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return str(value).strip()


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("expected an integer")
    return int(value) if not isinstance(value, str) else int(value.strip())


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    return float(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text in {"1", "true", "yes", "y", "on"}:
        return True
    if text in {"0", "false", "no", "n", "off"}:
        return False
    raise ValueError("expected true or false")


def _bands(value: Any) -> tuple[int, ...]:
    items: Sequence[Any]
    if isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        items = [p for p in _text(value).replace(";", ",").replace(" ", ",").split(",") if p]
    bands = tuple(_int(v) for v in items)
    if not bands or min(bands) < 1:
        raise ValueError("expected 1-based band numbers such as 2,3,4,5")
    return bands


def _creation_options(value: Any) -> dict[str, str]:
    """GDAL creation options: a mapping, a list of NAME=VALUE, or one string of NAME=VALUE joined by ';'."""
    if isinstance(value, Mapping):
        return {str(k).strip().lower(): _text(v) for k, v in value.items()}
    items = value if isinstance(value, (list, tuple)) else [p for p in _text(value).split(";") if p.strip()]
    out: dict[str, str] = {}
    for item in items:
        name, sep, val = _text(item).partition("=")
        if not sep or not name:
            raise ValueError("expected NAME=VALUE pairs joined by ';', e.g. COMPRESS=DEFLATE;ZLEVEL=6")
        out[name.strip().lower()] = val.strip()
    return out


# Option name (the CLI's, with '_' for '-') -> parser. FillConfig, TileConfig and OutputConfig fields.
OPTION_PARSERS: dict[str, Callable[[Any], Any]] = {
    "method": _text,
    "model": _text,
    "bidx": _bands,
    "ref_bidx": _bands,
    "nodata": _float,
    "ref_nodata": _float,
    "mask_layer": _text,
    "mask_buffer": _int,
    "resampling": _text,
    "coregister": _bool,
    "heal": _bool,
    "coarse_to_fine": _bool,
    "device": _text,
    "precision": _text,
    "compile": _bool,
    "match_min_known": _float,
    "tile": _int,
    "overlap": _int,
    "blend": _text,
    "batch_size": _int,
    "cog": _bool,
    "fill_mask": _bool,
    "co": _creation_options,
    "overwrite": _bool,
}
# Other spellings: the dataclass field names.
OPTION_ALIASES = {
    "indexes": "bidx",
    "ref_indexes": "ref_bidx",
    "size": "tile",
    "creation_options": "co",
    "write_fill_mask": "fill_mask",
}
_FILL_FIELDS = {
    "method": "method",
    "model": "model",
    "bidx": "indexes",
    "ref_bidx": "ref_indexes",
    "nodata": "nodata",
    "ref_nodata": "ref_nodata",
    "mask_layer": "mask_layer",
    "mask_buffer": "mask_buffer",
    "resampling": "resampling",
    "coregister": "coregister",
    "heal": "heal",
    "coarse_to_fine": "coarse_to_fine",
    "device": "device",
    "precision": "precision",
    "compile": "compile",
    "match_min_known": "match_min_known",
}
_OUTPUT_FIELDS = {"cog": "cog", "co": "creation_options", "overwrite": "overwrite", "fill_mask": "write_fill_mask"}


def option_key(name: str) -> str | None:
    """The canonical option name of a manifest column or YAML key (None when it is not an option)."""
    key = name.strip().lower().replace("-", "_")
    key = OPTION_ALIASES.get(key, key)
    return key if key in OPTION_PARSERS else None


def normalize_options(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Parse per-job options (CSV strings or YAML values) into typed values under their canonical names.

    Empty values (an empty CSV cell, a YAML null) mean "not given".

    Args:
        raw: option name -> value.
        where: where the options come from, for messages (e.g. "jobs.csv line 3").

    Raises:
        ConfigError: an unknown option or a value that does not parse, naming `where` and the column.
    """
    out: dict[str, Any] = {}
    for name, value in raw.items():
        key = option_key(str(name))
        if key is None:
            known = ", ".join(["hr", "ref", "mask", "out", "name", *OPTION_PARSERS])
            raise ConfigError(f"{where}: unknown column {name!r}; expected one of {known}")
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            out[key] = OPTION_PARSERS[key](value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}, column {name!r}: {value!r} is not valid ({exc})") from None
    return out


def build_configs(options: Mapping[str, Any], where: str = "options") -> tuple[FillConfig, OutputConfig]:
    """FillConfig and OutputConfig from normalized options; defaults for the rest (overlap: tile / 4).

    Raises:
        ConfigError: a value out of range (bad method, overlap larger than half a tile, ...), naming `where`.
    """
    tile = options.get("tile", TileConfig.size)
    try:
        tiles = TileConfig(
            size=tile,
            overlap=options.get("overlap", tile // 4),
            blend=options.get("blend", TileConfig.blend),
            batch_size=options.get("batch_size", TileConfig.batch_size),
        )
        cfg = FillConfig(**{f: options[k] for k, f in _FILL_FIELDS.items() if k in options}, tiles=tiles)
        out_cfg = OutputConfig(**{f: options[k] for k, f in _OUTPUT_FIELDS.items() if k in options})
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return cfg, out_cfg


# --- jobs and manifests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One fill: what `fill_raster` is called with.

    Attributes:
        name: label in progress, summary and report (the manifest's `name`, else the output's file name).
        hr: the raster to fill.
        ref: its low-resolution reference.
        out: the output path (its folder must exist).
        mask: gap polygons or a mask raster, or None.
        cfg: fill settings.
        out_cfg: output settings.
        where: where the job was defined (manifest line or job number), for messages.
    """

    name: str
    hr: str
    ref: str
    out: str
    mask: str | None = None
    cfg: FillConfig = field(default_factory=FillConfig)
    out_cfg: OutputConfig = field(default_factory=OutputConfig)
    where: str = ""


def _resolve(path: str, base_dir: str | None) -> str:
    """An absolute path: `path` relative to `base_dir` (the manifest's folder; None = the current folder).

    URLs and GDAL /vsi paths are left as they are. Absolute paths let workers in another folder (--scheduler)
    open the files.
    """
    path = os.path.expanduser(path)
    if "://" in path or path.startswith("/vsi"):
        return path
    return os.path.abspath(os.path.join(base_dir, path) if base_dir else path)


def make_job(
    row: Mapping[str, Any], where: str, *, defaults: Mapping[str, Any] | None = None, base_dir: str | None = None
) -> Job:
    """A Job from one manifest row: paths (relative to `base_dir`), optional name and per-row options.

    Args:
        row: column -> value (hr, ref, out, and optionally mask, name and options).
        where: e.g. "jobs.csv line 3", for messages.
        defaults: normalized options the row's own options override. A relative `model` among them is relative to
            the current folder (resolve it first when it comes from elsewhere, as `read_manifest` does).
        base_dir: folder that the row's relative paths (and its own `model`) are relative to; None = the current
            folder.

    Raises:
        ConfigError: a required column is missing or empty, an unknown column, or a bad option value.
    """
    paths: dict[str, str | None] = {}
    for column in PATH_COLUMNS:
        value = row.get(column)
        text = "" if value is None else _text(value)
        if not text and column != "mask":
            raise ConfigError(f"{where}: column {column!r} is missing or empty; expected a path")
        paths[column] = _resolve(text, base_dir) if text else None
    others = {k: v for k, v in row.items() if k not in (*PATH_COLUMNS, "name")}
    own = _with_model_path(normalize_options(others, where), base_dir)
    options = _with_model_path({**(defaults or {}), **own}, None)
    cfg, out_cfg = build_configs(options, where)
    out = str(paths["out"])
    name = _text(row.get("name") or "") or os.path.basename(out)
    return Job(name, str(paths["hr"]), str(paths["ref"]), out, paths["mask"], cfg, out_cfg, where)


def _with_model_path(options: dict[str, Any], base_dir: str | None) -> dict[str, Any]:
    """`options` with its `model` (if any) made absolute, relative to `base_dir` (None = the current folder)."""
    if options.get("model"):
        return {**options, "model": _resolve(options["model"], base_dir)}
    return options


def _csv_rows(path: str) -> list[tuple[str, dict[str, Any]]]:
    label = os.path.basename(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(line for line in f if not line.lstrip().startswith("#"))
        if reader.fieldnames is None:
            raise ConfigError(f"manifest {path!r} is empty; expected a header row: hr,ref,mask,out[,options]")
        rows = []
        for i, row in enumerate(reader, start=1):
            where = f"{label} row {i}"
            if None in row:
                raise ConfigError(f"{where} has more fields than the header; expected {len(reader.fieldnames)}")
            if not any((v or "").strip() for v in row.values()):
                continue
            rows.append((where, {k.strip(): v for k, v in row.items()}))
    return rows


def _yaml_rows(path: str) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    import yaml

    label = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        try:
            doc = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ConfigError(f"manifest {path!r} is not valid YAML ({str(exc).splitlines()[0]})") from None
    defaults: dict[str, Any] = {}
    if isinstance(doc, Mapping):
        unknown = set(doc) - {"jobs", "defaults"}
        if unknown:
            raise ConfigError(f"{label}: unknown top-level key {sorted(unknown)[0]!r}; expected 'jobs' and 'defaults'")
        defaults = normalize_options(doc.get("defaults") or {}, f"{label} defaults")
        doc = doc.get("jobs")
    if not isinstance(doc, list):
        raise ConfigError(f"manifest {path!r} holds no job list; expected a list of jobs or a mapping with 'jobs'")
    rows = []
    for i, item in enumerate(doc, start=1):
        if not isinstance(item, Mapping):
            raise ConfigError(f"{label} job {i} is not a mapping; expected keys hr, ref, out, ...")
        rows.append((f"{label} job {i}", {str(k): v for k, v in item.items()}))
    return rows, defaults


def read_manifest(path: str | os.PathLike[str], defaults: Mapping[str, Any] | None = None) -> list[Job]:
    """Jobs of a CSV (`.csv`) or YAML (`.yaml`, `.yml`) manifest; relative paths are relative to its folder.

    CSV: a header row with `hr`, `ref`, `out`, and optionally `mask`, `name` and option columns (`method`,
    `bidx`, `ref_bidx`, `nodata`, `mask_buffer`, `tile`, `overlap`, `cog`, ...); empty cells take the default.
    YAML: a list of such mappings, or a mapping with `jobs` (that list) and `defaults` (options for every job).

    Args:
        path: the manifest.
        defaults: options for every job (e.g. from the command line; a relative `model` there is relative to the
            current folder); the manifest's `defaults` and then each row's own options override them.

    Raises:
        ConfigError: unreadable manifest, unknown column, missing path or bad option value (names the row).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"manifest {path!r} does not exist; expected a CSV or YAML file")
    ext = os.path.splitext(path)[1].lower()
    base = _with_model_path(normalize_options(defaults or {}, "options"), None)
    if ext == ".csv":
        rows, file_defaults = _csv_rows(path), dict[str, Any]()
    elif ext in {".yaml", ".yml"}:
        rows, file_defaults = _yaml_rows(path)
    else:
        raise ConfigError(f"manifest {path!r} has suffix {ext!r}; expected .csv, .yaml or .yml")
    base_dir = os.path.dirname(os.path.abspath(path))
    file_defaults = _with_model_path(file_defaults, base_dir)  # the manifest's own: relative to it
    jobs = [make_job(row, where, defaults={**base, **file_defaults}, base_dir=base_dir) for where, row in rows]
    if not jobs:
        raise ConfigError(f"manifest {path!r} has no jobs; expected one row per job")
    check_jobs(jobs)
    return jobs


def jobs_from_glob(
    pattern: str,
    ref: str,
    out_dir: str,
    *,
    mask: str | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> list[Job]:
    """One job per HR file matching `pattern`, all with the same reference and gap layer.

    Each output is `out_dir/<HR file stem>.tif`. Files the pattern matches in `out_dir` itself (this batch's
    outputs and partial files, so a run can be resumed with the same pattern) and fill-mask sidecars
    (`*.fillmask.tif`) are not HR inputs: they are left out.

    Args:
        pattern: glob of HR rasters (`**` recurses).
        ref: the reference mosaic (a VRT or a large raster) covering every HR file.
        out_dir: existing folder of the outputs.
        mask: one gap layer (vector or raster) for every HR file, or None.
        defaults: options for every job.

    Raises:
        ConfigError: nothing matches, or two HR files would write the same output.
    """
    matched = sorted(p for p in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(p))
    outputs = os.path.realpath(out_dir)
    paths = [p for p in matched if not p.endswith(FILL_MASK_SUFFIX) and os.path.dirname(os.path.realpath(p)) != outputs]
    if not paths:
        left = f" ({len(matched)} left out: in the output folder, or fill-mask sidecars)" if matched else ""
        raise ConfigError(f"--hr-glob {pattern!r} matches no HR file{left}; expected a pattern such as 'scenes/*.tif'")
    if len(paths) < len(matched):
        logger.info("--hr-glob: %d file(s) in %s or fill-mask sidecars left out", len(matched) - len(paths), out_dir)
    options = normalize_options(defaults or {}, "options")
    jobs = []
    for i, hr in enumerate(paths, start=1):
        out = os.path.join(out_dir, os.path.splitext(os.path.basename(hr))[0] + ".tif")
        row = {"hr": hr, "ref": ref, "mask": mask, "out": out, "name": os.path.basename(hr)}
        jobs.append(make_job(row, f"--hr-glob file {i} ({hr})", defaults=options))
    check_jobs(jobs)
    return jobs


def check_jobs(jobs: Sequence[Job]) -> None:
    """Refuse two jobs with one output, and a job whose output is its own input.

    Raises:
        ConfigError: naming both jobs.
    """
    seen: dict[str, Job] = {}
    for job in jobs:
        out = os.path.realpath(job.out)
        if out in {os.path.realpath(p) for p in (job.hr, job.ref, job.mask) if p}:
            raise ConfigError(f"{job.where}: output {job.out!r} is one of its inputs; expected another path")
        if out in seen:
            raise ConfigError(
                f"{job.where}: output {job.out!r} is also the output of {seen[out].where}; expected one job per output"
            )
        seen[out] = job


# --- signatures and one job ---------------------------------------------------------------------------------


def _identity(path: str, *, depth: int = 0) -> dict[str, Any]:
    """What identifies an input file: its resolved path, size and modification time (ns).

    A GDAL VRT also lists the identities of the files it reads (a reference mosaic changes when a source does).
    """
    if "://" in path or path.startswith("/vsi"):
        return {"path": path}
    try:
        st = os.stat(path)
    except OSError:
        return {"path": os.path.realpath(path), "missing": True}
    out: dict[str, Any] = {"path": os.path.realpath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if path.lower().endswith(".vrt") and depth < 2:
        out["sources"] = [_identity(p, depth=depth + 1) for p in _vrt_sources(path)]
    return out


def _vrt_sources(path: str) -> list[str]:
    """The distinct source files of a GDAL VRT, in order ([] when it cannot be parsed)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return []
    folder = os.path.dirname(os.path.abspath(path))
    seen: dict[str, None] = {}
    for node in root.iter("SourceFilename"):
        name = (node.text or "").strip()
        if name and node.get("relativeToVRT", "0") == "1":
            name = os.path.join(folder, name)
        if name:
            seen.setdefault(name, None)
    return list(seen)


def normalized_settings(cfg: FillConfig, out_cfg: OutputConfig) -> dict[str, Any]:
    """The settings that decide an output's content, as JSON-ready values.

    Left out: `device`, `batch_size` and `compile` (where, in what batches and through which torch path windows
    are computed), `overwrite`, `tmpdir`.
    """
    fill = dataclasses.asdict(cfg)
    fill.pop("device")
    fill.pop("compile")
    fill["tiles"].pop("batch_size")
    fill["model"] = os.path.realpath(cfg.model) if cfg.model else None
    output = {
        "cog": out_cfg.cog,
        "creation_options": dict(sorted(out_cfg.creation_options.items())),
        "write_fill_mask": out_cfg.write_fill_mask,
    }
    return {"fill": fill, "output": output}


def job_signature(job: Job) -> str:
    """sha256 (hex) of the job's input identities, normalized settings and the package version."""
    inputs = {"hr": job.hr, "ref": job.ref, "mask": job.mask, "model": job.cfg.model}
    payload = {
        "version": __version__,
        "inputs": {role: _identity(p) for role, p in inputs.items() if p},
        "settings": normalized_settings(job.cfg, job.out_cfg),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class JobResult:
    """What became of one job.

    Attributes:
        name: the job's name.
        out: its output path.
        status: "done", "skipped" (a matching output existed) or "failed".
        seconds: wall time of the job on its worker.
        gap_pixels: gap pixels (for a skipped job: as recorded in its output's tags).
        filled_pixels: gap pixels that received a value.
        unfilled_pixels: gap pixels left as they were (no reference).
        error: "ErrorType: one-line message" for a failed job.
        signature: the job signature.
        worker: address of the worker that ran it.
    """

    name: str
    out: str
    status: str
    seconds: float = 0.0
    gap_pixels: int = 0
    filled_pixels: int = 0
    unfilled_pixels: int = 0
    error: str | None = None
    signature: str | None = None
    worker: str | None = None


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message` of an exception."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else repr(exc)}"


def _output_tags(path: str) -> dict[str, str] | None:
    """The dataset tags of an existing output, or None when there is none or it cannot be read."""
    if not os.path.exists(path):
        return None
    import rasterio

    try:
        with rasterio.open(path) as src:
            return dict(src.tags())
    except Exception:  # any unreadable file is "not a finished output"
        return None


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def run_job(job: Job) -> JobResult:
    """Run one job where it is called (a Dask worker, or here): skip, or fill atomically; never raises.

    Returns:
        The JobResult; a failure carries its error as "Type: message".
    """
    t0 = time.perf_counter()
    result = JobResult(job.name, job.out, "failed", worker=_worker_address())
    try:
        result.signature = signature = job_signature(job)
        tags = _output_tags(job.out)
        mine = tags is not None and tags.get(SIGNATURE_TAG) == signature
        sidecar = _output_tags(job.out + FILL_MASK_SUFFIX) if job.out_cfg.write_fill_mask else None
        sidecar_ok = not job.out_cfg.write_fill_mask or (sidecar or {}).get(SIGNATURE_TAG) == signature
        if mine and sidecar_ok:
            result.status = "skipped"
            _counts_from_tags(result, tags or {})
        else:
            if not mine:
                _check_new_output(job, tags)
            _fill_atomic(job, signature, result)
            result.status = "done"
    except Exception as exc:  # a failing job is recorded, never raised: the others go on
        result.error = one_line(exc)
        logger.debug("%s failed", job.name, exc_info=True)
    result.seconds = time.perf_counter() - t0
    return result


def _counts_from_tags(result: JobResult, tags: Mapping[str, str]) -> None:
    for attr, tag in (
        ("gap_pixels", "EGAN_GAP_PIXELS"),
        ("filled_pixels", "EGAN_FILLED_PIXELS"),
        ("unfilled_pixels", "EGAN_UNFILLED_PIXELS"),
    ):
        with contextlib.suppress(KeyError, ValueError):
            setattr(result, attr, int(tags[tag]))


def _check_new_output(job: Job, tags: Mapping[str, str] | None) -> None:
    """Refuse an existing output (not this job's own) unless overwriting, as the fill engine does.

    Raises:
        OutputExistsError: the output exists and `overwrite` is off.
        ConfigError: the output folder does not exist.
    """
    from extendgan_geo.io.cog import check_output

    if tags is not None and SIGNATURE_TAG in tags and not job.out_cfg.overwrite:
        raise OutputExistsError(
            f"output {job.out!r} exists but was made from other inputs or settings (its {SIGNATURE_TAG} differs); "
            "expected a new path: pass --overwrite to recompute it"
        )
    sidecars = (FILL_MASK_SUFFIX,) if job.out_cfg.write_fill_mask else ()
    check_output(job.out, job.out_cfg, sidecars=sidecars)


def _fill_atomic(job: Job, signature: str, result: JobResult) -> None:
    """Fill into a hidden GeoTIFF next to the output, tag it, then finalize it (COG or move) onto the output.

    A sidecar of an earlier output is deleted before the new output is moved into place, and the new sidecar
    follows it; both carry the job's signature. So an output with this job's signature but no sidecar of the
    same signature (a run stopped in between) is recomputed, never completed by a stale sidecar.
    """
    import rasterio

    from extendgan_geo.io.cog import finalize, output_profile, removing_on_error, temp_path
    from extendgan_geo.pipeline import fill_raster

    tmp = temp_path(job.out, None, ".tif")
    tmp_mask = tmp + FILL_MASK_SUFFIX
    staged = dataclasses.replace(job.out_cfg, cog=False, overwrite=True, uncertainty=None)
    with removing_on_error(tmp, tmp_mask):
        filled = fill_raster(job.hr, job.ref, tmp, job.cfg, staged, mask=job.mask)
        mask_name = os.path.basename(job.out + FILL_MASK_SUFFIX) if job.out_cfg.write_fill_mask else "none"
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp, "r+") as dst:
            dst.update_tags(**{SIGNATURE_TAG: signature, "EGAN_FILL_MASK": mask_name})
            profile = output_profile(dst, job.out_cfg, nodata=dst.nodata)
        if job.out_cfg.write_fill_mask:
            with rasterio.open(tmp_mask, "r+") as codes:
                codes.update_tags(**{SIGNATURE_TAG: signature, "EGAN_OUTPUT": os.path.basename(job.out)})
        if job.out_cfg.write_fill_mask or os.path.exists(job.out):
            with contextlib.suppress(FileNotFoundError):  # the old output's sidecar: never pair it with the new one
                os.remove(job.out + FILL_MASK_SUFFIX)
        finalize(tmp, job.out, profile, cog=job.out_cfg.cog, tmpdir=job.out_cfg.tmpdir)
        if job.out_cfg.write_fill_mask:
            os.replace(tmp_mask, job.out + FILL_MASK_SUFFIX)
    result.gap_pixels = filled.gap_pixels
    result.filled_pixels = filled.filled_pixels
    result.unfilled_pixels = filled.unfilled_pixels


# --- the cluster --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterOptions:
    """Where the tasks run.

    Attributes:
        workers: workers of the LocalCluster started when no scheduler is given.
        threads_per_worker: threads of each worker.
        memory_limit: memory limit of each worker, e.g. "4GiB"; None or "auto" = Dask's default share of RAM;
            0 (or "0") = no limit.
        scheduler: address of an existing scheduler (e.g. "tcp://host:8786"); None = start a LocalCluster.
        processes: LocalCluster workers are processes (True) or threads of this process (False).
    """

    workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | int | None = "4GiB"
    scheduler: str | None = None
    processes: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.threads_per_worker < 1:
            raise ConfigError(f"threads per worker must be at least 1, got {self.threads_per_worker}")


@dataclass(frozen=True)
class ClusterInfo:
    """What a batch ran on: scheduler address, dashboard link (None when no dashboard runs) and worker count."""

    scheduler: str
    dashboard: str | None
    workers: int
    local: bool


def _dashboard(client: Any) -> str | None:
    """The dashboard link, when the scheduler serves one (bokeh installed)."""
    import importlib.util

    services = client.scheduler_info().get("services", {})
    if "dashboard" not in services or importlib.util.find_spec("bokeh") is None:
        return None
    return str(client.dashboard_link)


@contextlib.contextmanager
def dask_client(where: Any = None) -> Iterator[tuple[Any, ClusterInfo]]:
    """A distributed Client: the one given, one of an existing scheduler, or one of a new LocalCluster.

    Args:
        where: a `distributed.Client` (used as is, not closed), `ClusterOptions`, or None (the defaults).

    Yields:
        (client, ClusterInfo).

    Raises:
        ConfigError: the scheduler cannot be reached.
    """
    import dask
    from distributed import Client, LocalCluster

    if isinstance(where, Client):
        yield where, ClusterInfo(_address(where), _dashboard(where), _n_workers(where), False)
        return
    opts = where or ClusterOptions()
    with contextlib.ExitStack() as stack:
        if opts.scheduler:
            try:
                client = stack.enter_context(Client(opts.scheduler, timeout=_CONNECT_TIMEOUT))  # type: ignore[no-untyped-call]
            except OSError as exc:
                raise ConfigError(
                    f"cannot reach the Dask scheduler {opts.scheduler!r} ({one_line(exc)}); expected a running "
                    "scheduler, e.g. `dask scheduler` and `dask worker tcp://HOST:8786`"
                ) from None
        else:
            limit = _memory_limit(opts.memory_limit)
            stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ": _worker_environ()}))
            cluster = stack.enter_context(
                LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=opts.workers,
                    threads_per_worker=opts.threads_per_worker,
                    memory_limit=limit,
                    processes=opts.processes,
                    dashboard_address=":0",
                    silence_logs=logging.CRITICAL,  # job errors are caught and reported; shutdown noise is not
                )
            )
            client = stack.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
        info = ClusterInfo(_address(client), _dashboard(client), _n_workers(client), not opts.scheduler)
        yield client, info


def _memory_limit(value: str | int | None) -> str | int:
    """LocalCluster's memory_limit: None or "" -> "auto" (Dask's share of RAM), 0 or "0" -> 0 (no limit)."""
    if value is None or str(value).strip() == "":
        return "auto"
    if str(value).strip().lower() in {"0", "none"}:
        return 0
    return value


def _worker_environ() -> dict[str, Any]:
    """Dask's environment for new worker processes, without MALLOC_TRIM_THRESHOLD_.

    Setting it turns off glibc's dynamic mmap threshold, so every large numpy array is mapped and unmapped
    afresh: a fill job ran 1.5-1.8x slower in such a worker (docs/batch.md). Thread limits (OMP_NUM_THREADS=1, ...)
    are kept: one worker thread per job is the plan.
    """
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


def _address(client: Any) -> str:
    return str(client.scheduler_info().get("address", ""))


def _n_workers(client: Any) -> int:
    return len(client.scheduler_info().get("workers", {}))


# --- a batch ------------------------------------------------------------------------------------------------


@dataclass
class BatchReport:
    """What a batch did.

    Attributes:
        jobs: the jobs, in manifest order.
        results: their results, in the same order.
        seconds: wall time of the batch (cluster start included).
        cluster: what it ran on.
        started: UTC start time, ISO 8601.
    """

    jobs: list[Job]
    results: list[JobResult]
    seconds: float
    cluster: ClusterInfo
    started: str

    def counts(self) -> dict[str, int]:
        """Jobs per status."""
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    @property
    def ok(self) -> bool:
        """True when no job failed."""
        return not any(r.status == "failed" for r in self.results)

    def filled_pixels(self) -> int:
        """Pixels filled by this run: the jobs done (a skipped job's pixels were filled by an earlier run)."""
        return sum(r.filled_pixels for r in self.results if r.status == "done")

    def table(self) -> str:
        """The summary table (jobs, summed job time and filled pixels per status), then one line per failure.

        A skipped job's filled pixels are those recorded in its output (filled by an earlier run); the total
        counts the pixels filled by this run only, as the JSON report's `filled_pixels` does.
        """
        head = f"{'status':<8} {'jobs':>6} {'job time (s)':>13} {'filled px':>15}"
        lines = [head, "-" * len(head)]
        for status in STATUSES:
            rs = [r for r in self.results if r.status == status]
            secs, px = sum(r.seconds for r in rs), sum(r.filled_pixels for r in rs)
            lines.append(f"{status:<8} {len(rs):>6} {secs:>13.1f} {px:>15,}")
        n, done = len(self.results), self.counts()["done"]
        rate = f", {60 * done / self.seconds:.1f} jobs/min" if self.seconds > 0 and done else ""
        lines.append(f"{'total':<8} {n:>6} {'':>13} {self.filled_pixels():>15,}  (filled px: by this run, jobs done)")
        lines.append(f"wall time {self.seconds:.1f}s on {self.cluster.workers} worker(s){rate}")
        lines += [f"failed: {j.name} ({j.where}): {r.error}" for j, r in self._pairs() if r.status == "failed"]
        return "\n".join(lines)

    def _pairs(self) -> Iterator[tuple[Job, JobResult]]:
        return zip(self.jobs, self.results, strict=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: totals, cluster and one entry per job (paths, status, counts, error)."""
        entries = []
        for job, res in self._pairs():
            entry = {"where": job.where, "hr": job.hr, "ref": job.ref, "mask": job.mask, **dataclasses.asdict(res)}
            entry["seconds"] = round(res.seconds, 3)
            entries.append(entry)
        return {
            "version": __version__,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "cluster": dataclasses.asdict(self.cluster),
            "counts": self.counts(),
            "filled_pixels": self.filled_pixels(),
            "jobs": entries,
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write `to_dict()` to `path` atomically (a temporary file next to it, then a rename)."""
        path = os.fspath(path)
        tmp = f"{path}.{os.getpid()}.partial"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)


def _failed(job: Job, exc: BaseException) -> JobResult:
    return JobResult(job.name, job.out, "failed", error=one_line(exc))


def run_batch(
    jobs: Sequence[Job],
    where: Any = None,
    *,
    progress: Callable[[JobResult], None] | None = None,
    on_cluster: Callable[[ClusterInfo], None] | None = None,
) -> BatchReport:
    """Run every job as one task on a Dask cluster; gather them as they complete.

    Args:
        jobs: the jobs (see `read_manifest`, `jobs_from_glob`).
        where: a `distributed.Client`, `ClusterOptions`, or None (a 2-worker LocalCluster).
        progress: called with each JobResult as it arrives.
        on_cluster: called once with the ClusterInfo when the cluster is up (e.g. to print the dashboard).

    Returns:
        The BatchReport; failed jobs are in it, never raised.

    Raises:
        ConfigError: the cluster cannot be started or reached.
    """
    from distributed import as_completed

    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results: list[JobResult | None] = [None] * len(jobs)
    with dask_client(where) as (client, info):
        if on_cluster:
            on_cluster(info)
        futures = {client.submit(run_job, job, pure=False, key=_key(i, job)): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            i = futures[future]
            try:
                results[i] = future.result()
            except (Exception, asyncio.CancelledError) as exc:  # the worker died, or the task was cancelled
                results[i] = _failed(jobs[i], exc)
            if progress:
                progress(results[i])  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    return BatchReport(list(jobs), [r for r in results if r is not None], seconds, info, started)


def _key(i: int, job: Job) -> str:
    """A unique, readable task key (shown in the dashboard)."""
    token = hashlib.sha1(f"{time.time_ns()}{i}{job.out}".encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in job.name)[:40]
    return f"egan-fill-{i:05d}-{safe}-{token}"


def jobs_per_minute(report: BatchReport) -> float:
    """Finished (done) jobs per minute of wall time."""
    done = report.counts()["done"]
    return 60.0 * done / report.seconds if report.seconds > 0 else math.nan


__all__ = [
    "SIGNATURE_TAG",
    "BatchReport",
    "ClusterInfo",
    "ClusterOptions",
    "Job",
    "JobResult",
    "build_configs",
    "check_jobs",
    "dask_client",
    "job_signature",
    "jobs_from_glob",
    "make_job",
    "normalize_options",
    "read_manifest",
    "run_batch",
    "run_job",
]
