"""`egan-fill train`: train Extend-GAN on rasters on disk."""

from __future__ import annotations

from typing import Any

import click

from extendgan_geo.cli.options import configure_logging, library_errors, parse_bands, progress_bar
from extendgan_geo.config import SIMULATED_KERNELS


def _parse_pair(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in value:
        hr, sep, ref = item.partition(":")
        if not sep or not hr or not ref:
            raise click.BadParameter(f"{item!r} is not HR:REF; expected e.g. --pair gf2.tif:lc9.tif")
        pairs.append((hr, ref))
    return tuple(pairs)


def _parse_range(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not MIN,MAX; expected e.g. 2,10") from None
    return lo, hi


@click.command(short_help="Train Extend-GAN on HR rasters (simulated reference) or HR/reference pairs.")
@click.option(
    "--hr",
    "hr",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="HR raster trained with a simulated reference (repeatable).",
)
@click.option(
    "--pair",
    "pairs",
    multiple=True,
    callback=_parse_pair,
    metavar="HR:REF",
    help="HR raster and a real reference of the same area (repeatable).",
)
@click.option(
    "--val-hr",
    "val_hr",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Raster used only for validation (split by file; repeatable).",
)
@click.option(
    "--bandwise",
    type=click.IntRange(min=0),
    help="Train one band-agnostic model on K bands per sample (0 = a model for the rasters' band count).",
)
@click.option("--settings", type=click.Path(exists=True, dir_okay=False), help="TOML file with a [train] table.")
@click.option("--preset", type=click.Choice(["small", "paper", "code"]), default="small", show_default=True)
@click.option("-o", "--out", help="Run folder for checkpoints and the CSV log [runs/egan].")
@click.option("-b", "--bidx", multiple=True, callback=parse_bands, help="HR bands, e.g. 1,2,3,4.")
@click.option("--ref-bidx", multiple=True, callback=parse_bands, help="Reference bands of --pair, e.g. 2,3,4,5.")
@click.option("--epochs", type=click.IntRange(min=1))
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--samples-per-epoch", type=click.IntRange(min=1))
@click.option("--crop", type=click.IntRange(min=64))
@click.option("--width", type=click.IntRange(min=2), help="Generator width (32 = the paper's).")
@click.option("--lr-g", type=float)
@click.option("--lr-d", type=float)
@click.option("--factor", callback=_parse_range, help="Simulated downsampling range MIN,MAX (HR px per ref px).")
@click.option(
    "--mask-file",
    "mask_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Mask raster (non-zero = gap) to draw training holes from (repeatable).",
)
@click.option(
    "--mask-kinds",
    callback=lambda ctx, param, value: tuple(k.strip() for k in value.split(",") if k.strip()) if value else None,
    help="Training gap layouts, e.g. half,quarter,rectangle,seam,cloud,full (file: --mask-file rasters).",
)
@click.option(
    "--resampling",
    type=click.Choice(SIMULATED_KERNELS),
    help="How simulated references reach the HR grid (GDAL's kernels; fills default to lanczos).",
)
@click.option(
    "--scale-input/--no-scale-input",
    default=None,
    help="The generator also reads the reference's scale factor (zero-initialised when --init lacks it).",
)
@click.option("--larn/--no-larn", default=None, help="LARN on/off (ablation).")
@click.option("--triplet/--no-triplet", default=None, help="Triplet loss on/off (ablation).")
@click.option("--seed", type=int)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--workers", type=click.IntRange(min=0), help="Processes that draw training samples (0 = none).")
@click.option(
    "--compile/--no-compile",
    "compile",
    default=None,
    help="Train the generator through torch.compile (GPUs; a one-off compile of about a minute).",
)
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), help="last.safetensors of a run.")
@click.option(
    "--init",
    help="Start from the generator weights of a checkpoint ('default' = the bundled model) to fine-tune it.",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0),
    help="Stop after the epoch that ends past this many minutes (resume later with --resume).",
)
@click.option("--lambda-adv", type=click.FloatRange(min=0), help="Adversarial loss weight (0 = no discriminator).")
@click.option("-v", "--verbose", count=True)
@click.option("-q", "--quiet", count=True)
def train(settings: str | None, preset: str, verbose: int, quiet: int, **opts: Any) -> None:
    """Train the generator; flags override --settings, which overrides --preset."""
    configure_logging(verbose + 1, quiet)
    from extendgan_geo.training.config import build_config
    from extendgan_geo.training.loop import train as run

    overrides = {k: (v or None) if isinstance(v, tuple) else v for k, v in opts.items()}
    with library_errors():
        cfg = build_config(preset, settings, overrides)
        progress, close = progress_bar(bool(quiet), "train", "step")
        try:
            result = run(cfg, progress=progress)
        finally:
            close()
    click.echo(f"best: {result.best}\nlast: {result.last}", err=True)
