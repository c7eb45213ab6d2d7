"""Shared click options, parsers and the bridge from library errors to click errors."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Collection, Iterator
from typing import Any, NamedTuple, get_args

import click

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
from extendgan_geo.errors import EganError

logger = logging.getLogger(__name__)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def parse_bands(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[int, ...] | None:
    """Parse `-b 1,2,3` or `-b 1 -b 2` into (1, 2, 3); None when not given."""
    if not value:
        return None
    bands: list[int] = []
    for item in value:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                bands.append(int(part))
            except ValueError:
                raise click.BadParameter(f"{part!r} is not a band number; expected e.g. 1,2,3,4") from None
    if not bands or min(bands) < 1:
        raise click.BadParameter(f"expected 1-based band numbers, got {','.join(value)}")
    return tuple(bands)


def parse_key_values(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    """Parse repeated NAME=VALUE pairs (GDAL creation options) into a dict with lower-case names."""
    out: dict[str, str] = {}
    for item in value:
        name, sep, val = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE; expected e.g. --co COMPRESS=DEFLATE")
        out[name.strip().lower()] = val.strip()
    return out


def parse_nodata(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Parse a nodata value: a number or 'nan'."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number; expected e.g. 0, -9999 or nan") from None


class _Option(NamedTuple):
    """One click option: its declarations, its keyword arguments, and its help under batch and mosaic if other."""

    decls: tuple[str, ...]
    kwargs: dict[str, Any]
    many_help: str | None = None


# The options of `egan-fill fill` that `batch` and `mosaic` share (or some of them), by parameter name, in --help
# order. Their help text is fill's; many_help, where given, is the wording of batch and mosaic (many outputs).
_FILL_OPTIONS: dict[str, _Option] = {
    "bidx": _Option(
        ("-b", "--bidx"),
        {
            "multiple": True,
            "callback": parse_bands,
            "metavar": "LIST",
            "help": "HR bands to fill, e.g. 1,2,3,4 [all but alpha].",
        },
        "HR bands to fill [all but alpha].",
    ),
    "ref_bidx": _Option(
        ("--ref-bidx",),
        {
            "multiple": True,
            "callback": parse_bands,
            "metavar": "LIST",
            "help": "Reference bands paired with --bidx, e.g. 2,3,4,5.",
        },
        "Reference bands paired with --bidx.",
    ),
    "nodata": _Option(
        ("--nodata",),
        {"callback": parse_nodata, "metavar": "NUMBER|nan", "help": "HR nodata value (overrides the file's)."},
        "HR nodata value [the file's].",
    ),
    "ref_nodata": _Option(
        ("--ref-nodata",),
        {"callback": parse_nodata, "metavar": "NUMBER|nan", "help": "Reference nodata value (overrides the file's)."},
        "Reference nodata value.",
    ),
    "mask_layer": _Option(
        ("--mask-layer",),
        {"metavar": "NAME", "help": "Layer of the --mask vector file [first layer]."},
        "Layer of the --mask vector file(s) [first layer].",
    ),
    "mask_buffer": _Option(
        ("--mask-buffer",),
        {
            "type": click.IntRange(min=0),
            "default": FillConfig.mask_buffer,
            "show_default": True,
            "help": "Grow the gap by this many HR pixels.",
        },
    ),
    "resampling": _Option(
        ("--resampling",),
        {
            "type": click.Choice(get_args(ResamplingKind)),
            "default": FillConfig.resampling,
            "show_default": True,
            "help": "Kernel that warps the reference onto the HR grid.",
        },
    ),
    "coregister": _Option(
        ("--coregister/--no-coregister",),
        {
            "default": FillConfig.coregister,
            "show_default": True,
            "help": "Estimate and remove a global sub-pixel shift of the reference.",
        },
        "Remove a global reference shift.",
    ),
    "heal": _Option(
        ("--heal/--no-heal",),
        {
            "default": FillConfig.heal,
            "show_default": True,
            "help": "Carry the known pixels' residual along the gap edge into the fill (method match).",
        },
    ),
    "coarse_to_fine": _Option(
        ("--coarse-to-fine/--no-coarse-to-fine",),
        {
            "default": FillConfig.coarse_to_fine,
            "show_default": True,
            "help": (
                "Method gan, reference about as coarse as the top of the model's range or coarser (9x for the "
                "bundled model): fill a coarser grid first and use that fill as the reference at full resolution."
            ),
        },
    ),
    "method": _Option(
        ("--method",),
        {
            "type": click.Choice(get_args(MethodKind)),
            "default": FillConfig.method,
            "show_default": True,
            "help": (
                "auto: gan when the bundled (or --model) generator fits the bands, else match; match: reference "
                "matched to HR radiometry; gan: the Extend-GAN generator; reference, fillnodata: "
                "floor baselines (the warped reference as it is; GDAL inverse-distance fill, no reference)."
            ),
        },
        "Filler, as for `egan-fill fill`.",
    ),
    "model": _Option(
        ("--model",),
        {
            "type": click.Path(exists=True, dir_okay=False),
            "help": "Extend-GAN checkpoint for --method gan [bundled model].",
        },
    ),
    "tile": _Option(
        ("--tile",),
        {"type": click.IntRange(min=16), "default": TileConfig.size, "show_default": True, "help": "Window edge, px."},
    ),
    "overlap": _Option(
        ("--overlap",),
        {
            "type": click.IntRange(min=0),
            "default": None,
            "show_default": "tile / 4",
            "help": "Pixels shared by neighbouring windows.",
        },
    ),
    "blend": _Option(
        ("--blend",),
        {
            "type": click.Choice(get_args(BlendKind)),
            "default": TileConfig.blend,
            "show_default": True,
            "help": "Weight profile over the overlap.",
        },
    ),
    "batch_size": _Option(
        ("--batch-size",),
        {
            "type": click.IntRange(min=1),
            "default": TileConfig.batch_size,
            "show_default": True,
            "help": "Windows per filler call.",
        },
    ),
    "device": _Option(
        ("--device",),
        {
            "type": click.Choice(get_args(DeviceKind)),
            "default": FillConfig.device,
            "show_default": True,
            "help": "Torch device of --method gan.",
        },
    ),
    "precision": _Option(
        ("--precision",),
        {
            "type": click.Choice(get_args(PrecisionKind)),
            "default": FillConfig.precision,
            "show_default": True,
            "help": "Arithmetic of --method gan (bf16: autocast).",
        },
        "Arithmetic of --method gan.",
    ),
    "compile": _Option(
        ("--compile/--no-compile",),
        {
            "default": FillConfig.compile,
            "show_default": True,
            "help": "torch.compile the generator of --method gan: a one-off compile (about 1 min the first time, "
            "cached by torch), then about 1.3-1.6x faster per window on CPUs; plain torch if compiling fails.",
        },
        "torch.compile the generator of --method gan.",
    ),
    "co": _Option(
        ("--co", "--profile", "co"),
        {
            "multiple": True,
            "callback": parse_key_values,
            "metavar": "NAME=VALUE",
            "help": "GDAL creation option for the output (repeatable), e.g. --co COMPRESS=DEFLATE.",
        },
        "GDAL creation option for the outputs (repeatable).",
    ),
    "cog": _Option(
        ("--cog/--no-cog",),
        {"default": OutputConfig.cog, "show_default": True, "help": "Write a Cloud Optimized GeoTIFF."},
        "Write Cloud Optimized GeoTIFFs.",
    ),
    "fill_mask": _Option(
        ("--fill-mask/--no-fill-mask",),
        {
            "default": OutputConfig.write_fill_mask,
            "show_default": True,
            "help": "Write OUT.fillmask.tif (0 kept, 1 filled, 2 left unfilled).",
        },
        "Write OUT.fillmask.tif sidecars.",
    ),
    "tmpdir": _Option(
        ("--tmpdir",),
        {"type": click.Path(file_okay=False, exists=True), "help": "Folder for intermediate files [OUT's]."},
        "Folder for strip files [OUT's].",
    ),
    "overwrite": _Option(
        ("--overwrite",),
        {"is_flag": True, "help": "Replace OUT if it exists."},
        "Replace outputs that exist (batch: unless already up to date).",
    ),
    "verbose": _Option(("-v", "--verbose"), {"count": True, "help": "More log messages (repeatable)."}),
    "quiet": _Option(("-q", "--quiet"), {"count": True, "help": "Fewer messages, no progress bar."}),
}


def fill_options(*names: str, many: bool = False, exclude: Collection[str] = ()) -> Decorator:
    """Add the shared fill options `names` (all of them by default, less `exclude`) in their --help order.

    Args:
        names: Parameter names, e.g. "tmpdir"; none: every shared option.
        many: Use the help texts of batch and mosaic.
        exclude: Parameter names to leave out.
    """
    unknown = {*names, *exclude} - _FILL_OPTIONS.keys()
    if unknown:
        raise ValueError(f"no shared fill options {sorted(unknown)}")
    chosen = [name for name in _FILL_OPTIONS if (name in names or not names) and name not in exclude]

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(chosen):
            option = _FILL_OPTIONS[name]
            kwargs = option.kwargs
            if many and option.many_help is not None:
                kwargs = {**kwargs, "help": option.many_help}
            f = click.option(*option.decls, **kwargs)(f)
        return f

    return decorate


@contextlib.contextmanager
def library_errors() -> Iterator[None]:
    """Turn library errors into one-line click errors (exit 1); anything else keeps its traceback."""
    try:
        yield
    except EganError as exc:
        raise click.ClickException(str(exc)) from exc


def progress_bar(quiet: bool, desc: str, unit: str) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A tqdm progress callback on stderr, or None under -q or when stderr is not a terminal.

    Returns:
        The callback, called with (units advanced, units in total), or None; and a function that closes the bar.
    """
    if quiet or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(n: int, total: int) -> None:
        bar.total = total
        bar.update(n)

    return update, bar.close


def configure_logging(verbose: int, quiet: int) -> None:
    """Map -v/-q counts to a log level on stderr (WARNING by default)."""
    level = max(logging.DEBUG, logging.WARNING - 10 * verbose + 10 * quiet)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.captureWarnings(True)
