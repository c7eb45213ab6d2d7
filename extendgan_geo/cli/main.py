"""The `egan-fill` group: bare `egan-fill HR --ref REF -o OUT` runs the `fill` subcommand."""

from __future__ import annotations

import os
from typing import Any

import click

from extendgan_geo import __version__
from extendgan_geo.cli.batch import batch, mosaic
from extendgan_geo.cli.evaluate import evaluate
from extendgan_geo.cli.fill import fill
from extendgan_geo.cli.train import train

# A bounded GDAL block cache keeps peak memory flat on large scenes (GDAL's default is 5 % of RAM). It must be a
# process setting: set per call through rasterio.Env it slows the COG driver (docs/benchmarks.md).
os.environ.setdefault("GDAL_CACHEMAX", "256")


class DefaultGroup(click.Group):
    """A group that runs `fill` when the first argument is not a subcommand."""

    default_command = "fill"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Insert the default subcommand in front of arguments that do not start with one."""
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group(
    cls=DefaultGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Bare form: `egan-fill HR --ref REF [--mask GAPS] -o OUT` is `egan-fill fill ...`; "
    "see `egan-fill fill --help` for its options.",
)
@click.version_option(__version__, "--version", prog_name="egan-fill")
def cli(**_: Any) -> None:
    """Fill large holes in high-resolution rasters, guided by a low-resolution reference (Extend-GAN)."""


cli.add_command(fill)
cli.add_command(train)
cli.add_command(evaluate)
cli.add_command(batch)
cli.add_command(mosaic)


if __name__ == "__main__":  # `python -m extendgan_geo.cli.main ...`, e.g. under torchrun
    cli()
