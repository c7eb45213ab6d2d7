"""The HR raster: opening, validating band selections, reading row strips and finding its own holes."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import cast

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from extendgan_geo.errors import BandMismatchError, InputError

logger = logging.getLogger(__name__)


def open_raster(path: str | os.PathLike[str], role: str) -> DatasetReader:
    """Open a raster for reading, with an error that names its role when it is missing or not a raster.

    Args:
        path: file path or GDAL dataset name.
        role: what the file is for, used in messages ("HR raster", "reference").

    Raises:
        InputError: the file does not exist or GDAL cannot read it as a raster.
    """
    path = os.fspath(path)
    if "://" not in path and not path.startswith("/vsi") and not os.path.exists(path):
        raise InputError(f"{role} {path!r} does not exist; expected a raster file such as a GeoTIFF")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise InputError(
            f"{role} {path!r} is not a raster GDAL can read ({str(exc).splitlines()[0]}); "
            "expected a GeoTIFF or another GDAL raster format"
        ) from exc


def require_crs(src: DatasetReader, role: str) -> None:
    """Raise InputError when a raster has no CRS or no geotransform.

    Raises:
        InputError: the raster is not georeferenced.
    """
    if src.crs is None or src.transform.is_identity:
        raise InputError(
            f"{role} {src.name!r} has no coordinate reference system or geotransform; expected a georeferenced "
            "raster: assign one with `gdal_edit.py -a_srs EPSG:XXXX -a_ullr ...` or `rio edit-info --crs`"
        )


def alpha_band(src: DatasetReader) -> int | None:
    """1-based index of the alpha band, or None."""
    for i, ci in enumerate(src.colorinterp, start=1):
        if ci == ColorInterp.alpha:
            return i
    return None


def check_indexes(indexes: tuple[int, ...], count: int, role: str, flag: str) -> None:
    """Raise BandMismatchError when a band index is outside 1..count.

    Raises:
        BandMismatchError: an index is out of range.
    """
    bad = [i for i in indexes if not 1 <= i <= count]
    if bad:
        raise BandMismatchError(
            f"{role} has {count} band(s) but {flag} asks for band(s) {bad}; expected numbers in 1..{count}"
        )


@dataclass
class HrRaster:
    """An open HR raster and how to tell its holes.

    Attributes:
        src: the open dataset.
        indexes: 1-based bands that are filled (and fed to the filler), in order.
        nodata: the nodata value that marks holes (file's or user's), or None.
        alpha: 1-based alpha band, or None.
        internal_mask: True when holes come from a per-dataset (internal or .msk) mask.
    """

    src: DatasetReader
    indexes: tuple[int, ...]
    nodata: float | None
    alpha: int | None
    internal_mask: bool

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        indexes: tuple[int, ...] | None,
        nodata: float | None,
        georeferenced: bool = True,
    ) -> HrRaster:
        """Open and validate the HR raster.

        Args:
            path: raster path.
            indexes: bands to fill, 1-based; None = every band but alpha.
            nodata: nodata override; None = the file's nodata.
            georeferenced: require a CRS and geotransform (training with a simulated reference does not).

        Raises:
            InputError: not a raster, or not georeferenced.
            BandMismatchError: a band index is out of range.
        """
        src = open_raster(path, "HR raster")
        try:
            if georeferenced:
                require_crs(src, "HR raster")
            alpha = alpha_band(src)
            if indexes is None:
                indexes = tuple(i for i in src.indexes if i != alpha)
            check_indexes(indexes, src.count, "HR raster", "--bidx")
            if alpha in indexes:
                # A band the user asked to fill is data, whatever its colour interpretation says
                # (4-band uint8 B,G,R,NIR files are often tagged RGBA).
                alpha = None
        except Exception:
            src.close()
            raise
        nd = nodata if nodata is not None else src.nodata
        internal = nd is None and alpha is None and MaskFlags.per_dataset in src.mask_flag_enums[0]
        return cls(src, tuple(indexes), nd, alpha, internal)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the scene."""
        return self.src.height, self.src.width

    @property
    def has_holes(self) -> bool:
        """Whether the raster itself can mark holes (nodata, alpha, internal mask or float NaN)."""
        return (
            self.nodata is not None
            or self.alpha is not None
            or self.internal_mask
            or np.dtype(self.src.dtypes[0]).kind == "f"
        )

    def read(self, window: Window) -> np.ndarray:
        """Read every band of an in-scene window.

        Returns:
            (count, rows, cols) array of the file's dtype.
        """
        return cast(np.ndarray, self.src.read(window=window))

    def read_mask(self, window: Window) -> np.ndarray | None:
        """Read the per-dataset mask of a window when holes come from it.

        Returns:
            (rows, cols) uint8, 0 where invalid; None when the raster has no such mask.
        """
        if not self.internal_mask:
            return None
        return cast(np.ndarray, self.src.read_masks(1, window=window))

    def expand(self, selected: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
        """Put the filled bands (and the alpha band, if given) back at their file positions, zeros elsewhere.

        Args:
            selected: (len(indexes), rows, cols) values of `indexes`, in order.
            alpha: (rows, cols) alpha band, or None.

        Returns:
            (count, rows, cols) array `holes` can read.
        """
        full = np.zeros((self.src.count, *selected.shape[1:]), dtype=selected.dtype)
        full[[i - 1 for i in self.indexes]] = selected
        if self.alpha is not None and alpha is not None:
            full[self.alpha - 1] = alpha
        return full

    def holes(self, data: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Pixels that are missing in at least one filled band.

        Args:
            data: (count, rows, width) as returned by `read_rows`.
            mask: the matching `read_mask_rows` result, or None.

        Returns:
            (rows, width) bool, True where the HR has no data.
        """
        sel = data[[i - 1 for i in self.indexes]]
        hole = np.zeros(sel.shape[1:], dtype=bool)
        if sel.dtype.kind == "f":
            hole |= ~np.isfinite(sel).all(axis=0)
        if self.nodata is not None and not np.isnan(self.nodata):
            hole |= (sel == float(self.nodata)).any(axis=0)
        if self.alpha is not None:
            hole |= data[self.alpha - 1] == 0
        if mask is not None:
            hole |= mask == 0
        return hole
