"""Quality per method on the validation files (split by file from the training ones), with `egan-fill evaluate`.

Usage: python benchmarks/bench_quality.py [--data data/train] [--out benchmarks/out/quality]
       [--methods match,reference,fillnodata,gan] [--model PATH] [--factors 1.5,3,6,10] [--cases 2]

Runs `evaluate` on each validation raster (simulated references at each scale factor, cloud and seam gaps),
then writes OUT/summary.md: every case, and the mean per method, gap pixels only. docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from extendgan_geo.config import TileConfig
from extendgan_geo.evaluate import TABLE_METRICS, EvalConfig, evaluate

# Never trained on (configs/default.toml lists them under val_hr); (file, rgb positions) -- georeferenced only.
VALIDATION = [
    ("l8oli_224078_20200518_parana_30m_B2-B3-B4.tif", (3, 2, 1)),
    ("l8oli_pensacola_cloudy_30m_B2-B3-B4-B5.tif", (3, 2, 1)),
    ("l7etm_raleigh-nc_2000_28p5m_B1-B2-B3-B4-B5-B7.tif", (3, 2, 1)),
    ("l8oli_pensacola_cloudy_15m_B8-pan.tif", (1,)),  # 1 band (panchromatic)
    ("neon_yell_2019_541000_4977000_crop_rgb_0p1m_nocrs.tif", (1, 2, 3)),  # uint8 RGB, no CRS
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/train")
    ap.add_argument("--out", default="benchmarks/out/quality")
    ap.add_argument("--methods", default="match,reference,fillnodata,gan")
    ap.add_argument("--model", default=None)
    ap.add_argument("--models", default="", help="comma-separated extra checkpoints, each scored under its file name")
    ap.add_argument("--factors", default="1.5,3,6,10")
    ap.add_argument("--layouts", default="cloud,seam")
    ap.add_argument("--cases", type=int, default=2)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--resampling", default=EvalConfig.resampling, help="reference warp kernel of every method")
    ap.add_argument("--no-heal", action="store_true", help="fill without edge healing")
    ap.add_argument("--no-coarse-to-fine", action="store_true", help="gan in one pass at every scale factor")
    ap.add_argument("--files", default="", help="comma-separated subset of the validation file names")
    args = ap.parse_args()
    extra = tuple(m for m in args.models.split(",") if m)
    methods = tuple(args.methods.split(","))
    rows = []
    t0 = time.perf_counter()
    chosen = [v for v in VALIDATION if not args.files or v[0] in args.files.split(",")]
    for name, rgb in chosen:
        path = os.path.join(args.data, name)
        cfg = EvalConfig(
            layouts=tuple(args.layouts.split(",")),
            factors=tuple(float(f) for f in args.factors.split(",")),
            methods=methods,
            model=args.model,
            models=extra,
            crop=args.crop,
            cases=args.cases,
            rgb=rgb,
            tiles=TileConfig(size=256, overlap=64),
            device="cpu",
            resampling=args.resampling,
            heal=not args.no_heal,
            coarse_to_fine=not args.no_coarse_to_fine,
        )
        out = os.path.join(args.out, os.path.splitext(name)[0])
        result = evaluate(path, out, cfg=cfg, progress=lambda n, f=name: print(f"{f}: {n}", flush=True))
        rows += [{**r, "file": name} for r in result.rows if r["region"] == "gap"]
    methods += tuple(os.path.splitext(os.path.basename(m))[0] for m in extra)
    seconds = time.perf_counter() - t0
    lines = [
        "# Quality on the validation files (gap pixels only)\n",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {seconds:.0f} s in all.\n",
        "\n## Mean over every case\n",
        "| method | cases | " + " | ".join(TABLE_METRICS) + " |",
        "|---|---|" + "---|" * len(TABLE_METRICS),
    ]
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        vals = [statistics.fmean(float(r[k]) for r in sel) for k in TABLE_METRICS]
        lines.append(f"| {m} | {len(sel)} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    lines += ["\n## Mean per scale factor\n", "| factor | " + " | ".join(f"{m} PSNR" for m in methods) + " |",
              "|---|" + "---|" * len(methods)]  # fmt: skip
    for f in sorted({float(r["factor"]) for r in rows}):
        cells = [statistics.fmean(float(r["psnr"]) for r in rows if r["method"] == m and float(r["factor"]) == f)
                 for m in methods]  # fmt: skip
        lines.append(f"| {f:g} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    for m in methods:
        if m == "match" or "match" not in methods:
            continue
        lines += [f"\n## {m} against match, per scale factor and gap layout\n", _against_match(rows, m)]
    lines += ["\n## Every case (PSNR dB / SSIM / seam)\n", "| file | case | " + " | ".join(methods) + " |",
              "|---|---|" + "---|" * len(methods)]  # fmt: skip
    for key in sorted({(r["file"], r["case"]) for r in rows}):
        cells = []
        for m in methods:
            r = next(x for x in rows if (x["file"], x["case"], x["method"]) == (*key, m))
            cells.append(f"{float(r['psnr']):.2f} / {float(r['ssim']):.3f} / {float(r['seam']):.2f}")
        lines.append(f"| {key[0][:24]} | {key[1]} | " + " | ".join(cells) + " |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def _against_match(rows: list[dict], method: str) -> str:
    """Markdown: per (factor, layout) and per file, the means of `method` and match, the gain and the wins."""

    def pick(sel: list[dict], m: str, key: str) -> list[float]:
        return [float(r[key]) for r in sorted(sel, key=lambda r: (r["file"], r["case"])) if r["method"] == m]

    def psnr(sel: list[dict]) -> tuple[list[float], list[float], list[float]]:
        """match's and the method's gap PSNR over the cases of `sel`, and the method's gain per case."""
        a, b = pick(sel, "match", "psnr"), pick(sel, method, "psnr")
        return a, b, [y - x for x, y in zip(a, b, strict=True)]

    head = ["| factor | gaps | match PSNR | PSNR | gain dB | min gain | match SSIM | SSIM | match SSIM-D | SSIM-D | "
            "match seam | seam | wins |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    out = head
    groups = sorted({(float(r["factor"]), r["layout"]) for r in rows})
    for factor, layout in [*groups, (None, None)]:
        sel = [r for r in rows if factor is None or (float(r["factor"]), r["layout"]) == (factor, layout)]
        a, b, gains = psnr(sel)
        cells = [statistics.fmean(pick(sel, m, k)) for k in ("ssim", "ssim_d", "seam") for m in ("match", method)]
        label = "all" if factor is None else f"{factor:g}"
        out.append(
            f"| {label} | {layout or 'all'} | {statistics.fmean(a):.2f} | {statistics.fmean(b):.2f} | "
            f"{statistics.fmean(gains):+.2f} | {min(gains):+.2f} | "
            + " | ".join(f"{c:.3f}" if i < 4 else f"{c:.2f}" for i, c in enumerate(cells))
            + f" | {sum(g > 0 for g in gains)}/{len(gains)} |"
        )
    out += ["", "| file | match PSNR | PSNR | gain dB | wins |", "|---|---|---|---|---|"]
    for name in sorted({r["file"] for r in rows}):
        a, b, gains = psnr([r for r in rows if r["file"] == name])
        out.append(
            f"| {name[:40]} | {statistics.fmean(a):.2f} | {statistics.fmean(b):.2f} | "
            f"{statistics.fmean(gains):+.2f} | {sum(g > 0 for g in gains)}/{len(gains)} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
