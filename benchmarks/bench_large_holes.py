"""Gain of the model over `match` by distance from the edge of a hole wider than a window.

Usage: python benchmarks/bench_large_holes.py [--data data/train] [--model PATH] [--tile 256] [--factors 3,6]

For each file: one 1024 px crop whose right half is missing (a 512 px wide hole, so with 256 px windows the windows
deep inside it hold no known pixel), a reference simulated at each scale factor, filled by `match` and `gan`
through the fill engine (`egan-fill evaluate`'s case runner). Prints, per factor and file, the gap PSNR gain of
gan over match in bands of distance from the hole's edge (docs/model.md, "Holes wider than a window").
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from extendgan_geo.config import TileConfig
from extendgan_geo.evaluate import EvalConfig, _crop_origins, _run_case
from extendgan_geo.io.raster import HrRaster

FILES = ["l8oli_224078_20200518_parana_30m_B2-B3-B4.tif", "l8oli_pensacola_cloudy_15m_B8-pan.tif"]
BANDS = ((0, 64), (64, 128), (128, 256), (256, 384), (384, 512))


def main() -> None:
    """Run every file and factor; print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/train")
    ap.add_argument("--model", default=None)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--factors", default="3,6")
    args = ap.parse_args()
    print("| factor | file | " + " | ".join(f"{lo}-{hi} px" for lo, hi in BANDS) + " |")
    print("|---|---|" + "---|" * len(BANDS))
    for f in (float(x) for x in args.factors.split(",")):
        for name in FILES:
            hr = HrRaster.open(os.path.join(args.data, name), indexes=None, nodata=None)
            cfg = EvalConfig(
                layouts=("right-half",),
                methods=("match", "gan"),
                model=args.model,
                crop=1024,
                cases=1,
                tiles=TileConfig(size=args.tile),
                device="cpu",
            )
            (r, c), *_ = _crop_origins(hr, 1024, 1, 0)
            with tempfile.TemporaryDirectory() as tmp:
                case = _run_case(hr, "hole", r, c, "right-half", f, None, None, cfg, ["match", "gan"], tmp)
            hr.src.close()
            truth = case.truth.astype(np.float64)
            span = np.percentile(truth, 99, axis=(1, 2)) - np.percentile(truth, 1, axis=(1, 2))
            edge = int(np.where(case.gap.any(axis=0))[0].min())
            gains = []
            for lo, hi in BANDS:
                cols = slice(edge + lo, edge + hi)
                psnr = {}
                for method in ("match", "gan"):
                    err = (case.outputs[method][:, :, cols].astype(np.float64) - truth[:, :, cols]) / span[
                        :, None, None
                    ]
                    psnr[method] = 10 * np.log10(1 / np.mean(err**2))
                gains.append(psnr["gan"] - psnr["match"])
            print(f"| {f:g} | {name[:24]} | " + " | ".join(f"{g:+.2f}" for g in gains) + " |")


if __name__ == "__main__":
    main()
