"""Gap sources given with --mask: polygons from a vector file, or a raster mask, on the HR grid.

Polygons are read once (only those near the scene), reprojected to the HR CRS, repaired with `make_valid`
and rasterized per row strip with the pixel-centre rule (GDAL's default), so a polygon that traces pixel edges
gives exactly those pixels whatever CRS it was drawn in. A raster mask (non-zero = gap) is warped onto the HR
grid with nearest resampling.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Any, Protocol, cast

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import geometry_mask
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from extendgan_geo.errors import InputError
from extendgan_geo.io.raster import open_raster, require_crs
from extendgan_geo.io.reference import footprint_overlap

logger = logging.getLogger(__name__)
_RASTERIZE_LOCK = threading.Lock()
# rasterio means to silence this warning of its rasterizer's in-memory dataset (see `polygon_mask`); a filter that
# lives as long as the process keeps it silent while other threads swap the filters (Dask's own threads too).
warnings.filterwarnings(
    "ignore", message="Dataset has no geotransform", category=NotGeoreferencedWarning, module=r"rasterio\.features"
)


def polygon_mask(geoms: Any, shape: tuple[int, int], transform: Affine) -> np.ndarray:
    """(H, W) bool, True at the pixels whose centre lies in a polygon (GDAL's rule), one call at a time.

    rasterio's rasterizer silences a NotGeoreferencedWarning of its in-memory dataset with
    `warnings.catch_warnings()`, which swaps the process-wide warning filters: calls from concurrent threads (batch
    and mosaic strips on a threaded Dask cluster) undo each other's silencing and leak spurious warnings. The masks
    themselves are right. The lock keeps our own calls apart; a process-wide filter (below) covers other threads.
    """
    with _RASTERIZE_LOCK:
        return cast(np.ndarray, geometry_mask(geoms, out_shape=shape, transform=transform, invert=True))


VECTOR_SUFFIXES = (
    ".gpkg",
    ".shp",
    ".geojson",
    ".json",
    ".fgb",
    ".gml",
    ".kml",
    ".sqlite",
    ".zip",
    ".parquet",
)


class GapSource(Protocol):
    """Anything that says which HR pixels of a window are gaps."""

    description: str

    def window(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """(height, width) bool, True where the source marks a gap."""
        ...

    def close(self) -> None:
        """Release files."""
        ...


class VectorGaps:
    """Polygons of a vector file, on the HR grid.

    Attributes:
        description: file and layer, for provenance.
        count: number of geometries kept (those near the scene).
    """

    def __init__(self, path: str, layer: str | None, hr: DatasetReader) -> None:
        import geopandas as gpd
        import pyogrio
        from shapely import STRtree, make_valid

        layers = vector_layers(path)
        if layer is None:
            layer = layers[0]
        elif layer not in layers:
            raise InputError(
                f"mask file {path!r} has no layer {layer!r}; expected one of {layers}: pass it with --mask-layer"
            )
        info = pyogrio.read_info(path, layer=layer)
        if info.get("crs") is None:
            raise InputError(
                f"mask layer {layer!r} of {path!r} has no CRS; expected one: set it, e.g. "
                "`ogr2ogr -a_srs EPSG:XXXX fixed.gpkg in.gpkg`"
            )
        bbox = transform_bounds(hr.crs, info["crs"], *hr.bounds, densify_pts=21)
        frame = gpd.read_file(path, layer=layer, engine="pyogrio", bbox=bbox)
        if info.get("features", 0) == 0:
            raise InputError(f"mask layer {layer!r} of {path!r} has no features; expected gap polygons")
        geoms = frame.to_crs(hr.crs).geometry
        geoms = geoms[~(geoms.is_empty | geoms.isna())]
        self.geoms = np.asarray(make_valid(np.asarray(geoms.values)))
        self.tree = STRtree(self.geoms)
        self.transform = hr.transform
        self.count = len(self.geoms)
        self.description = f"{os.path.basename(path)}:{layer}"
        if self.count == 0:
            warnings.warn(
                f"no polygon of mask layer {layer!r} in {path!r} lies on the HR raster "
                f"(HR bounds {tuple(round(v, 3) for v in hr.bounds)} in {hr.crs}); only the HR's own nodata is filled",
                UserWarning,
                stacklevel=3,
            )
        logger.info("mask %s: %d geometries near the scene", self.description, self.count)

    def window(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """Rasterize the polygons over an HR window (pixel-centre rule).

        Returns:
            (height, width) bool, True inside a polygon.
        """
        shape = (height, width)
        if self.count == 0:
            return np.zeros(shape, dtype=bool)
        from shapely import box

        t = window_transform(Window(col_off, row_off, width, height), self.transform)
        xs, ys = zip(t @ (0, 0), t @ (width, height), strict=True)
        hits = self.tree.query(box(min(xs), min(ys), max(xs), max(ys)))
        if len(hits) == 0:
            return np.zeros(shape, dtype=bool)
        return polygon_mask(self.geoms[hits], shape, t)

    def close(self) -> None:
        """Nothing to release."""


class RasterGaps:
    """A raster mask (non-zero = gap) on any grid, warped onto the HR grid with nearest resampling."""

    def __init__(self, path: str, hr: DatasetReader) -> None:
        self.src = open_raster(path, "mask raster")
        require_crs(self.src, "mask raster")
        footprint_overlap(hr, self.src, "mask raster")
        self.vrt = WarpedVRT(
            self.src,
            crs=hr.crs,
            transform=hr.transform,
            width=hr.width,
            height=hr.height,
            resampling=Resampling.nearest,  # a mask is categorical: never interpolate it
            nodata=0,
            tolerance=1e-9,
        )
        self.description = os.path.basename(path)

    def window(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """Warped mask of an HR window: (height, width) bool, True where non-zero and valid."""
        data = self.vrt.read(1, window=Window(col_off, row_off, width, height), masked=True)
        return np.ma.filled(data != 0, False)

    def close(self) -> None:
        """Close the files."""
        self.vrt.close()
        self.src.close()


def vector_layers(path: str, role: str = "mask file", expected: str = "gap polygons, or a mask raster") -> list[str]:
    """Layer names of a vector file.

    Raises:
        InputError: the file is not a readable vector data source or has no layers.
    """
    import pyogrio

    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises DataSourceError and plain OSError subclasses
        raise InputError(
            f"{role} {path!r} is not a vector file GDAL/OGR can read ({str(exc).splitlines()[0]}); "
            f"expected a GeoPackage, Shapefile or GeoJSON of {expected}"
        ) from exc
    if not layers:
        raise InputError(f"{role} {path!r} has no layers; expected {expected}")
    return layers


def _is_vector(path: str) -> bool:
    """Guess whether `path` holds vectors (True) or a raster (False).

    A vector suffix means vectors, except a GeoPackage that holds only raster tiles; other files are rasters
    when GDAL opens them as such.
    """
    if path.lower().endswith(".gpkg"):
        import pyogrio

        try:
            return len(pyogrio.list_layers(path)) > 0 or not _opens_as_raster(path)
        except Exception:  # unreadable as vectors: report it as a vector file unless it is a raster
            return not _opens_as_raster(path)
    if path.lower().endswith(VECTOR_SUFFIXES):
        return True
    return not _opens_as_raster(path)


def _opens_as_raster(path: str) -> bool:
    try:
        with rasterio.open(path):
            return True
    except rasterio.errors.RasterioIOError:
        return False


def open_gap_source(path: str, *, layer: str | None, hr: DatasetReader) -> GapSource:
    """Open a --mask file as polygons or as a raster mask.

    Args:
        path: vector file (GeoPackage, Shapefile, GeoJSON, ...) or raster mask.
        layer: vector layer name (None = first layer).
        hr: the HR dataset that defines the grid.

    Raises:
        InputError: missing, unreadable, empty, without CRS, or unknown layer.
        GridMismatchError: a raster mask does not overlap the HR raster.
    """
    if not os.path.exists(path):
        raise InputError(f"mask file {path!r} does not exist; expected gap polygons or a mask raster")
    if _is_vector(path):
        return VectorGaps(path, layer, hr)
    if layer is not None:
        raise InputError(f"--mask-layer {layer!r} was given but {path!r} is a raster; drop --mask-layer")
    return RasterGaps(path, hr)
