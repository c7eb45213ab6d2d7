"""Writing the output: profile, temporary file next to the destination, COG conversion, atomic move.

Strips are written once each, all bands in one call, into a tiled temporary GeoTIFF in the output folder. For
a COG, rio-cogeo then copies it with overviews to a second temporary file (overviews added in place break the
COG layout, rio-cogeo#86); the finished file is moved onto the output path with `os.replace`, so an interrupted
run never leaves a partial file there.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import DatasetReader

from extendgan_geo.config import OutputConfig
from extendgan_geo.errors import ConfigError, OutputExistsError

logger = logging.getLogger(__name__)

# Fast lossless compression with the predictor that suits the dtype (2: integer differencing, 3: float).
_BASE = {"driver": "GTiff", "tiled": True, "blockxsize": 512, "blockysize": 512, "interleave": "pixel"}
_LOSSY = {"jpeg", "webp", "lerc"}


def check_output(path: str, cfg: OutputConfig, *, sidecars: tuple[str, ...] = ()) -> None:
    """Refuse an existing output (or sidecar) unless overwriting, and a missing output folder.

    Raises:
        OutputExistsError: a file exists and `cfg.overwrite` is False.
        ConfigError: the output folder does not exist.
    """
    for p in (path, *(path + s for s in sidecars)):
        if os.path.exists(p) and not cfg.overwrite:
            raise OutputExistsError(f"output {p!r} already exists; expected a new path: pass --overwrite to replace it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"output folder {folder!r} does not exist; expected an existing folder: create it first")


def output_profile(src: DatasetReader, cfg: OutputConfig, *, nodata: float | None) -> dict[str, Any]:
    """Profile of the final file: the HR grid, dtype, count and nodata, tiled and compressed, then --co overrides.

    Raises:
        ConfigError: a lossy codec was asked for data with nodata.
    """
    predictor = 3 if np.dtype(src.dtypes[0]).kind == "f" else 2
    profile: dict[str, Any] = {
        **_BASE,
        "compress": "zstd",
        "predictor": predictor,
        "bigtiff": "if_safer",
        "crs": src.crs,
        "transform": src.transform,
        "width": src.width,
        "height": src.height,
        "count": src.count,
        "dtype": src.dtypes[0],
        "nodata": nodata,
    }
    if src.width < 512 or src.height < 512:
        profile.update(blockxsize=256, blockysize=256)
    for key, value in cfg.creation_options.items():
        profile[key.lower()] = value
    if str(profile["compress"]).lower() == "zstd":
        # Level 3 writes about 3x faster than GDAL's default 9 for a few % more bytes (docs/benchmarks.md).
        profile.setdefault("zstd_level", 3)
    if str(profile.get("compress", "")).lower() in _LOSSY and nodata is not None:
        raise ConfigError(
            f"--co compress={profile['compress']} is lossy and the output has nodata {nodata}: lossy codecs shift "
            "nodata values; expected a lossless codec (zstd, deflate, lzw) or no nodata"
        )
    _probe(profile, cfg.creation_options)
    return profile


def _probe(profile: dict[str, Any], options: dict[str, str]) -> None:
    """Create a one-block file in memory with the profile, so bad --co values fail before any work.

    Raises:
        ConfigError: GDAL refuses the creation options.
    """
    if not options:
        return
    from rasterio.errors import RasterioError

    bx, by = int(profile.get("blockxsize", 256)), int(profile.get("blockysize", 256))
    probe = dict(profile, width=max(bx, 16), height=max(by, 16))
    given = " ".join(f"--co {k}={v}" for k, v in options.items())
    try:
        with rasterio.Env(CPL_LOG="/dev/null"), rasterio.MemoryFile() as mem, mem.open(**probe):
            pass
    except (RasterioError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"GDAL refuses the creation options {given} ({str(exc).splitlines()[0]}); expected valid GTiff "
            "creation options: see https://gdal.org/drivers/raster/gtiff.html"
        ) from exc


def temp_path(final: str, tmpdir: str | None, suffix: str) -> str:
    """A fresh temporary file name next to `final` (or in `tmpdir`), hidden and marked as partial."""
    folder = tmpdir or os.path.dirname(os.path.abspath(final))
    fd, path = tempfile.mkstemp(prefix=f".{os.path.basename(final)}.", suffix=f".partial{suffix}", dir=folder)
    os.close(fd)
    os.remove(path)
    return path


@contextlib.contextmanager
def removing_on_error(*paths: str) -> Iterator[None]:
    """Remove `paths` (and GDAL sidecars) whatever happens; the caller moves good files away first."""
    try:
        yield
    finally:
        for path in paths:
            for p in (path, path + ".aux.xml", path + ".msk"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)


def _cog_options(profile: dict[str, Any]) -> dict[str, Any]:
    """GDAL COG driver options from a GTiff-style profile (block size, codec, level, predictor)."""
    skip = {
        "driver",
        "tiled",
        "interleave",
        "blockxsize",
        "blockysize",
        "crs",
        "transform",
        "width",
        "height",
        "count",
        "dtype",
        "nodata",
        "photometric",
        "num_threads",
        "zstd_level",
        "zlevel",
        "sparse_ok",
    }
    opts = {k.upper(): v for k, v in profile.items() if k not in skip}
    opts["BLOCKSIZE"] = profile.get("blockxsize", 512)
    level = profile.get("zstd_level", profile.get("zlevel"))
    if level is not None:
        opts["LEVEL"] = level
    if "PREDICTOR" in opts:
        opts["PREDICTOR"] = (
            "FLOATING_POINT"
            if str(opts["PREDICTOR"]) == "3"
            else "YES"
            if str(opts["PREDICTOR"]) == "2"
            else opts["PREDICTOR"]
        )
    opts.update(OVERVIEW_RESAMPLING="AVERAGE", OVERVIEWS="IGNORE_EXISTING", NUM_THREADS="ALL_CPUS")
    return opts


def finalize(tmp: str, final: str, profile: dict[str, Any], *, cog: bool, tmpdir: str | None) -> None:
    """Turn the written temporary GeoTIFF into the final file at `final`, atomically.

    Args:
        tmp: the temporary GeoTIFF holding every pixel (and its mask).
        final: destination path.
        profile: the output profile (codec, level, predictor and block size are taken from it).
        cog: convert to a Cloud Optimized GeoTIFF with GDAL's COG driver (else the temporary file is moved).
        tmpdir: folder for the COG intermediate.
    """
    if not cog:
        move_into_place(tmp, final)
        return
    staged = temp_path(final, tmpdir, ".cog.tif")
    with removing_on_error(staged):
        # Overviews are rebuilt from the filled pixels: existing ones would still show the holes.
        rasterio.shutil.copy(tmp, staged, driver="COG", **_cog_options(profile))
        move_into_place(staged, final)


def move_into_place(src: str, final: str) -> None:
    """Move a finished file onto `final` atomically, also from another filesystem (--tmpdir elsewhere).

    Across filesystems the file is first copied next to `final` under a hidden name, then renamed, so readers
    never see a partial file.
    """
    try:
        os.replace(src, final)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    near = temp_path(final, None, ".move.tif")
    with removing_on_error(near):
        shutil.copyfile(src, near)
        os.replace(near, final)
    os.remove(src)


def copies_bytes(src: DatasetReader, cfg: OutputConfig) -> bool:
    """Whether the output can start as a byte copy of the HR file (then only gap blocks are rewritten).

    True for a single-file GeoTIFF when the output is a COG (it is re-encoded anyway), or when it is a GeoTIFF
    that is already tiled, compressed and without overviews (stale overviews would still show the holes) and
    no --co asks for something else.
    """
    if src.driver != "GTiff" or len([f for f in src.files if not f.endswith(".aux.xml")]) != 1:
        return False
    if cfg.cog:
        return True
    tiled = src.profile.get("tiled", False)
    compressed = src.compression is not None
    return bool(tiled and compressed and not src.overviews(1) and not cfg.creation_options)


def make_base(src: DatasetReader, path: str, profile: dict[str, Any], *, byte_copy: bool, cog: bool) -> None:
    """Create the file the engine patches: a byte copy of the HR raster, or a re-encoded copy with `profile`.

    Args:
        src: the HR dataset.
        path: the temporary path to create.
        profile: final output profile.
        byte_copy: copy the file's bytes (see `copies_bytes`).
        cog: the output will be a COG (then the re-encoded copy uses fast ZSTD level 1 and no overviews).
    """
    if byte_copy:
        shutil.copyfile(src.name, path)
        return
    opts = {
        k: v
        for k, v in profile.items()
        if k not in {"driver", "crs", "transform", "width", "height", "count", "dtype", "nodata"}
    }
    if cog:
        opts.update(compress="zstd", zstd_level=1)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        rasterio.shutil.copy(src, path, driver="GTiff", **opts)
