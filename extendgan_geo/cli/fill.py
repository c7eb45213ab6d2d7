"""`egan-fill fill`: fill the gaps of one raster."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any, get_args

import click

from extendgan_geo.cli.options import (
    configure_logging,
    library_errors,
    parse_bands,
    parse_key_values,
    parse_nodata,
    progress_bar,
)
from extendgan_geo.config import (
    BlendKind,
    DeviceKind,
    FillConfig,
    MethodKind,
    OutputConfig,
    PrecisionKind,
    ResamplingKind,
    TileConfig,
)

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
@click.option(
    "-b",
    "--bidx",
    multiple=True,
    callback=parse_bands,
    metavar="LIST",
    help="HR bands to fill, e.g. 1,2,3,4 [all but alpha].",
)
@click.option(
    "--ref-bidx",
    multiple=True,
    callback=parse_bands,
    metavar="LIST",
    help="Reference bands paired with --bidx, e.g. 2,3,4,5.",
)
@click.option("--nodata", callback=parse_nodata, metavar="NUMBER|nan", help="HR nodata value (overrides the file's).")
@click.option(
    "--ref-nodata",
    callback=parse_nodata,
    metavar="NUMBER|nan",
    help="Reference nodata value (overrides the file's).",
)
@click.option("--mask-layer", metavar="NAME", help="Layer of the --mask vector file [first layer].")
@click.option(
    "--mask-buffer",
    type=click.IntRange(min=0),
    default=FillConfig.mask_buffer,
    show_default=True,
    help="Grow the gap by this many HR pixels.",
)
@click.option(
    "--resampling",
    type=click.Choice(get_args(ResamplingKind)),
    default=FillConfig.resampling,
    show_default=True,
    help="Kernel that warps the reference onto the HR grid.",
)
@click.option(
    "--coregister/--no-coregister",
    default=FillConfig.coregister,
    show_default=True,
    help="Estimate and remove a global sub-pixel shift of the reference.",
)
@click.option(
    "--method",
    type=click.Choice(get_args(MethodKind)),
    default=FillConfig.method,
    show_default=True,
    help=(
        "auto: gan when the bundled (or --model) generator fits the bands, else match; match: reference matched "
        "to HR radiometry; gan: the Extend-GAN generator; reference, fillnodata: "
        "floor baselines (the warped reference as it is; GDAL inverse-distance fill, no reference)."
    ),
)
@click.option("--model", type=_file, help="Extend-GAN checkpoint for --method gan [bundled model].")
@click.option(
    "--tile", type=click.IntRange(min=16), default=TileConfig.size, show_default=True, help="Window edge, px."
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=None,
    show_default="tile / 4",
    help="Pixels shared by neighbouring windows.",
)
@click.option(
    "--blend",
    type=click.Choice(get_args(BlendKind)),
    default=TileConfig.blend,
    show_default=True,
    help="Weight profile over the overlap.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=TileConfig.batch_size,
    show_default=True,
    help="Windows per filler call.",
)
@click.option(
    "--device",
    type=click.Choice(get_args(DeviceKind)),
    default=FillConfig.device,
    show_default=True,
    help="Torch device of --method gan.",
)
@click.option(
    "--precision",
    type=click.Choice(get_args(PrecisionKind)),
    default=FillConfig.precision,
    show_default=True,
    help="Arithmetic of --method gan (bf16: autocast).",
)
@click.option(
    "--co",
    "--profile",
    "creation_options",
    multiple=True,
    callback=parse_key_values,
    metavar="NAME=VALUE",
    help="GDAL creation option for the output (repeatable), e.g. --co COMPRESS=DEFLATE.",
)
@click.option("--cog/--no-cog", default=OutputConfig.cog, show_default=True, help="Write a Cloud Optimized GeoTIFF.")
@click.option(
    "--fill-mask/--no-fill-mask",
    default=OutputConfig.write_fill_mask,
    show_default=True,
    help="Write OUT.fillmask.tif (0 kept, 1 filled, 2 left unfilled).",
)
@click.option(
    "--uncertainty",
    type=click.Path(dir_okay=False),
    help="Also write a float32 raster of how much each filled pixel is to be doubted (gan: spread over 4 flips, "
    "whose mean becomes the output; match: window-fit residual).",
)
@click.option("--tmpdir", type=click.Path(file_okay=False, exists=True), help="Folder for intermediate files [OUT's].")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--dry-run", is_flag=True, help="Print grids, overlap, gap and windows to compute; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON on stdout.")
@click.option("-v", "--verbose", count=True, help="More log messages (repeatable).")
@click.option("-q", "--quiet", count=True, help="Fewer messages, no progress bar.")
def fill(hr_path: str, ref_path: str, mask: str | None, output: str, **opts: Any) -> None:
    """Fill the gaps of HR using the low-resolution reference REF; write OUT.

    The gap is HR's nodata / internal mask / alpha plus the polygons or raster of --mask. Every other pixel
    is copied unchanged.
    """
    configure_logging(opts["verbose"], opts["quiet"])
    from extendgan_geo.pipeline import fill_raster, plan_fill

    with library_errors():
        cfg = _fill_config(opts)
        out_cfg = OutputConfig(
            cog=opts["cog"],
            creation_options=opts["creation_options"],
            overwrite=opts["overwrite"],
            write_fill_mask=opts["fill_mask"],
            tmpdir=opts["tmpdir"],
            uncertainty=opts["uncertainty"],
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
        method=opts["method"],
        model=opts["model"],
        device=opts["device"],
        precision=opts["precision"],
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
