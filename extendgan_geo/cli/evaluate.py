"""`egan-fill evaluate`: score the fill methods on a complete raster with punched gaps, with pictures."""

from __future__ import annotations

from typing import Any

import click

from extendgan_geo.cli.options import configure_logging, fill_options, library_errors, parse_bands
from extendgan_geo.config import TileConfig

_file = click.Path(exists=True, dir_okay=False)


def _csv(kind: type) -> Any:
    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[Any, ...] | None:
        if value is None:
            return None
        try:
            return tuple(kind(v.strip()) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of {kind.__name__}") from None

    return parse


@click.command(short_help="Score fill methods on a complete raster with punched gaps; tables and pictures.")
@click.argument("truth", type=_file)
@click.option("--ref", "ref", type=_file, help="Real reference of the same area (else simulate with --factor).")
@click.option(
    "--factor",
    "factors",
    callback=_csv(float),
    help="Simulate references from the truth at these scale factors (reference px per HR px), e.g. 1.5,3,6,10.",
)
@click.option(
    "--layouts",
    callback=_csv(str),
    help="Gap layouts: right-half (the paper's), quarter, seam, cloud, polygons (--gaps). "
    "[right-half,quarter,seam,cloud]",
)
@click.option("--gaps", "gaps", type=_file, help="Vector polygons or a mask raster for the 'polygons' layout.")
@click.option(
    "--methods",
    callback=_csv(str),
    help="Methods: match, reference, fillnodata, gan. [all four; gan only when a model is bundled or given]",
)
@click.option("--model", type=_file, help="Checkpoint of method gan [bundled model].")
@click.option(
    "--model-eval",
    "models",
    multiple=True,
    type=_file,
    help="Another checkpoint scored as its own method, named after the file (repeatable).",
)
@click.option("--crop", type=click.IntRange(min=64), default=512, show_default=True, help="Crop edge, px.")
@click.option("--cases", type=click.IntRange(min=1), default=2, show_default=True, help="Crops per layout.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-b", "--bidx", multiple=True, callback=parse_bands, help="Truth bands, e.g. 1,2,3,4.")
@click.option("--ref-bidx", multiple=True, callback=parse_bands, help="Reference bands paired with them.")
@click.option("--rgb", callback=_csv(int), help="Band positions (within -b) shown in the pictures, e.g. 3,2,1.")
@click.option(
    "--paper-protocol",
    is_flag=True,
    help="The paper's Table I layout: 256 px crops, right half missing, scores over the whole tile.",
)
@click.option("--tile", type=click.IntRange(min=16), default=TileConfig.size, show_default=True)
@click.option("--overlap", type=click.IntRange(min=0), default=None, help="Window overlap, px [tile/4].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@fill_options("resampling", "heal", "coarse_to_fine")
@click.option("-o", "--out", "out_dir", required=True, help="Folder for metrics.csv/.json/.md and PNG figures.")
@click.option("-v", "--verbose", count=True)
@click.option("-q", "--quiet", count=True)
def evaluate(truth: str, out_dir: str, verbose: int, quiet: int, **opts: Any) -> None:
    """Punch gaps into TRUTH (a complete HR raster), fill them with each method and score the fills.

    Writes OUT/metrics.csv (one row per case, method and region), metrics.json, metrics.md (tables), one
    Fig.-6-style PNG per case and metrics.png (bar chart). Scores are on the gap only and on the whole crop.
    """
    configure_logging(verbose, quiet)
    from extendgan_geo.evaluate import BASE_METHODS, EvalConfig
    from extendgan_geo.evaluate import evaluate as run
    from extendgan_geo.fillers.gan import bundled_model

    methods = opts["methods"]
    if methods is None:
        has_model = opts["model"] is not None or bundled_model() is not None
        methods = tuple(m for m in BASE_METHODS if m != "gan" or has_model)
    tile = opts["tile"]
    with library_errors():
        cfg = EvalConfig(
            layouts=opts["layouts"] or EvalConfig.layouts,
            factors=opts["factors"] or (),
            methods=methods,
            models=opts["models"],
            crop=opts["crop"],
            cases=opts["cases"],
            seed=opts["seed"],
            indexes=opts["bidx"],
            ref_indexes=opts["ref_bidx"],
            model=opts["model"],
            tiles=TileConfig(size=tile, overlap=tile // 4 if opts["overlap"] is None else opts["overlap"]),
            paper_protocol=opts["paper_protocol"],
            rgb=opts["rgb"],
            device=opts["device"],
            resampling=opts["resampling"],
            heal=opts["heal"],
            coarse_to_fine=opts["coarse_to_fine"],
        )

        def say(name: str) -> None:
            if not quiet:
                click.echo(f"case {name}", err=True)

        result = run(truth, out_dir, ref_path=opts["ref"], gaps_path=opts["gaps"], cfg=cfg, progress=say)
    if not quiet:
        md = next(f for f in result.files if f.endswith("metrics.md"))
        with open(md) as f:
            click.echo(f.read().split("\n## Whole")[0])
    click.echo(f"wrote {len(result.files)} files to {out_dir}", err=True)
