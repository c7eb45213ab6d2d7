"""`egan-fill fill`: fill the gaps of one raster."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

import click

from extendgan_geo.cli.options import configure_logging, fill_options, library_errors, progress_bar
from extendgan_geo.config import FillConfig, OutputConfig, TileConfig

_file = click.Path(exists=True, dir_okay=False)


@click.command(short_help="Fill the gaps of a raster, guided by a reference image.")
@click.argument("hr_path", metavar="HR", type=_file)
@click.option("--ref", "ref_path", required=True, type=_file, help="Low-resolution reference raster (any CRS).")
@click.option(
    "--mask",
    type=click.Path(exists=True),
    help="Gap polygons (GeoPackage, Shapefile, GeoJSON) or a mask raster.",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output GeoTIFF/COG.")
@fill_options(exclude=("tmpdir", "overwrite", "verbose", "quiet"))
@click.option(
    "--uncertainty",
    type=click.Path(dir_okay=False),
    help="Also write a float32 raster of how much each filled pixel is to be doubted (see --uncertainty-method).",
)
@click.option(
    "--uncertainty-method",
    type=click.Choice(["local", "flips", "fit"]),
    help="With --uncertainty [local]. local: variability of the filled image around each pixel (gan, match; no "
    "extra cost); flips: spread of gan over 4 flips, whose mean becomes the output (4x the cost); fit: match's "
    "window-fit residual.",
)
@fill_options("tmpdir", "overwrite")
@click.option("--dry-run", is_flag=True, help="Print grids, overlap, gap and windows to compute; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON on stdout.")
@fill_options("verbose", "quiet")
def fill(hr_path: str, ref_path: str, mask: str | None, output: str, **opts: Any) -> None:
    """Fill the gaps of HR using the low-resolution reference REF; write OUT.

    The gap is HR's nodata / internal mask / alpha plus the polygons or raster of --mask. Every other pixel
    is copied unchanged.
    """
    configure_logging(opts["verbose"], opts["quiet"])
    from extendgan_geo.pipeline import fill_raster, plan_fill

    if opts["uncertainty_method"] and not opts["uncertainty"]:
        raise click.UsageError("--uncertainty-method needs --uncertainty PATH (the raster it describes)")

    with library_errors():
        cfg = _fill_config(opts)
        out_cfg = OutputConfig(
            cog=opts["cog"],
            creation_options=opts["co"],
            overwrite=opts["overwrite"],
            write_fill_mask=opts["fill_mask"],
            tmpdir=opts["tmpdir"],
            uncertainty=opts["uncertainty"],
            uncertainty_method=opts["uncertainty_method"] or "local",
        )
        if opts["dry_run"]:
            plan = plan_fill(hr_path, ref_path, output, cfg, out_cfg, mask=mask)
            click.echo(json.dumps(plan, indent=2, default=str) if opts["as_json"] else _describe(plan))
            return
        progress, close = progress_bar(bool(opts["quiet"]), "windows", "win")
        try:
            result = fill_raster(hr_path, ref_path, output, cfg, out_cfg, mask=mask, progress=progress)
        finally:
            close()
    if opts["as_json"]:
        click.echo(json.dumps(asdict(result), indent=2))
    if not opts["quiet"]:
        click.echo(result.summary(), err=True)


def _fill_config(opts: dict[str, Any]) -> FillConfig:
    overlap = opts["overlap"] if opts["overlap"] is not None else opts["tile"] // 4
    if overlap > opts["tile"] // 2:
        half = opts["tile"] // 2
        raise click.BadParameter(
            f"{overlap} is more than {half}, half of --tile {opts['tile']}", param_hint="--overlap"
        )
    tiles = TileConfig(size=opts["tile"], overlap=overlap, blend=opts["blend"], batch_size=opts["batch_size"])
    return FillConfig(
        indexes=opts["bidx"],
        ref_indexes=opts["ref_bidx"],
        nodata=opts["nodata"],
        ref_nodata=opts["ref_nodata"],
        mask_layer=opts["mask_layer"],
        mask_buffer=opts["mask_buffer"],
        resampling=opts["resampling"],
        coregister=opts["coregister"],
        heal=opts["heal"],
        coarse_to_fine=opts["coarse_to_fine"],
        method=opts["method"],
        model=opts["model"],
        device=opts["device"],
        precision=opts["precision"],
        compile=opts["compile"],
        tiles=tiles,
    )


def _describe(plan: dict[str, Any]) -> str:
    lines = []
    for key, value in plan.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {v}" for k, v in value.items())
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(fill())
