"""Writing the output: profile, temporary file next to the destination, COG conversion, atomic move.

Strips are written once each, all bands in one call, into a tiled temporary GeoTIFF in the output folder. For
a COG, rio-cogeo then copies it with overviews to a second temporary file (overviews added in place break the
COG layout, rio-cogeo#86); the finished file is moved onto the output path with `os.replace`, so an interrupted
run never leaves a partial file there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import rasterio
from rasterio.io import DatasetReader, DatasetWriter

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
            raise OutputExistsError(
                f"output {p!r} already exists; expected a new path: pass --overwrite to replace it"
            )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(
            f"output folder {folder!r} does not exist; expected an existing folder: create it first"
        )


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


def copy_metadata(src: DatasetReader, dst: DatasetWriter, tags: dict[str, str]) -> None:
    """Copy band descriptions, colour interpretation, scales/offsets, units and tags, then add `tags`."""
    dst.colorinterp = src.colorinterp
    dst.update_tags(**src.tags())
    dst.update_tags(**tags)
    for i in src.indexes:
        if src.descriptions[i - 1]:
            dst.set_band_description(i, src.descriptions[i - 1])
        if src.units[i - 1]:
            dst.set_band_unit(i, src.units[i - 1])
        band_tags = src.tags(i)
        if band_tags:
            dst.update_tags(i, **band_tags)
    if any(s != 1.0 for s in src.scales) or any(o != 0.0 for o in src.offsets):
        dst.scales = src.scales
        dst.offsets = src.offsets


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


def finalize(
    tmp: str, final: str, profile: dict[str, Any], *, cog: bool, tmpdir: str | None, add_mask: bool = False
) -> None:
    """Turn the written temporary GeoTIFF into the final file at `final`, atomically.

    Args:
        tmp: the temporary tiled GeoTIFF holding every pixel.
        final: destination path.
        profile: the output profile (compression and block size are taken from it).
        cog: convert to a Cloud Optimized GeoTIFF (else the temporary file is moved as is).
        tmpdir: folder for the COG intermediate.
        add_mask: carry the internal mask of the temporary file into the COG.
    """
    if not cog:
        os.replace(tmp, final)
        return
    from rio_cogeo.cogeo import cog_translate

    staged = temp_path(final, tmpdir, ".cog.tif")
    with removing_on_error(staged):
        dst_kwargs = {
            k: v for k, v in profile.items() if k not in {"crs", "transform", "width", "height", "count"}
        }
        dst_kwargs.pop("dtype", None)
        dst_kwargs.pop("nodata", None)
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_TIFF_INTERNAL_MASK=True):
            cog_translate(
                tmp,
                staged,
                dst_kwargs,
                nodata=profile.get("nodata"),
                add_mask=add_mask,
                overview_resampling="average",
                use_cog_driver=False,
                in_memory=False,
                forward_band_tags=True,
                forward_ns_tags=True,
                quiet=True,
                temporary_compression="ZSTD",
                allow_intermediate_compression=True,
            )
        os.replace(staged, final)


def open_temp(path: str, profile: dict[str, Any], *, compress_temp: bool) -> DatasetWriter:
    """Create the temporary GeoTIFF the strips are written into.

    Args:
        path: temporary path.
        profile: final output profile.
        compress_temp: keep the final compression (True when the temp file becomes the output); otherwise
            use fast ZSTD level 1, since rio-cogeo recompresses it anyway.
    """
    tmp_profile = dict(profile, driver="GTiff")
    if not compress_temp:
        tmp_profile.update(compress="zstd", zstd_level=1)
    return rasterio.open(path, "w", **tmp_profile)
