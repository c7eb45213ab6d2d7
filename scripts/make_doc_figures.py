"""Regenerate the pictures of the README and docs from the bundled example and model (after a new model ships).

Usage: python scripts/make_doc_figures.py [--quality benchmarks/out/quality] [--work /tmp/egan_figures]

Fills examples/hr.tif with the bundled model (gan, with --uncertainty) and with `match`, then writes:
  docs/images/example_default.jpg   input with its gaps outlined | the model's fill (README)
  docs/images/coarse_steps.png      match | model in the 8x scene-edge wedge, 2x zoom (model card)
  docs/images/uncertainty.jpg       the fill | its local uncertainty (usage)
  docs/images/coarse_to_fine.png    the 8x wedge again with the reference averaged 4 x 4 (32x): match | model in
                                    one pass | model coarse to fine, 2x zoom (model card)
  docs/images/eval_panel.png        copied from a bench_quality run (--quality), NEON crop 0, cloud gap, 3x
Needs the `egan-fill` command of this checkout on PATH (pip install -e .).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import numpy as np
import rasterio
from PIL import Image, ImageDraw

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "examples"))

from quicklook import read_rgb, side_by_side, stretch  # noqa: E402

from extendgan_geo.figures import LUT  # noqa: E402

IMAGES = os.path.join(ROOT, "docs", "images")
EXAMPLE = os.path.join(ROOT, "examples")
BANDS = [3, 2, 1]  # the example's B2, B3, B4 as R, G, B


def fill(out: str, *extra: str, ref: str = f"{EXAMPLE}/ref.tif") -> None:
    """Run egan-fill on the bundled example."""
    args = ["egan-fill", f"{EXAMPLE}/hr.tif", "--ref", ref, "--ref-bidx", "3,2,1"]
    args += ["--mask", f"{EXAMPLE}/gaps.gpkg", "-o", out, "--overwrite", "-q", *extra]
    subprocess.run(args, check=True)


def main() -> None:
    """Fill the example and draw every picture."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", default="benchmarks/out/quality", help="output folder of bench_quality.py")
    ap.add_argument("--work", default="/tmp/egan_figures")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    gan, unc, match = (os.path.join(args.work, n) for n in ("gan.tif", "gan.unc.tif", "match.tif"))
    fill(gan, "--uncertainty", unc)
    fill(match, "--method", "match")
    with rasterio.open(f"{EXAMPLE}/hr.tif") as first:
        hr = read_rgb(f"{EXAMPLE}/hr.tif", BANDS, None)
        panels = {name: read_rgb(path, BANDS, first) for name, path in (("gan", gan), ("match", match))}
    lo, hi = np.nanpercentile(hr, 2, axis=(1, 2)), np.nanpercentile(hr, 98, axis=(1, 2))
    rgb = {name: stretch(p, lo, hi) for name, p in {"hr": hr, **panels}.items()}

    with rasterio.open(gan + ".fillmask.tif") as src:
        filled = src.read(1) == 1
    inp = rgb["hr"].copy()
    edge = filled & ~np.pad(filled, 1, mode="edge")[2:, 1:-1] | filled & ~np.pad(filled, 1, mode="edge")[1:-1, 2:]
    inp[edge] = (255, 0, 255)
    side_by_side(
        [inp, rgb["gan"]],
        [
            "input: nodata wedge + gaps.gpkg (cloud outlines and a seam strip)",
            "filled with the bundled model (reference: 240 m in EPSG:4326)",
        ],
        os.path.join(IMAGES, "example_default.jpg"),
    )

    # The 8x wedge at the top right, 2x zoom: match left, the model right.
    crop = (slice(0, 160), slice(320, 640))
    zoom = [Image.fromarray(rgb[n][crop]).resize((640, 320), Image.Resampling.NEAREST) for n in ("match", "gan")]
    canvas = Image.new("RGB", (1296, 320), "white")
    canvas.paste(zoom[0], (0, 0))
    canvas.paste(zoom[1], (656, 0))
    canvas.save(os.path.join(IMAGES, "coarse_steps.png"), optimize=True)

    with rasterio.open(unc) as src:
        u = src.read(1)
    gap = u > 0
    top = float(np.percentile(u[gap], 98))
    heat = LUT[(np.clip(u / top, 0, 1) * 255).astype(np.uint8)]
    heat[~gap] = (rgb["gan"][~gap] * 0.35).astype(np.uint8)
    canvas = side_by_side(
        [rgb["gan"], heat],
        [
            "filled (bundled model, reference 240 m)",
            "--uncertainty (local): brighter = doubt more; original pixels dimmed",
        ],
        None,
        foot=30,
    )
    bar = LUT[np.linspace(0, 255, 300).astype(np.uint8)][None].repeat(12, axis=0)
    x = 2 * 8 + heat.shape[1]
    canvas.paste(Image.fromarray(bar), (x, 22 + heat.shape[0] + 8))
    ImageDraw.Draw(canvas).text(
        (x + 310, 22 + heat.shape[0] + 8), f"0 .. {top:.0f} DN (98th percentile of the gap)", fill="black"
    )
    canvas.save(os.path.join(IMAGES, "uncertainty.jpg"), quality=85)

    coarse_to_fine(args.work, lo, hi)

    panel = os.path.join(args.quality, "neon_yell_2019_541000_4977000_crop_rgb_0p1m_nocrs", "c0-cloud-x3.png")
    if os.path.exists(panel):
        shutil.copy(panel, os.path.join(IMAGES, "eval_panel.png"))
    else:
        print(f"{panel} not found: run benchmarks/bench_quality.py first to refresh eval_panel.png", file=sys.stderr)
    print(f"wrote the pictures in {os.path.relpath(IMAGES)}")


def coarse_to_fine(work: str, lo: np.ndarray, hi: np.ndarray) -> None:
    """The wedge with a 32x reference (the example's, averaged 4 x 4): match, one pass, coarse to fine."""
    from affine import Affine
    from rasterio.enums import Resampling

    ref32 = os.path.join(work, "ref32.tif")
    with rasterio.open(f"{EXAMPLE}/ref.tif") as src:
        shape = (src.count, src.height // 4, src.width // 4)
        scale = Affine.scale(src.width / shape[2], src.height / shape[1])
        profile = src.profile | {"height": shape[1], "width": shape[2], "transform": src.transform * scale}
        data = src.read(out_shape=shape, resampling=Resampling.average)
    with rasterio.open(ref32, "w", **profile) as dst:
        dst.write(data)
    runs = {"match": ["--method", "match"], "one": ["--no-coarse-to-fine"], "c2f": []}
    for name, extra in runs.items():
        fill(os.path.join(work, f"ref32_{name}.tif"), *extra, ref=ref32)
    crop = (slice(0, 200), slice(400, 640))
    with rasterio.open(f"{EXAMPLE}/hr.tif") as first:
        zoom = [
            np.asarray(
                Image.fromarray(
                    stretch(read_rgb(os.path.join(work, f"ref32_{n}.tif"), BANDS, first), lo, hi)[crop]
                ).resize((480, 400), Image.Resampling.NEAREST)
            )
            for n in runs
        ]
    side_by_side(
        zoom,
        [
            "match (32x reference: 960 m)",
            "model, one pass (--no-coarse-to-fine)",
            "model, coarse to fine (default)",
        ],
        os.path.join(IMAGES, "coarse_to_fine.png"),
    )


if __name__ == "__main__":
    main()
