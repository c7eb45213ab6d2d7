"""Render side-by-side quick-look PNGs of rasters (percentile stretch shared across panels).

Usage: python examples/quicklook.py OUT.png A.tif [B.tif ...] [--bands 3,2,1] [--titles "a,b"] [--outline MASK.tif]

Used to make the before/after picture in the README from the bundled example.
"""

from __future__ import annotations

import argparse

import numpy as np
import rasterio
from PIL import Image, ImageDraw
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT


def read_rgb(path: str, bands: list[int], like: rasterio.io.DatasetReader | None) -> np.ndarray:
    """Read three bands as float (NaN = nodata), warped onto `like`'s grid when given."""
    with rasterio.open(path) as src:
        if like is not None and (src.crs != like.crs or src.transform != like.transform or src.shape != like.shape):
            with WarpedVRT(
                src,
                crs=like.crs,
                transform=like.transform,
                width=like.width,
                height=like.height,
                resampling=Resampling.nearest,
            ) as vrt:
                data = vrt.read(bands, masked=True)
        else:
            data = src.read(bands, masked=True)
    return np.ma.filled(data.astype(np.float64), np.nan)


def stretch(rgb: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    out = (rgb - lo[:, None, None]) / (hi - lo)[:, None, None]
    out = np.clip(np.nan_to_num(out, nan=0.0), 0, 1)
    return (np.moveaxis(out, 0, -1) * 255).astype(np.uint8)


def side_by_side(images: list[np.ndarray], titles: list[str], path: str | None, foot: int = 0) -> Image.Image:
    """Images in a row with a title over each, 8 px apart, `foot` px of room below; saved to `path` when given."""
    h, w = images[0].shape[:2]
    pad, top = 8, 22
    canvas = Image.new("RGB", (len(images) * (w + pad) + pad, h + top + pad + foot), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, title) in enumerate(zip(images, titles, strict=True)):
        x = pad + i * (w + pad)
        canvas.paste(Image.fromarray(img), (x, top))
        draw.text((x, 5), title, fill="black")
    if path:
        canvas.save(path, quality=88) if path.endswith(".jpg") else canvas.save(path, optimize=True)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("rasters", nargs="+")
    parser.add_argument("--bands", default="3,2,1")
    parser.add_argument("--ref-bands", default=None, help="bands for rasters whose name contains 'ref'")
    parser.add_argument("--titles", default=None)
    parser.add_argument(
        "--outline",
        default=None,
        help="fill-mask raster: outline the filled pixels (value 1) on the first panel",
    )
    parser.add_argument("--width", type=int, default=0, help="shrink the picture to this width, px")
    args = parser.parse_args()
    bands = [int(b) for b in args.bands.split(",")]
    ref_bands = [int(b) for b in args.ref_bands.split(",")] if args.ref_bands else bands
    with rasterio.open(args.rasters[0]) as first:
        panels = [read_rgb(p, ref_bands if "ref" in p.split("/")[-1] else bands, first) for p in args.rasters]
    lo = np.nanpercentile(panels[0], 2, axis=(1, 2))
    hi = np.nanpercentile(panels[0], 98, axis=(1, 2))
    images = []
    for path, panel in zip(args.rasters, panels, strict=True):
        if "ref" in path.split("/")[-1]:  # another sensor: its own stretch
            images.append(
                stretch(panel, np.nanpercentile(panel, 2, axis=(1, 2)), np.nanpercentile(panel, 98, axis=(1, 2)))
            )
        else:
            images.append(stretch(panel, lo, hi))
    if args.outline:
        with rasterio.open(args.outline) as src:
            filled = src.read(1) == 1
        edge = filled & ~np.pad(filled, 1, mode="edge")[2:, 1:-1] | filled & ~np.pad(filled, 1, mode="edge")[1:-1, 2:]
        images[0][edge] = (255, 0, 255)
    titles = args.titles.split(",") if args.titles else [p.split("/")[-1] for p in args.rasters]
    canvas = side_by_side(images, (titles + [""] * len(images))[: len(images)], None)
    if args.width and canvas.width > args.width:
        canvas = canvas.resize((args.width, round(canvas.height * args.width / canvas.width)), Image.LANCZOS)
    canvas.save(args.out, quality=88) if args.out.lower().endswith((".jpg", ".jpeg")) else canvas.save(args.out)


if __name__ == "__main__":
    main()
