"""`egan-fill batch` (many fills from a manifest or a glob) and `egan-fill mosaic` (scenes into one filled mosaic).

Both run on dask.distributed: a LocalCluster started here (`--workers`, `--threads-per-worker`,
`--memory-limit`), or an existing cluster (`--scheduler tcp://HOST:PORT`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from extendgan_geo.cli.options import Decorator, configure_logging, fill_options, library_errors, progress_bar

_file = click.Path(exists=True, dir_okay=False)


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


_CLUSTER_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (
        ("--workers",),
        {
            "type": click.IntRange(min=1),
            "default": _default_workers,
            "show_default": "2, at most the CPU count",
            "help": "Workers of the LocalCluster.",
        },
    ),
    (
        ("--threads-per-worker",),
        {"type": click.IntRange(min=1), "default": 1, "show_default": True, "help": "Threads of each worker."},
    ),
    (
        ("--memory-limit",),
        {
            "default": "4GiB",
            "show_default": True,
            "metavar": "SIZE|auto|0",
            "help": "Memory limit of each worker (auto: Dask's share of RAM; 0: no limit).",
        },
    ),
    (
        ("--processes/--threads",),
        {"default": True, "show_default": True, "help": "LocalCluster workers are processes or threads of this one."},
    ),
    (
        ("--scheduler",),
        {"metavar": "ADDRESS", "help": "Use an existing Dask cluster, e.g. tcp://10.0.0.5:8786 [a LocalCluster]."},
    ),
]


def _apply(options: list[tuple[tuple[str, ...], dict[str, Any]]]) -> Decorator:
    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for decls, kwargs in reversed(options):
            f = click.option(*decls, **kwargs)(f)
        return f

    return decorate


# Fill options that are also manifest option names (see extendgan_geo.batch.OPTION_PARSERS).
_OPTION_NAMES = (
    "bidx",
    "ref_bidx",
    "nodata",
    "ref_nodata",
    "mask_layer",
    "mask_buffer",
    "resampling",
    "coregister",
    "heal",
    "coarse_to_fine",
    "method",
    "model",
    "tile",
    "overlap",
    "blend",
    "batch_size",
    "device",
    "precision",
    "compile",
    "co",
    "cog",
    "fill_mask",
    "overwrite",
)


def _given_options(ctx: click.Context, opts: dict[str, Any]) -> dict[str, Any]:
    """The fill options given on the command line (not their defaults), under the manifest's option names."""
    return {
        name: opts[name]
        for name in _OPTION_NAMES
        if name in opts and ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)
    }


def _cluster(opts: dict[str, Any]) -> Any:
    from dask.utils import parse_bytes

    from extendgan_geo.batch import ClusterOptions

    limit = str(opts["memory_limit"]).strip()
    if limit.lower() not in {"auto", "0", "none"}:
        try:
            parse_bytes(limit)
        except (ValueError, TypeError):
            raise click.BadParameter(
                f"{limit!r} is not a size; expected e.g. 4GiB, auto or 0", param_hint="--memory-limit"
            ) from None
    return ClusterOptions(
        workers=opts["workers"],
        threads_per_worker=opts["threads_per_worker"],
        memory_limit=0 if limit.lower() in {"0", "none"} else limit,  # 0: no limit (None would mean auto)
        scheduler=opts["scheduler"],
        processes=opts["processes"],
    )


def _logging(verbose: int, quiet: int) -> None:
    """Log levels as for `fill`; Dask's own INFO messages (scheduler, nanny, workers) only from -vv."""
    import distributed  # noqa: F401  (its import sets its loggers' levels: set them after it)

    configure_logging(verbose, quiet)
    level = logging.INFO if verbose >= 2 else max(logging.WARNING, logging.getLogger().level)
    for name in ("distributed", "dask", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(level)


def _announce(quiet: bool) -> Callable[[Any], None]:
    def show(info: Any) -> None:
        if quiet:
            return
        where = "LocalCluster" if info.local else "scheduler"
        click.echo(f"{where} {info.scheduler}: {info.workers} worker(s)", err=True)
        if info.dashboard:
            click.echo(f"dask dashboard: {info.dashboard}", err=True)

    return show


def _jobs(manifest: str | None, opts: dict[str, Any], defaults: dict[str, Any]) -> tuple[list[Any], str]:
    """The jobs of a manifest or of --hr-glob, and the default report path.

    Raises:
        click.UsageError: neither or both sources, or --hr-glob options given with a manifest.
    """
    from extendgan_geo.batch import jobs_from_glob, read_manifest

    if manifest and opts["hr_glob"]:
        raise click.UsageError("give either MANIFEST or --hr-glob, not both")
    if manifest:
        for name, flag in (("ref_path", "--ref"), ("mask", "--mask"), ("out_dir", "--out-dir")):
            if opts[name]:
                raise click.UsageError(f"{flag} is for --hr-glob; with a MANIFEST give it in its rows")
        return read_manifest(manifest, defaults), opts["report"] or os.path.splitext(manifest)[0] + ".report.json"
    if not opts["hr_glob"]:
        raise click.UsageError("give a MANIFEST (CSV or YAML) or --hr-glob PATTERN --ref REF -o OUT_DIR")
    if not opts["ref_path"] or not opts["out_dir"]:
        raise click.UsageError("--hr-glob needs --ref REF and -o/--out-dir FOLDER")
    jobs = jobs_from_glob(opts["hr_glob"], opts["ref_path"], opts["out_dir"], mask=opts["mask"], defaults=defaults)
    return jobs, opts["report"] or os.path.join(opts["out_dir"], "batch-report.json")


@click.command(short_help="Fill many rasters (a CSV/YAML manifest or a glob) on a Dask cluster.")
@click.argument("manifest", required=False, type=_file)
@click.option("--hr-glob", metavar="PATTERN", help="HR rasters to fill, e.g. 'scenes/*.tif' (instead of MANIFEST).")
@click.option("--ref", "ref_path", type=_file, help="With --hr-glob: the reference mosaic (a VRT or a raster).")
@click.option("--mask", type=click.Path(exists=True), help="With --hr-glob: one gap layer (vector or raster).")
@fill_options("mask_layer", many=True)
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(file_okay=False, exists=True),
    help="With --hr-glob: folder of the outputs (OUT_DIR/<HR stem>.tif).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    help="JSON report [MANIFEST's stem + .report.json, or OUT_DIR/batch-report.json].",
)
@fill_options(many=True, exclude=("mask_layer", "tmpdir", "verbose", "quiet"))
@_apply(_CLUSTER_OPTIONS)
@fill_options("verbose", "quiet")
@click.pass_context
def batch(ctx: click.Context, /, manifest: str | None, **opts: Any) -> None:
    """Fill every job of MANIFEST (CSV or YAML: hr, ref, mask, out and per-row options), or every --hr-glob file.

    Jobs run on a Dask LocalCluster or on --scheduler. A job whose output exists with the same inputs and
    settings (its EGAN_JOB_SIGNATURE tag) is skipped; a failing job is reported and the others go on. Options
    given here apply to every job; the manifest's defaults and each row's options override them. Exit status 1
    when a job failed.
    """
    _logging(opts["verbose"], opts["quiet"])
    from extendgan_geo.batch import run_batch

    quiet = bool(opts["quiet"])
    with library_errors():
        jobs, report_path = _jobs(manifest, opts, _given_options(ctx, opts))
        update, close = progress_bar(quiet, "jobs", "job")
        try:
            report = run_batch(
                jobs,
                _cluster(opts),
                progress=(lambda _: update(1, len(jobs))) if update else None,
                on_cluster=_announce(quiet),
            )
        finally:
            close()
        report.write_json(report_path)
    if not quiet:
        click.echo(report.table())
        click.echo(f"report: {report_path}", err=True)
    elif not report.ok:
        for job, res in zip(report.jobs, report.results, strict=True):
            if res.status == "failed":
                click.echo(f"failed: {job.name} ({job.where}): {res.error}", err=True)
    if not report.ok:
        ctx.exit(1)


@click.command(short_help="Compose HR scenes into one mosaic and fill its gaps and seams on a Dask cluster.")
@click.argument("scenes", nargs=-1, required=True, type=_file)
@click.option("--ref", "ref_path", required=True, type=_file, help="Low-resolution reference covering the mosaic.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output mosaic GeoTIFF/COG.")
@click.option("--aoi", type=click.Path(exists=True), help="Area of interest polygons [convex hull of the scenes].")
@click.option("--aoi-layer", metavar="NAME", help="Layer of the --aoi file [first layer].")
@click.option(
    "--seam-buffer",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="METRES",
    help="Also regenerate scene pixels within this distance of a seamline between scenes (CRS units).",
)
@click.option("--crs", metavar="CRS", help="CRS of the mosaic, e.g. EPSG:32633 [the first scene's].")
@click.option("--res", type=click.FloatRange(min=0, min_open=True), help="Pixel size, CRS units [finest scene's].")
@click.option(
    "--scene-resampling",
    type=click.Choice(["nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average"]),
    default="nearest",
    show_default=True,
    help="Kernel that warps scenes that are not on the mosaic grid.",
)
@click.option(
    "--strip-rows",
    type=click.IntRange(min=16),
    default=2048,
    show_default=True,
    help="Mosaic rows per Dask task (rounded to a multiple of the window stride and the reference's cell).",
)
@fill_options("tmpdir", many=True)
@fill_options(many=True, exclude=("mask_layer", "tmpdir", "verbose", "quiet"))
@_apply(_CLUSTER_OPTIONS)
@fill_options("verbose", "quiet")
def mosaic(scenes: tuple[str, ...], ref_path: str, output: str, **opts: Any) -> None:
    """Compose SCENES (first valid scene wins) into one mosaic and fill its gaps (and seams) from REF.

    The gap is the area of interest (--aoi, or the convex hull of the scenes' valid footprints) that no scene
    covers, plus, with --seam-buffer, the scene pixels near seamlines. Strips of rows are filled in parallel on a
    Dask LocalCluster or on --scheduler; one COG (or GeoTIFF) is written.
    """
    _logging(opts["verbose"], opts["quiet"])
    from extendgan_geo.batch import build_configs, normalize_options
    from extendgan_geo.mosaic import MosaicConfig, fill_mosaic

    quiet = bool(opts["quiet"])
    with library_errors():
        options = normalize_options({k: v for k, v in opts.items() if k in _OPTION_NAMES}, "options")
        cfg, out_cfg = build_configs(options)
        out_cfg = dataclasses.replace(out_cfg, tmpdir=opts["tmpdir"])
        mcfg = MosaicConfig(
            seam_buffer=opts["seam_buffer"],
            aoi=opts["aoi"],
            aoi_layer=opts["aoi_layer"],
            crs=opts["crs"],
            res=opts["res"],
            resampling=opts["scene_resampling"],
            strip_rows=opts["strip_rows"],
        )
        update, close = progress_bar(quiet, "strips", "strip")
        try:
            result = fill_mosaic(
                list(scenes),
                ref_path,
                output,
                cfg,
                out_cfg,
                mcfg,
                where=_cluster(opts),
                progress=update,
                on_cluster=_announce(quiet),
            )
        finally:
            close()
    if not quiet:
        click.echo(result.summary(), err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(batch())
