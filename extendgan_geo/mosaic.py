"""Mosaics: many HR scenes on one grid, the gaps between them and their seams filled in parallel row strips.

1. Plan (here): one grid for every scene (the first scene's CRS unless asked; the finest resolution unless
   asked; bounds snapped outward to the first scene's pixel lattice and grown to cover the area of interest).
   Scenes on that lattice are read as they are; the others are warped on the fly (GDAL WarpedVRT). The area of
   interest (AOI) is a polygon file, or the convex hull of the union of the scenes' valid footprints (traced
   from their dataset masks, decimated to at most 1024 px a side).
2. Fit (here, once): what must not differ between strips is fitted on the whole mosaic: the method (auto
   resolved), the window size, the filler's scene-wide statistics (prepared on a sparse sample of the whole
   composed mosaic, as `fill_raster` samples one scene) and, with --coregister, the reference shift (estimated on
   the mosaic decimated to 512 px a side).
3. Strips (on Dask, one task each): a strip of core rows plus a margin of one window (and the mask buffer) above
   and below is composed from the scenes (the first scene in the given order that is valid at a pixel wins), and
   coded: valid scene pixel (kept), no scene inside the AOI (gap), no scene outside the AOI (left as nodata),
   and, with a seam buffer, scene pixels within that many metres of a seamline (regenerated). A seamline is
   where the winning scene changes between two valid pixels inside the AOI; the AOI's edge and the edges of the
   gap are not seamlines. The fill engine (`fill_raster`) then fills the strip's gap and seam pixels with the
   shared sample and shift.
   Each strip's first composed row lies on the global window lattice (a multiple of the window stride, of the
   reference's intermediate cell and of the gap scan's cell), and its margins hold every window that touches a
   core pixel. So each core pixel is predicted by the same windows, with the same inputs and weights, as in a
   single-strip fill: strips meet without seams, and the mosaic does not depend on --strip-rows.
4. Assembly (here, as strips complete): each strip's core rows are written into one tiled GeoTIFF, pixels
   outside the AOI are set back to nodata, and the file becomes a COG (or is moved) onto the output path, with
   its fill-mask sidecar.

A strip's gap is its gap codes alone (its composed file has no nodata value and no mask), so a valid scene pixel
whose value equals the mosaic's nodata is kept, not filled; filled values are nudged off the nodata value at
assembly. Every valid scene pixel outside the seam buffer (and outside --mask-buffer, when one is given) is
copied bit for bit when its scene is on the mosaic grid (same CRS and resolution, origin on the lattice).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, NoReturn, cast

import numpy as np
import rasterio
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.features import shapes
from rasterio.io import DatasetReader
from rasterio.transform import array_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds, transform_geom
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from scipy import ndimage

from extendgan_geo import __version__
from extendgan_geo.batch import ClusterInfo, dask_client
from extendgan_geo.blending import cast_to_dtype
from extendgan_geo.config import FillConfig, OutputConfig, ResamplingKind
from extendgan_geo.engine import timed
from extendgan_geo.errors import ConfigError, EganError, GridMismatchError, InputError
from extendgan_geo.fillers.base import TileBatch
from extendgan_geo.io.cog import check_output, finalize, output_profile, removing_on_error, temp_path
from extendgan_geo.io.masks import polygon_mask, vector_layers
from extendgan_geo.io.raster import HrRaster, alpha_band, open_raster, require_crs
from extendgan_geo.io.reference import RefGrid, _factor, default_ref_indexes, footprint_overlap
from extendgan_geo.pipeline import FILL_MASK_SUFFIX, fill_raster, summary_tail

logger = logging.getLogger(__name__)

# Codes of a strip's gap raster (non-zero = gap for the fill engine).
KEEP, GAP, OUTSIDE, SEAM = 0, 1, 2, 3
_COLS = 1024  # columns composed or assembled at a time
_EPS = 1e-6  # px: tolerance of lattice checks and snapping
_FOOTPRINT_PX = 1024  # footprints are traced on masks decimated to at most this many px a side
_SCAN_CELL = 16  # cell of the fill engine's gap scan (GapReader.scan): strips start on its lattice too
_OVERVIEW_PX = 512  # --coregister: the mosaic is decimated to at most this many px a side


@dataclass(frozen=True)
class MosaicConfig:
    """How scenes become one mosaic and which of its pixels are gap.

    Attributes:
        seam_buffer: regenerate scene pixels within this many metres (grid CRS units) of a seamline; 0 = none.
        aoi: vector file of the area of interest; None = the convex hull of the scenes' valid footprints.
        aoi_layer: layer of `aoi` (None = its first layer).
        crs: CRS of the mosaic (anything rasterio's CRS accepts); None = the first scene's.
        res: pixel size of the mosaic in CRS units; None = the finest scene resolution.
        resampling: kernel that warps scenes that are not on the mosaic grid.
        strip_rows: core rows per Dask task, rounded to a multiple of the strip lattice (see `make_strips`);
            each task also composes and fills a margin of one window (and the mask buffer) above and below.
    """

    seam_buffer: float = 0.0
    aoi: str | None = None
    aoi_layer: str | None = None
    crs: str | None = None
    res: float | None = None
    resampling: ResamplingKind = "nearest"
    strip_rows: int = 2048

    def __post_init__(self) -> None:
        if not self.seam_buffer >= 0:
            raise ConfigError(f"seam buffer must be >= 0 metres, got {self.seam_buffer}")
        if self.res is not None and not self.res > 0:
            raise ConfigError(f"resolution must be > 0, got {self.res}")
        if self.strip_rows < 16:
            raise ConfigError(f"strip rows must be at least 16, got {self.strip_rows}")
        if self.resampling not in Resampling.__members__:
            raise ConfigError(f"resampling must be a GDAL kernel such as nearest or bilinear, got {self.resampling!r}")


@dataclass(frozen=True)
class Scene:
    """A scene placed on the mosaic grid.

    Attributes:
        path: its file.
        index: its position in the given order (lower wins where scenes overlap).
        window: (row0, row1, col0, col1) of the grid covered by its bounds, clipped to the grid.
        offset: (row, col) of its first pixel on the grid when it lies on the grid's lattice (read as it is);
            None when it is warped.
    """

    path: str
    index: int
    window: tuple[int, int, int, int]
    offset: tuple[int, int] | None


@dataclass(frozen=True)
class MosaicPlan:
    """The mosaic grid, its scenes and its area of interest.

    Attributes:
        crs: grid CRS.
        transform: grid transform (square pixels, north up).
        width: grid columns.
        height: grid rows.
        count: bands (every scene has as many).
        dtype: data type (every scene has it).
        nodata: nodata value of the mosaic, or None (then an internal mask marks holes).
        use_mask: holes are marked by an internal mask (no nodata value and no alpha band).
        scenes: the scenes, in priority order.
        aoi: area of interest in the grid CRS (a shapely geometry).
        aoi_source: where the AOI came from, for provenance.
        seam_buffer: seam buffer, CRS units.
        resampling: kernel of warped scenes.
        descriptions: band descriptions of the first scene.
        colorinterp: colour interpretation of the first scene.
    """

    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    use_mask: bool
    scenes: tuple[Scene, ...]
    aoi: Any
    aoi_source: str
    seam_buffer: float = 0.0
    resampling: str = "nearest"
    descriptions: tuple[str | None, ...] = ()
    colorinterp: tuple[Any, ...] = ()

    @property
    def res(self) -> float:
        """Pixel size, CRS units."""
        return float(self.transform.a)

    @property
    def fill_value(self) -> float:
        """Value of pixels that no scene covers (nodata, or 0 under an internal mask or alpha)."""
        return 0.0 if self.nodata is None else float(self.nodata)

    @property
    def seam_margin(self) -> int:
        """Rows and columns read around a region so that its seam band is exact."""
        return math.ceil(self.seam_buffer / self.res) + 1 if self.seam_buffer > 0 else 0


# --- planning -----------------------------------------------------------------------------------------------


def _res_in(src: DatasetReader, crs: CRS) -> float:
    if src.crs == crs:
        return float(min(src.res))
    t, _, _ = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds)
    return float(min(abs(t.a), abs(t.e)))


def _bounds_in(src: DatasetReader, crs: CRS) -> tuple[float, float, float, float]:
    if src.crs == crs:
        return tuple(src.bounds)
    return transform_bounds(src.crs, crs, *src.bounds, densify_pts=21)  # type: ignore[no-any-return]


def footprint(src: DatasetReader, crs: CRS) -> Any:
    """Valid footprint of a scene (all bands valid) in `crs`, traced on a mask decimated to <= 1024 px a side.

    Returns:
        A shapely geometry (possibly empty).
    """
    import shapely
    from shapely.geometry import mapping, shape

    f = max(1, math.ceil(max(src.height, src.width) / _FOOTPRINT_PX))
    oh, ow = -(-src.height // f), -(-src.width // f)
    masks = src.read_masks(out_shape=(src.count, oh, ow), resampling=Resampling.nearest)
    valid = (masks > 0).all(axis=0)
    t = src.transform @ Affine.scale(src.width / ow, src.height / oh)
    geoms = [shape(g) for g, _ in shapes(valid.astype(np.uint8), mask=valid, transform=t)]
    poly = shapely.union_all(geoms) if geoms else shapely.Polygon()
    if src.crs != crs and not poly.is_empty:
        poly = shape(transform_geom(src.crs, crs, mapping(poly)))
    return poly


def read_aoi(path: str, layer: str | None, crs: CRS) -> Any:
    """The union of a vector file's polygons, in `crs`, repaired with make_valid.

    Raises:
        InputError: missing or unreadable file, unknown layer, no CRS, or no polygon.
    """
    import geopandas as gpd
    import shapely

    if not os.path.exists(path):
        raise InputError(f"--aoi file {path!r} does not exist; expected a polygon file (GeoPackage, GeoJSON, ...)")
    layers = vector_layers(path, "--aoi file", "polygons")
    if layer is not None and layer not in layers:
        raise InputError(f"--aoi file {path!r} has no layer {layer!r}; expected one of {layers}")
    frame = gpd.read_file(path, layer=layer or layers[0], engine="pyogrio")
    if frame.crs is None:
        raise InputError(f"--aoi file {path!r} has no CRS; expected one: set it with ogr2ogr -a_srs EPSG:XXXX")
    geoms = frame.to_crs(crs).geometry
    geoms = geoms[~(geoms.is_empty | geoms.isna())]
    aoi = shapely.make_valid(shapely.union_all(np.asarray(geoms.values))) if len(geoms) else shapely.Polygon()
    if aoi.is_empty or aoi.area <= 0:
        raise InputError(f"--aoi file {path!r} holds no polygon; expected the area of interest as polygons")
    return aoi


def _snap(
    bounds: Sequence[tuple[float, float, float, float]], res: float, anchor: tuple[float, float]
) -> tuple[Affine, int, int]:
    """Transform, width and height of a grid that covers every bounds, its corners on the lattice `anchor + k res`."""
    x0, y0 = anchor
    minx = min(b[0] for b in bounds)
    miny = min(b[1] for b in bounds)
    maxx = max(b[2] for b in bounds)
    maxy = max(b[3] for b in bounds)
    left = x0 + math.floor((minx - x0) / res + _EPS) * res
    top = y0 + math.ceil((maxy - y0) / res - _EPS) * res
    right = x0 + math.ceil((maxx - x0) / res - _EPS) * res
    bottom = y0 + math.floor((miny - y0) / res + _EPS) * res
    return Affine(res, 0.0, left, 0.0, -res, top), round((right - left) / res), round((top - bottom) / res)


def local_abspath(path: str | os.PathLike[str]) -> str:
    """An absolute path for a local file (workers may run in another folder); URLs and /vsi paths as they are."""
    path = os.fspath(path)
    if "://" in path or path.startswith("/vsi"):
        return path
    return os.path.abspath(os.path.expanduser(path))


def _near_int(v: float) -> bool:
    return abs(v - round(v)) <= _EPS


def _place(src: DatasetReader, index: int, crs: CRS, transform: Affine, width: int, height: int) -> Scene:
    """Where a scene lies on the grid, and whether it can be read without warping."""
    t, res = src.transform, transform.a
    dc, dr = (t.c - transform.c) / res, (transform.f - t.f) / res
    on_lattice = (
        src.crs == crs
        and t.b == 0
        and t.d == 0
        and abs(t.a - res) <= _EPS * res
        and abs(-t.e - res) <= _EPS * res
        and _near_int(dc)
        and _near_int(dr)
    )
    if on_lattice:
        r, c = round(dr), round(dc)
        window = (max(0, r), min(height, r + src.height), max(0, c), min(width, c + src.width))
        return Scene(src.name, index, window, (r, c))
    b = _bounds_in(src, crs)
    inv = ~transform
    c0, r0 = inv @ (b[0], b[3])
    c1, r1 = inv @ (b[2], b[1])
    window = (
        max(0, math.floor(r0 + _EPS)),
        min(height, math.ceil(r1 - _EPS)),
        max(0, math.floor(c0 + _EPS)),
        min(width, math.ceil(c1 - _EPS)),
    )
    return Scene(src.name, index, window, None)


def _check_alike(srcs: Sequence[DatasetReader]) -> None:
    first = srcs[0]
    for src in srcs[1:]:
        if src.count != first.count or src.dtypes[0] != first.dtypes[0]:
            raise InputError(
                f"scene {src.name!r} has {src.count} band(s) of {src.dtypes[0]} but {first.name!r} has "
                f"{first.count} of {first.dtypes[0]}; expected scenes with the same bands and data type"
            )


def plan_mosaic(
    paths: Sequence[str | os.PathLike[str]], mcfg: MosaicConfig | None = None, *, nodata: float | None = None
) -> MosaicPlan:
    """Open the scenes and lay out the mosaic grid, the scenes on it and the area of interest.

    Args:
        paths: the scenes, in priority order (the first valid one wins where they overlap).
        mcfg: grid, AOI and seam settings.
        nodata: nodata of the mosaic (None = the first scene's).

    Raises:
        InputError: a scene is missing, not a raster, not georeferenced, or unlike the first; bad --aoi.
        ConfigError: no scene.
    """
    mcfg = mcfg or MosaicConfig()
    if not paths:
        raise ConfigError("no scene given; expected one or more HR rasters")
    with contextlib.ExitStack() as stack:
        srcs = []
        for p in paths:
            src = stack.enter_context(open_raster(local_abspath(p), "scene"))
            require_crs(src, "scene")
            srcs.append(src)
        _check_alike(srcs)
        first = srcs[0]
        crs = CRS.from_user_input(mcfg.crs) if mcfg.crs else first.crs
        res = mcfg.res or min(_res_in(src, crs) for src in srcs)
        if mcfg.aoi:
            aoi, source = read_aoi(mcfg.aoi, mcfg.aoi_layer, crs), os.path.basename(mcfg.aoi)
        else:
            import shapely

            aoi = shapely.convex_hull(shapely.union_all([footprint(src, crs) for src in srcs]))
            source = "convex hull of the scenes' valid footprints"
        bounds = [_bounds_in(src, crs) for src in srcs] + ([tuple(aoi.bounds)] if not aoi.is_empty else [])
        anchor = (first.transform.c, first.transform.f) if first.crs == crs else (0.0, 0.0)
        transform, width, height = _snap(bounds, res, anchor)
        scenes = tuple(_place(src, i, crs, transform, width, height) for i, src in enumerate(srcs))
        nd = nodata if nodata is not None else first.nodata
        return MosaicPlan(
            crs=crs,
            transform=transform,
            width=width,
            height=height,
            count=first.count,
            dtype=first.dtypes[0],
            nodata=nd,
            use_mask=nd is None and alpha_band(first) is None,
            scenes=scenes,
            aoi=aoi,
            aoi_source=source,
            seam_buffer=mcfg.seam_buffer,
            resampling=mcfg.resampling,
            descriptions=tuple(first.descriptions),
            colorinterp=tuple(first.colorinterp),
        )


@dataclass(frozen=True)
class Strip:
    """Rows of one Dask task.

    Attributes:
        index: strip number, from the top.
        rows: (first, end) rows of its core, written to the mosaic.
        ext: (first, end) rows it composes and fills: the core plus a margin above and below.
    """

    index: int
    rows: tuple[int, int]
    ext: tuple[int, int]


def make_strips(plan: MosaicPlan, strip_rows: int, margin: int, quantum: int = 1) -> list[Strip]:
    """Cut the grid into strips whose composed rows start on the `quantum` lattice, with `margin` rows of context.

    Strip k > 0 composes from row k * step (step: `strip_rows` rounded to a multiple of `quantum`, at least one
    quantum) and its core starts `margin` rows below that; the first strip starts at row 0. Each core is followed
    by `margin` rows of context (fewer at the bottom of the grid).

    Args:
        plan: the mosaic.
        strip_rows: core rows wanted per strip.
        margin: rows of context above and below a core (at least one window, plus the mask buffer).
        quantum: the first composed row of every strip is a multiple of it.

    Returns:
        The strips, top to bottom; their cores tile the grid.
    """
    step = max(1, round(strip_rows / quantum)) * quantum
    starts = [0]
    while len(starts) * step + margin < plan.height:
        starts.append(len(starts) * step + margin)
    out = []
    for i, r0 in enumerate(starts):
        r1 = starts[i + 1] if i + 1 < len(starts) else plan.height
        e0 = 0 if i == 0 else r0 - margin
        out.append(Strip(i, (r0, r1), (e0, min(plan.height, r1 + margin))))
    return out


def strip_plan(plan: MosaicPlan, strip: Strip) -> MosaicPlan:
    """The plan restricted to what a strip needs: the scenes it touches and the AOI clipped to it."""
    import shapely

    s = plan.seam_margin
    r0, r1 = max(0, strip.ext[0] - s), min(plan.height, strip.ext[1] + s)
    scenes = tuple(sc for sc in plan.scenes if sc.window[0] < r1 and sc.window[1] > r0)
    t = plan.transform
    top, bottom = t.f + r0 * t.e, t.f + r1 * t.e
    aoi = shapely.clip_by_rect(plan.aoi, t.c, bottom, t.c + plan.width * t.a, top)
    return dataclasses.replace(plan, scenes=scenes, aoi=aoi)


# --- one strip (on a worker) --------------------------------------------------------------------------------


class _SceneReader:
    """Reads scenes over grid regions: windows of scenes on the lattice, WarpedVRT windows for the others."""

    def __init__(self, plan: MosaicPlan) -> None:
        self.plan = plan
        self.stack = contextlib.ExitStack()
        self.open: dict[int, Any] = {}

    def __enter__(self) -> _SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _dataset(self, scene: Scene) -> Any:
        if scene.index not in self.open:
            src = self.stack.enter_context(open_raster(scene.path, "scene"))
            if scene.offset is None:
                p = self.plan
                src = self.stack.enter_context(
                    WarpedVRT(
                        src,
                        crs=p.crs,
                        transform=p.transform,
                        width=p.width,
                        height=p.height,
                        resampling=Resampling[p.resampling],
                        add_alpha=True,  # 0 outside the scene and where it has no data
                    )
                )
            self.open[scene.index] = src
        return self.open[scene.index]

    def read(self, scene: Scene, region: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Values (count, rows, cols) and validity (rows, cols) of a scene over a grid region inside it."""
        r0, r1, c0, c1 = region
        ds = self._dataset(scene)
        count = self.plan.count
        if scene.offset is None:
            win = Window(c0, r0, c1 - c0, r1 - r0)
            vals = ds.read(list(range(1, count + 1)), window=win)
            valid = ds.read(count + 1, window=win) > 0
        else:
            win = Window(c0 - scene.offset[1], r0 - scene.offset[0], c1 - c0, r1 - r0)
            vals = ds.read(window=win)
            valid = (ds.read_masks(window=win) > 0).all(axis=0)
        if vals.dtype.kind == "f":
            valid &= np.isfinite(vals).all(axis=0)
        return vals, valid


def compose(plan: MosaicPlan, reader: _SceneReader, region: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The mosaic over a grid region: the first valid scene wins.

    Returns:
        Values (count, rows, cols) of the plan's dtype (fill value where no scene is valid) and the owner map
        (rows, cols) int32: the winning scene's index, -1 where none is valid.
    """
    rr0, rr1, cc0, cc1 = region
    data = np.full((plan.count, rr1 - rr0, cc1 - cc0), plan.fill_value, dtype=plan.dtype)
    owner = np.full((rr1 - rr0, cc1 - cc0), -1, dtype=np.int32)
    for scene in plan.scenes:
        w = scene.window
        r0, r1, c0, c1 = max(rr0, w[0]), min(rr1, w[1]), max(cc0, w[2]), min(cc1, w[3])
        if r0 >= r1 or c0 >= c1:
            continue
        sub = (slice(r0 - rr0, r1 - rr0), slice(c0 - cc0, c1 - cc0))
        free = owner[sub] < 0
        if not free.any():
            continue
        vals, valid = reader.read(scene, (r0, r1, c0, c1))
        take = valid & free
        data[(slice(None), *sub)][:, take] = vals[:, take]
        owner[sub][take] = scene.index
    return data, owner


def seam_band(owner: np.ndarray, aoi: np.ndarray, buffer: float, res: float) -> np.ndarray:
    """Pixels within `buffer` (CRS units, centre to centre) of a seam pixel.

    Seam pixels are the valid pixels inside the AOI with a 4-neighbour owned by another scene: both sides of
    each seamline.

    Returns:
        (rows, cols) bool.
    """
    valid = owner >= 0
    seam = np.zeros(owner.shape, dtype=bool)
    dx = (owner[:, 1:] != owner[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    seam[:, 1:] |= dx
    seam[:, :-1] |= dx
    dy = (owner[1:] != owner[:-1]) & valid[1:] & valid[:-1]
    seam[1:] |= dy
    seam[:-1] |= dy
    seam &= aoi
    if buffer <= 0 or not seam.any():
        return np.zeros(owner.shape, dtype=bool)
    return np.asarray(ndimage.distance_transform_edt(~seam, sampling=res) <= buffer)


def gap_codes(plan: MosaicPlan, owner: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """Codes of a region: KEEP, GAP (no scene, in the AOI), OUTSIDE (no scene, outside it), SEAM (seam band)."""
    r0, r1, c0, c1 = region
    shape = (r1 - r0, c1 - c0)
    if plan.aoi.is_empty:
        aoi = np.zeros(shape, dtype=bool)
    else:
        t = window_transform(Window(c0, r0, c1 - c0, r1 - r0), plan.transform)
        aoi = polygon_mask([plan.aoi], shape, t)
    valid = owner >= 0
    codes = np.where(valid, KEEP, np.where(aoi, GAP, OUTSIDE)).astype(np.uint8)
    if plan.seam_buffer > 0:
        codes[seam_band(owner, aoi, plan.seam_buffer, plan.res) & valid & aoi] = SEAM
    return codes


@dataclass
class StripResult:
    """What a strip task wrote.

    Attributes:
        strip: the strip.
        base: its composed mosaic (GeoTIFF over `strip.ext`).
        codes: its gap codes (uint8 GeoTIFF over `strip.ext`).
        filled: the fill engine's output, or None (nothing to fill, or no reference there).
        no_reference: the reference does not overlap the strip: its gap is left as it is.
        tags: the fill's provenance tags (empty when nothing was filled).
        seconds: wall time per stage ("compose", "fill").
    """

    strip: Strip
    base: str
    codes: str
    filled: str | None
    no_reference: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        """Every file the strip wrote."""
        out = [self.base, self.codes]
        if self.filled:
            out += [self.filled, self.filled + FILL_MASK_SUFFIX]
        return out


def _strip_profiles(plan: MosaicPlan, strip: Strip) -> tuple[dict[str, Any], dict[str, Any]]:
    r0, r1 = strip.ext
    common = {
        "driver": "GTiff",
        "width": plan.width,
        "height": r1 - r0,
        "crs": plan.crs,
        "transform": window_transform(Window(0, r0, plan.width, r1 - r0), plan.transform),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    # No nodata and no mask: the codes (the fill's mask raster) alone say what is gap, so a valid scene pixel equal
    # to the mosaic's nodata is no hole. (An alpha band of the scenes still marks holes, at the same pixels.)
    base = {**common, "count": plan.count, "dtype": plan.dtype, "nodata": None, "compress": "zstd"}
    base["zstd_level"] = 1
    codes = {**common, "count": 1, "dtype": "uint8", "compress": "deflate", "sparse_ok": True}
    return base, codes


def compose_strip(plan: MosaicPlan, strip: Strip, base: str, codes: str) -> bool:
    """Write a strip's composed mosaic and its gap codes, `_COLS` columns at a time.

    Returns:
        Whether the strip holds pixels to fill (GAP or SEAM).
    """
    base_profile, codes_profile = _strip_profiles(plan, strip)
    e0, e1 = strip.ext
    s = plan.seam_margin
    todo = False
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(base, "w", **base_profile) as dst,
        rasterio.open(codes, "w", **codes_profile) as cdst,
        _SceneReader(plan) as reader,
    ):
        _describe(dst, plan)
        for c0 in range(0, plan.width, _COLS):
            c1 = min(plan.width, c0 + _COLS)
            region = (max(0, e0 - s), min(plan.height, e1 + s), max(0, c0 - s), min(plan.width, c1 + s))
            data, owner = compose(plan, reader, region)
            code = gap_codes(plan, owner, region)
            core = (slice(e0 - region[0], e1 - region[0]), slice(c0 - region[2], c1 - region[2]))
            win = Window(c0, 0, c1 - c0, e1 - e0)
            dst.write(data[(slice(None), *core)], window=win)
            cdst.write(code[core][None], window=win)
            todo = todo or bool(((code[core] == GAP) | (code[core] == SEAM)).any())
    return todo


def _describe(dst: Any, plan: MosaicPlan) -> None:
    """Band descriptions and colour interpretation of the first scene (alpha stays alpha)."""
    with contextlib.suppress(Exception):  # GDAL refuses some combinations; they are cosmetic
        if plan.colorinterp:
            dst.colorinterp = plan.colorinterp
    for i, d in enumerate(plan.descriptions, start=1):
        if d:
            dst.set_band_description(i, d)


# --- what every strip shares, fitted once (here) ---------------------------------------------------------


@dataclass(frozen=True)
class MosaicFit:
    """What every strip shares, fitted once on the whole mosaic so that strips cannot disagree.

    Attributes:
        cfg: fill settings of the strips: method resolved (auto), windows fitted to the mosaic (fillnodata),
            and no nodata override (a strip's gap codes alone say what is gap).
        bands: HR bands filled, 1-based.
        sample: the sparse sample of the whole mosaic every strip prepares its filler on.
        shift: (dx, dy) reference shift, mosaic pixels ((0, 0) without --coregister).
        factor: mosaic pixels per cell of the reference's intermediate grid (1: warped directly).
    """

    cfg: FillConfig
    bands: tuple[int, ...]
    sample: TileBatch
    shift: tuple[float, float]
    factor: int

    @property
    def quantum(self) -> int:
        """Strips start on multiples of this: window stride, reference cell and gap-scan cell alike."""
        return math.lcm(self.cfg.tiles.stride, self.factor, _SCAN_CELL)

    @property
    def margin(self) -> int:
        """Rows of context around a strip's core: every window that touches a core pixel, and its mask buffer."""
        return self.cfg.tiles.size + self.cfg.mask_buffer


def _grid(plan: MosaicPlan, row0: int = 0, rows: int | None = None) -> Any:
    """A dataset-like view of mosaic rows [row0, row0 + rows) (what `RefGrid.build` reads of an HR raster)."""
    rows = plan.height - row0 if rows is None else rows
    transform = plan.transform @ Affine.translation(0, row0)
    bounds = BoundingBox(*array_bounds(rows, plan.width, transform))
    return SimpleNamespace(
        crs=plan.crs, transform=transform, width=plan.width, height=rows, bounds=bounds, name="the mosaic grid"
    )


def _filled_bands(plan: MosaicPlan, cfg: FillConfig) -> tuple[int, ...]:
    """The bands a strip fills: `cfg.indexes`, or every band but alpha (as `HrRaster.open` picks them)."""
    if cfg.indexes:
        return tuple(cfg.indexes)
    alpha = [i for i, ci in enumerate(plan.colorinterp, start=1) if ci == ColorInterp.alpha]
    return tuple(i for i in range(1, plan.count + 1) if i not in alpha[:1])


def _strip_cfg(plan: MosaicPlan, cfg: FillConfig, bands: int) -> FillConfig:
    """`cfg` with the method resolved and the windows fitted to the whole mosaic (as `fill_raster` would)."""
    method = cfg.method
    if method == "auto":
        from extendgan_geo.fillers.gan import model_fits

        method = "gan" if model_fits(cfg.model, bands) else "match"
        logger.info("method auto: %s", method)
    tiles = cfg.tiles
    if method == "fillnodata":  # its `min_tile`, capped by the mosaic (pipeline._fit_tiles, for the mosaic)
        from extendgan_geo.fillers.baselines import FillnodataFiller

        size = min(FillnodataFiller.min_tile, -(-max(plan.height, plan.width) // 16) * 16)
        if size > tiles.size:
            overlap = min(size // 2, max(tiles.overlap, size // 8))
            tiles = dataclasses.replace(tiles, size=size, overlap=overlap)
    return dataclasses.replace(cfg, method=method, tiles=tiles, nodata=None, mask_layer=None)


def _window_gap(
    plan: MosaicPlan, reader: _SceneReader, window: tuple[int, int, int, int], buffer: int
) -> tuple[np.ndarray, np.ndarray]:
    """Composed values and gap of a mosaic window, as a strip's fill engine sees them (holes, codes, buffer)."""
    r0, r1, c0, c1 = window
    outer = (max(0, r0 - buffer), min(plan.height, r1 + buffer), max(0, c0 - buffer), min(plan.width, c1 + buffer))
    s = plan.seam_margin
    region = (max(0, outer[0] - s), min(plan.height, outer[1] + s), max(0, outer[2] - s), min(plan.width, outer[3] + s))
    data, owner = compose(plan, reader, region)
    code = gap_codes(plan, owner, region)
    gap = (owner < 0) | (code == GAP) | (code == SEAM)
    gap = gap[outer[0] - region[0] : outer[1] - region[0], outer[2] - region[2] : outer[3] - region[2]]
    if buffer and gap.any():
        gap = np.asarray(ndimage.distance_transform_edt(~gap) <= buffer)
    a, b = r0 - outer[0], c0 - outer[2]
    crop = (slice(a, a + r1 - r0), slice(b, b + c1 - c0))
    ra, ca = r0 - region[0], c0 - region[2]
    return data[:, ra : ra + r1 - r0, ca : ca + c1 - c0], gap[crop]


def mosaic_sample(
    plan: MosaicPlan,
    ref: DatasetReader,
    cfg: FillConfig,
    bands: tuple[int, ...],
    ref_indexes: tuple[int, ...],
    shift: tuple[float, float],
    factor: int,
    tmpdir: str | None,
) -> TileBatch:
    """The sparse sample `fill_raster` takes of one scene (8 x 8 windows of 64 px), taken of the whole mosaic.

    Windows are composed as strips compose them; the reference is read through a `RefGrid` whose intermediate
    grid lies on the mosaic's (its first row a multiple of `factor`), moved by `shift`.
    """
    size, grid = 64, 8
    h, w = min(size, plan.height), min(size, plan.width)
    rows = sorted({int(v) for v in np.linspace(0, plan.height - h, grid)})
    cols = sorted({int(v) for v in np.linspace(0, plan.width - w, grid)})
    sel = [b - 1 for b in bands]
    hrs, refs, gaps, origins = [], [], [], []
    scale = 1.0  # the reference's pixel-size ratio (1 until a strip of it is read)
    with _SceneReader(plan) as reader:
        for r in rows:
            r_al = r - r % factor
            try:
                refgrid = RefGrid.build(
                    ref, _grid(plan, r_al, r + h - r_al), indexes=ref_indexes, nodata=cfg.ref_nodata,
                    resampling=cfg.resampling, shift=shift, tmpdir=tmpdir,
                )  # fmt: skip
            except GridMismatchError:  # the reference misses these rows
                refgrid = None
            scale = refgrid.scale if refgrid else scale
            try:
                for c in cols:
                    data, gap = _window_gap(plan, reader, (r, r + h, c, c + w), cfg.mask_buffer)
                    hr = data[sel].astype(np.float32)
                    hr[:, gap] = 0.0  # fillers never see what lies under the gap
                    hrs.append(hr)
                    gaps.append(gap[None])
                    nan = np.full((len(ref_indexes), h, w), np.nan, np.float32)
                    refs.append(refgrid.read(r - r_al, c, h, w) if refgrid else nan)
                    origins.append((r, c))
            finally:
                if refgrid:
                    refgrid.close()
    return TileBatch(np.stack(hrs), np.stack(refs), np.stack(gaps), np.array(origins, dtype=np.int64), scale)


def _overview(plan: MosaicPlan, path: str) -> tuple[float, float]:
    """Write the mosaic decimated to at most `_OVERVIEW_PX` a side (scenes averaged, internal mask) to `path`.

    Returns:
        Mosaic pixels per overview pixel along columns and rows.
    """
    f = max(1.0, max(plan.height, plan.width) / _OVERVIEW_PX)
    oh, ow = max(1, round(plan.height / f)), max(1, round(plan.width / f))
    sy, sx = plan.height / oh, plan.width / ow
    scenes = tuple(
        dataclasses.replace(
            sc,
            offset=None,
            window=(
                math.floor(sc.window[0] / sy),
                min(oh, math.ceil(sc.window[1] / sy)),
                math.floor(sc.window[2] / sx),
                min(ow, math.ceil(sc.window[3] / sx)),
            ),
        )
        for sc in plan.scenes
    )
    transform = plan.transform @ Affine.scale(sx, sy)
    small = dataclasses.replace(plan, transform=transform, width=ow, height=oh, scenes=scenes, resampling="average")
    with _SceneReader(small) as reader:
        data, owner = compose(small, reader, (0, oh, 0, ow))
    profile = {"driver": "GTiff", "width": ow, "height": oh, "count": plan.count, "dtype": plan.dtype}
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(path, "w", **profile, crs=plan.crs, transform=transform) as dst,
    ):
        dst.write(data)
        dst.write_mask(np.where(owner >= 0, 255, 0).astype(np.uint8))
    return sx, sy


def mosaic_shift(
    plan: MosaicPlan, ref: DatasetReader, bands: tuple[int, ...], ref_indexes: tuple[int, ...], cfg: FillConfig,
    folder: str,
) -> tuple[float, float]:  # fmt: skip
    """--coregister for the whole mosaic: the shift `estimate_shift` finds on its decimated composite.

    Raises:
        GridMismatchError: too few pixels are valid in both the mosaic and the reference.
    """
    from extendgan_geo.io.coregister import estimate_shift

    path = os.path.join(folder, "overview.tif")
    try:
        sx, sy = _overview(plan, path)
        hr = HrRaster.open(path, indexes=bands, nodata=None)
        try:
            dx, dy = estimate_shift(hr, ref, ref_indexes, nodata=cfg.ref_nodata)
        finally:
            hr.src.close()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    logger.info("co-registration of the mosaic: reference shift dx=%.2f px, dy=%.2f px", dx * sx, dy * sy)
    return dx * sx, dy * sy


def fit_mosaic(plan: MosaicPlan, ref: str, cfg: FillConfig, folder: str) -> MosaicFit:
    """Fit what every strip shares on the whole mosaic: method, windows, reference shift, filler sample.

    Args:
        plan: the mosaic.
        ref: the reference.
        cfg: the fill settings asked for.
        folder: where temporary files go.

    Raises:
        EganError: the reference or the settings do not fit the mosaic (bands, CRS, --coregister).
    """
    bands = _filled_bands(plan, cfg)
    strip_cfg = _strip_cfg(plan, cfg, len(bands))
    with open_raster(ref, "reference") as src:
        require_crs(src, "reference")
        ref_indexes = tuple(cfg.ref_indexes or default_ref_indexes(src, len(bands)))
        factor = _factor(src, _grid(plan))
        shift = (0.0, 0.0)
        if cfg.coregister:
            shift = mosaic_shift(plan, src, bands, ref_indexes, cfg, folder)
        sample = mosaic_sample(plan, src, strip_cfg, bands, ref_indexes, shift, factor, folder)
    return MosaicFit(strip_cfg, bands, sample, shift, factor)


def _misses(ref: str, path: str) -> bool:
    """Whether the reference's footprint is disjoint from a raster's (the only "no reference" case of a strip)."""
    with open_raster(ref, "reference") as src, rasterio.open(path) as dst:
        try:
            footprint_overlap(dst, src, "reference")
        except GridMismatchError:
            return True
    return False


def fill_strip(
    plan: MosaicPlan,
    strip: Strip,
    ref: str,
    cfg: FillConfig,
    folder: str,
    sample: TileBatch | None = None,
    shift: tuple[float, float] | None = None,
) -> StripResult:
    """Compose and fill one strip (a Dask task); the files go to `folder`.

    Args:
        plan: the plan (`strip_plan` of it is enough).
        strip: the strip.
        ref: the reference.
        cfg: fill settings (`MosaicFit.cfg`).
        folder: where the strip's files go.
        sample: the mosaic's sample the filler is prepared on (None: the strip's own, as `fill_raster` does).
        shift: the mosaic's reference shift (None: as `cfg.coregister` says, estimated on the strip).

    Raises:
        EganError: the fill engine refuses an input. A strip whose footprint the reference misses is not an
            error: its gap is left unfilled.
    """
    stem = os.path.join(folder, f"strip{strip.index:05d}")
    result = StripResult(strip, f"{stem}.base.tif", f"{stem}.codes.tif", None)
    with timed(result.seconds, "compose"):
        todo = compose_strip(plan, strip, result.base, result.codes)
    if not todo:
        return result
    if _misses(ref, result.base):
        result.no_reference = True
        return result
    filled = f"{stem}.filled.tif"
    out_cfg = OutputConfig(cog=False, overwrite=True, write_fill_mask=True)
    with timed(result.seconds, "fill"):
        fill_raster(result.base, ref, filled, cfg, out_cfg, mask=result.codes, sample=sample, shift=shift)
    result.filled = filled
    with rasterio.open(filled) as src:
        result.tags = dict(src.tags())
    return result


# --- assembly (here) ----------------------------------------------------------------------------------------


@dataclass
class MosaicResult:
    """What a mosaic run did.

    Attributes:
        output: path written.
        shape: (height, width) of the mosaic.
        scenes: scenes composed.
        strips: Dask tasks.
        gap_pixels: pixels of the AOI that no scene covers.
        seam_pixels: scene pixels in the seam buffer (regenerated).
        filled_pixels: gap and seam pixels that received a value.
        unfilled_pixels: gap and seam pixels left as they were (no reference).
        aoi: where the AOI came from.
        seconds: wall time per stage ("plan", "fit", "strips", "finalize", "total").
        fill_mask: path of the fill-mask sidecar, or None.
        cluster: what the strips ran on.
        shift: (dx, dy) reference shift applied to every strip, mosaic pixels (--coregister).
    """

    output: str
    shape: tuple[int, int]
    scenes: int
    strips: int
    gap_pixels: int = 0
    seam_pixels: int = 0
    filled_pixels: int = 0
    unfilled_pixels: int = 0
    aoi: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    fill_mask: str | None = None
    cluster: ClusterInfo | None = None
    shift: tuple[float, float] = (0.0, 0.0)

    def summary(self) -> str:
        """A few lines for people."""
        h, w = self.shape
        lines = [
            f"mosaic of {self.scenes} scene(s), {w}x{h} px, in {self.strips} strip(s); AOI: {self.aoi}",
            f"filled {self.filled_pixels:,} px: {self.gap_pixels:,} gap px (no scene) and {self.seam_pixels:,} "
            "seam-buffer px",
        ]
        lines += summary_tail(self.unfilled_pixels, self.shift, self.output, self.seconds)
        return "\n".join(lines)


class _Assembly:
    """The mosaic being written: a tiled temporary GeoTIFF and its fill mask, filled strip by strip."""

    def __init__(
        self, plan: MosaicPlan, bands: tuple[int, ...], tmp: str, tmp_mask: str, profile: dict[str, Any], cog: bool
    ) -> None:
        self.plan = plan
        self.bands = [b - 1 for b in bands]
        opts = dict(profile)
        if cog:  # re-encoded by the COG driver at the end: fast codec level here
            opts.update(compress="zstd", zstd_level=1)
        self.stack = contextlib.ExitStack()
        self.stack.enter_context(rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True))
        self.dst = self.stack.enter_context(rasterio.open(tmp, "w", **opts))
        _describe(self.dst, plan)
        mask_profile = _strip_profiles(plan, Strip(0, (0, plan.height), (0, plan.height)))[1]
        self.mdst = self.stack.enter_context(rasterio.open(tmp_mask, "w", **mask_profile))
        self.mdst.set_band_description(1, "0 kept, 1 filled, 2 gap left unfilled")
        self.counts = {"gap": 0, "seam": 0, "filled": 0, "unfilled": 0}
        self.tags: dict[str, str] = {}

    def close(self) -> None:
        self.stack.close()

    def add(self, res: StripResult) -> None:
        """Write a strip's core rows: its filled pixels, nodata again outside the AOI, and its fill codes."""
        if res.tags and not self.tags:
            self.tags = res.tags
        r0, r1 = res.strip.rows
        e0 = res.strip.ext[0]
        with contextlib.ExitStack() as stack:
            src = stack.enter_context(rasterio.open(res.filled or res.base))
            gsrc = stack.enter_context(rasterio.open(res.codes))
            fsrc = stack.enter_context(rasterio.open(res.filled + FILL_MASK_SUFFIX)) if res.filled else None
            for c0 in range(0, self.plan.width, _COLS):
                cw = min(self.plan.width, c0 + _COLS) - c0
                self._write(res, src, gsrc, fsrc, Window(c0, r0 - e0, cw, r1 - r0), Window(c0, r0, cw, r1 - r0))

    def _write(self, res: StripResult, src: Any, gsrc: Any, fsrc: Any, win: Window, out: Window) -> None:
        data = src.read(window=win)
        code = gsrc.read(1, window=win)
        todo = (code == GAP) | (code == SEAM)
        if fsrc is not None:
            fcode = fsrc.read(1, window=win)
        else:
            fcode = np.where(todo & res.no_reference, 2, 0).astype(np.uint8)
        outside = code == OUTSIDE
        data[:, outside] = self.plan.fill_value
        fcode[outside] = 0
        self._off_nodata(data, fcode == 1)
        self.dst.write(data, window=out)
        if self.plan.use_mask:  # valid: a scene pixel (kept or regenerated), or a gap pixel that was filled
            valid = (code == KEEP) | (code == SEAM) | (fcode == 1)
            self.dst.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=out)
        self.mdst.write(fcode[None], window=out)
        self.counts["gap"] += int((code == GAP).sum())
        self.counts["seam"] += int((code == SEAM).sum())
        self.counts["filled"] += int((fcode == 1).sum())
        self.counts["unfilled"] += int((fcode == 2).sum())

    def _off_nodata(self, data: np.ndarray, filled: np.ndarray) -> None:
        """Nudge filled values off the mosaic's nodata (strips have none, so their engine could not)."""
        nodata = self.plan.nodata
        if nodata is None or np.isnan(nodata) or not filled.any():
            return
        for b in self.bands:
            band = data[b]
            band[filled] = cast_to_dtype(band[filled], band.dtype, nodata)

    def finish(self, extra: dict[str, str]) -> None:
        """Write the provenance tags and close both files."""
        drop = {"EGAN_GAP_PIXELS", "EGAN_FILLED_PIXELS", "EGAN_UNFILLED_PIXELS", "EGAN_MASKS", "EGAN_FILL_MASK"}
        tags = {k: v for k, v in self.tags.items() if k.startswith("EGAN_") and k not in drop}
        tags.update(
            EGAN_VERSION=__version__,
            EGAN_GAP_PIXELS=str(self.counts["gap"] + self.counts["seam"]),
            EGAN_SEAM_PIXELS=str(self.counts["seam"]),
            EGAN_FILLED_PIXELS=str(self.counts["filled"]),
            EGAN_UNFILLED_PIXELS=str(self.counts["unfilled"]),
            **extra,
        )
        self.dst.update_tags(**tags)
        self.mdst.update_tags(EGAN_FILL_MASK="0=kept,1=filled,2=unfilled")
        self.close()


def _profile(plan: MosaicPlan, out_cfg: OutputConfig) -> dict[str, Any]:
    """The output profile of the fill engine (codec, blocks, --co) for the mosaic grid."""
    grid = SimpleNamespace(
        dtypes=(plan.dtype,) * plan.count,
        crs=plan.crs,
        transform=plan.transform,
        width=plan.width,
        height=plan.height,
        count=plan.count,
    )
    return output_profile(cast(Any, grid), out_cfg, nodata=plan.nodata)


def _reraise(exc: BaseException, strip: Strip) -> NoReturn:
    """Raise a strip's library error again, naming the strip."""
    if isinstance(exc, EganError):
        raise type(exc)(f"strip {strip.index} (rows {strip.rows[0]}-{strip.rows[1]}): {exc}") from exc
    raise exc


def fill_mosaic(
    scenes: Sequence[str | os.PathLike[str]],
    ref: str | os.PathLike[str],
    output: str | os.PathLike[str],
    cfg: FillConfig | None = None,
    out_cfg: OutputConfig | None = None,
    mcfg: MosaicConfig | None = None,
    *,
    where: Any = None,
    progress: Callable[[int, int], None] | None = None,
    on_cluster: Callable[[ClusterInfo], None] | None = None,
) -> MosaicResult:
    """Compose scenes into one mosaic and fill its gaps (and seams) in parallel row strips on Dask.

    Args:
        scenes: HR scenes, in priority order (the first valid one wins where they overlap).
        ref: the low-resolution reference covering the mosaic (a raster or a VRT).
        output: path of the mosaic (GeoTIFF or COG); its folder must exist.
        cfg: fill settings, as for `fill_raster` (`nodata` also sets the mosaic's nodata).
        out_cfg: output settings.
        mcfg: grid, AOI, seam buffer and strip settings.
        where: a `distributed.Client`, `batch.ClusterOptions`, or None (a 2-worker LocalCluster).
        progress: called with (strips advanced, strips in total) as strips complete.
        on_cluster: called once with the ClusterInfo when the cluster is up.

    Returns:
        A MosaicResult.

    Raises:
        EganError: bad input; nothing is written at `output` then.
    """
    t0 = time.perf_counter()
    cfg = dataclasses.replace(cfg or FillConfig(), mask_layer=None)
    out_cfg, mcfg = out_cfg or OutputConfig(), mcfg or MosaicConfig()
    output, ref = os.fspath(output), local_abspath(ref)  # absolute: workers may run in another folder
    sidecars = (FILL_MASK_SUFFIX,) if out_cfg.write_fill_mask else ()
    check_output(output, out_cfg, sidecars=sidecars)
    open_raster(ref, "reference").close()
    seconds: dict[str, float] = {}
    with timed(seconds, "plan"):
        plan = plan_mosaic(scenes, mcfg, nodata=cfg.nodata)
    profile = _profile(plan, out_cfg)
    folder = os.path.abspath(out_cfg.tmpdir or os.path.dirname(os.path.abspath(output)))
    workdir = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.", suffix=".strips", dir=folder)
    tmp, tmp_mask = temp_path(output, None, ".tif"), temp_path(output + FILL_MASK_SUFFIX, None, ".tif")
    try:
        with timed(seconds, "fit"):
            fit = fit_mosaic(plan, ref, cfg, workdir)
            strips = make_strips(plan, mcfg.strip_rows, fit.margin, fit.quantum)
        result = MosaicResult(
            output, (plan.height, plan.width), len(plan.scenes), len(strips), aoi=plan.aoi_source, shift=fit.shift
        )
        with removing_on_error(tmp, tmp_mask):
            with timed(seconds, "strips"):
                target = (tmp, tmp_mask, profile, out_cfg.cog)
                asm = _run_strips(
                    plan, strips, ref, fit, workdir, target, result,
                    where=where, progress=progress, on_cluster=on_cluster,
                )  # fmt: skip
            asm.finish(_mosaic_tags(plan, mcfg, ref, output, out_cfg, len(strips)))
            with timed(seconds, "finalize"):
                finalize(tmp, output, profile, cog=out_cfg.cog, tmpdir=None)  # next to the output: os.replace
                if out_cfg.write_fill_mask:
                    os.replace(tmp_mask, output + FILL_MASK_SUFFIX)
                    result.fill_mask = output + FILL_MASK_SUFFIX
    finally:
        _remove_tree(workdir)
    result.gap_pixels, result.seam_pixels = asm.counts["gap"], asm.counts["seam"]
    result.filled_pixels, result.unfilled_pixels = asm.counts["filled"], asm.counts["unfilled"]
    result.seconds = {**seconds, "total": time.perf_counter() - t0}
    logger.info("%s", result.summary())
    return result


def _remove_tree(path: str, seconds: float = 30.0) -> None:
    """Remove a folder that a cancelled strip may still be writing into.

    A strip already running when the mosaic fails is not stopped by Dask's cancel. The folder is first renamed, so
    from then on no file can be created under its old path (the strip's next write fails in the strip itself), and
    then removed, again until it is gone (a file created just before the rename can make one removal fail).
    """
    doomed = f"{path}.removing"
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return
    except OSError:
        doomed = path
    deadline = time.monotonic() + seconds
    while True:
        shutil.rmtree(doomed, ignore_errors=True)
        if not os.path.exists(doomed) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _run_strips(
    plan: MosaicPlan,
    strips: list[Strip],
    ref: str,
    fit: MosaicFit,
    workdir: str,
    target: tuple[str, str, dict[str, Any], bool],
    result: MosaicResult,
    *,
    where: Any,
    progress: Callable[[int, int], None] | None,
    on_cluster: Callable[[ClusterInfo], None] | None,
) -> _Assembly:
    """Submit the strips, write each into the mosaic as it completes; cancel the rest when one fails."""
    from distributed import as_completed
    from distributed import wait as distributed_wait

    with dask_client(where) as (client, info):
        result.cluster = info
        if on_cluster:
            on_cluster(info)
        sample = client.scatter(fit.sample)  # sent once, not with every task
        futures = {
            client.submit(fill_strip, strip_plan(plan, s), s, ref, fit.cfg, workdir, sample, fit.shift, pure=False): s
            for s in strips
        }
        asm = _Assembly(plan, fit.bands, *target)
        try:
            for future in as_completed(futures):  # type: ignore[no-untyped-call]
                try:
                    res = future.result()
                except Exception as exc:
                    _reraise(exc, futures[future])
                asm.add(res)
                for path in res.files:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
                if progress:
                    progress(1, len(strips))
        except BaseException:
            client.cancel(list(futures))
            # Strips already running are not stopped by cancel: let them finish before the caller removes their
            # folder, so nothing is written into it afterwards.
            with contextlib.suppress(Exception):
                distributed_wait(list(futures), timeout=120)  # type: ignore[no-untyped-call]
            asm.close()
            raise
    return asm


def _mosaic_tags(
    plan: MosaicPlan, mcfg: MosaicConfig, ref: str, output: str, out_cfg: OutputConfig, strips: int
) -> dict[str, str]:
    return {
        "EGAN_REFERENCE": os.path.basename(ref),
        "EGAN_MOSAIC_SCENES": ";".join(os.path.basename(s.path) for s in plan.scenes),
        "EGAN_MOSAIC_AOI": plan.aoi_source,
        "EGAN_MOSAIC_SEAM_BUFFER": f"{mcfg.seam_buffer:g}",
        "EGAN_MOSAIC_STRIPS": str(strips),
        "EGAN_FILL_MASK": os.path.basename(output + FILL_MASK_SUFFIX) if out_cfg.write_fill_mask else "none",
    }
