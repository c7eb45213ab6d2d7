"""Shared click options, parsers and the bridge from library errors to click errors."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

import click

from extendgan_geo.errors import EganError

logger = logging.getLogger(__name__)


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
