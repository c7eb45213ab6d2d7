"""Does --uncertainty point at the bad pixels? Correlation of the uncertainty raster with the actual error.

Usage: python benchmarks/bench_uncertainty.py [--data data/train] [--model PATH] [--factors 1.5,3,6,10]
       [--methods gan:local,gan:flips,match:local,match:fit]

For each validation raster, crop, scale factor and gap layout: punch the gap (as `egan-fill evaluate` does), fill
it with `--uncertainty` for each method:uncertainty-method pair, and report over the gap pixels the Spearman rank
correlation between the uncertainty and the absolute error (mean over bands), and the mean error of the 10 % most
uncertain pixels over that of the 50 % least uncertain (NaN correlation: an uncertainty constant over the gap).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from typing import cast

import numpy as np
import rasterio
from scipy.stats import spearmanr

from extendgan_geo.config import FillConfig, OutputConfig, UncertaintyKind
from extendgan_geo.evaluate import EvalConfig, _crop_origins, _run_case
from extendgan_geo.io.raster import HrRaster
from extendgan_geo.pipeline import fill_raster

FILES = ["l8oli_224078_20200518_parana_30m_B2-B3-B4.tif", "l8oli_pensacola_cloudy_30m_B2-B3-B4-B5.tif"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/train")
    ap.add_argument("--model", default=None)
    ap.add_argument("--factors", default="1.5,3,6,10")
    ap.add_argument("--cases", type=int, default=2)
    ap.add_argument("--methods", default="gan:local,gan:flips,match:local,match:fit", help="method:uncertainty pairs")
    ap.add_argument("--out", default="benchmarks/out/uncertainty.md", help="Markdown results file")
    args = ap.parse_args()
    pairs = [tuple(p.split(":")) for p in args.methods.split(",")]
    rows = []
    for name in FILES:
        hr = HrRaster.open(os.path.join(args.data, name), indexes=None, nodata=None)
        cfg = EvalConfig(layouts=("cloud",), methods=("match",), crop=256, cases=args.cases)
        for r, c in _crop_origins(hr, 256, args.cases, 0):
            for f in (float(x) for x in args.factors.split(",")):
                with tempfile.TemporaryDirectory() as tmp:
                    case = _run_case(hr, "u", r, c, "cloud", f, None, None, cfg, ["match"], tmp)
                    truth_file, ref_file, gap_file = (
                        os.path.join(tmp, "u", n) for n in ("truth.tif", "ref.tif", "gap.tif")
                    )
                    for method, kind in pairs:
                        out, unc = os.path.join(tmp, f"{method}.tif"), os.path.join(tmp, f"{method}.unc.tif")
                        fcfg = FillConfig(method=method, model=args.model, device="cpu")  # type: ignore[arg-type]
                        ocfg = OutputConfig(
                            cog=False, overwrite=True, uncertainty=unc, uncertainty_method=cast(UncertaintyKind, kind)
                        )
                        fill_raster(truth_file, ref_file, out, fcfg, ocfg, mask=gap_file)
                        with rasterio.open(out) as o, rasterio.open(unc) as u:
                            err = np.abs(o.read().astype(float) - case.truth).mean(axis=0)
                            spread = u.read(1)
                        g = case.gap & case.valid & np.isfinite(spread)
                        e, s = err[g], spread[g]
                        rho = spearmanr(s, e).statistic if np.ptp(s) > 0 else float("nan")
                        order = np.argsort(s)
                        top = e[order[int(0.9 * len(e)) :]].mean()
                        low = e[order[: len(e) // 2]].mean()
                        rows.append((name[:20], f, f"{method} {kind}", float(rho), float(top / max(low, 1e-9))))
        hr.src.close()
    lines = [
        "| method | cases | Spearman rho (median) | error ratio top 10 % / bottom 50 % (median) |",
        "|---|---|---|---|",
    ]
    for m in (f"{method} {kind}" for method, kind in pairs):
        sel = [x for x in rows if x[2] == m]
        rhos = [x[3] for x in sel if np.isfinite(x[3])]  # NaN: a constant uncertainty over the gap
        rho = statistics.median(rhos) if rhos else float("nan")
        ratio = statistics.median(x[4] for x in sel)
        lines.append(f"| {m} | {len(sel)} | {rho:.2f} | {ratio:.2f} |")
    lines += ["", "| file | factor | method | rho | ratio |", "|---|---|---|---|---|"]
    lines += [f"| {x[0]} | {x[1]:g} | {x[2]} | {x[3]:.2f} | {x[4]:.2f} |" for x in rows]
    print("\n".join(lines))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
