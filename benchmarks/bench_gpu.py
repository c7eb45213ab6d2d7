#!/usr/bin/env python
"""GPU throughput: generator tiles per second and a whole-scene `egan-fill --method gan` run on CUDA.

1. Generator alone: 256 x 256 four-band tiles per second of the shipped (bandwise, width 8) and the paper's
   (width 32) generator, batched, in fp32 and under bf16 autocast (CUDA events; median of `--repeats` timed
   batches after warm-up).
2. Whole scene: a `--size`^2 4-band uint16 scene with a cloud-like gap of `--gap` (bench_fill.py's generator,
   reference in EPSG:4326 at ~30 m) filled by the `egan-fill` CLI in a fresh process with the bundled model on
   CUDA, for each precision and batch size; windows per second = windows computed / wall time of the process.
   `--method match` on the same scene gives the engine's non-learned floor.

Usage: python benchmarks/bench_gpu.py --out /tmp/gpubench --json gpu.json
Needs a CUDA device; prints a Markdown table, which docs/benchmarks.md quotes with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_fill

from extendgan_geo.model.generator import PRESETS, Generator, GeneratorConfig


def tile_rate(g: Generator, batch: int, bf16: bool, repeats: int) -> float:
    """Four-band 256 x 256 tiles per second of `g` on CUDA, batch `batch`."""
    x = torch.randn(batch, 4, 256, 256, device="cuda")
    gap = torch.zeros(batch, 1, 256, 256, device="cuda")
    gap[..., 96:160] = 1
    times = []
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        for _ in range(3):
            g(x, x, gap)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            g(x, x, gap)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    return batch / statistics.median(times)


def generator_rates(batch: int, repeats: int) -> list[dict[str, Any]]:
    nets = {
        "default (bandwise, width 8)": GeneratorConfig(**PRESETS["bandwise"]),
        "paper (width 32)": GeneratorConfig(bands=4, ref_bands=4, width=32),
    }
    rows = []
    for name, cfg in nets.items():
        g = Generator(cfg).cuda().eval()
        for bf16 in (False, True):
            rate = tile_rate(g, batch, bf16, repeats)
            rows.append({"generator": name, "precision": "bf16" if bf16 else "fp32", "batch": batch, "tiles_s": rate})
            print(f"  {name:<28} {'bf16' if bf16 else 'fp32'} batch {batch}: {rate:8.1f} tiles/s", flush=True)
    return rows


def scene_runs(out: Path, size: int, gap: float, batches: list[int]) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    hr, ref = bench_fill.hr_path(out, size, gap), bench_fill.ref_path(out, size)
    facts = bench_fill.write_hr(hr, size, gap)
    bench_fill.write_ref(ref, size)
    print(f"  scene {size}^2, gap {facts.get('gap_fraction', gap):.2f}", flush=True)
    configs = [("match", ["--method", "match"])]
    for batch in batches:
        for precision in ("bf16", "fp32"):
            configs.append(
                (
                    f"gan {precision} batch {batch}",
                    ["--method", "gan", "--device", "cuda", "--precision", precision, "--batch-size", str(batch)],
                )
            )
    rows = []
    for label, extra in configs:
        # bench_fill's command line, launched as a module (a machine may lack the egan-fill console script).
        fill = bench_fill.fill_command(hr, ref, out / "filled.tif", cog=False, extra=extra)
        cmd = [sys.executable, "-m", "extendgan_geo.cli.main", *fill[1:]]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"  {label}: failed: {proc.stderr[-2000:]}", flush=True)
            continue
        result = json.loads(proc.stdout)
        seconds = result.get("seconds", {})
        windows = result["windows_computed"]
        row = {
            "run": label,
            "wall_s": wall,
            "windows": windows,
            "windows_total": result["windows_total"],
            "windows_s": windows / wall,
            "filler_s": seconds.get("filler"),
            "mpix_s": size * size / wall / 1e6,
        }
        rows.append(row)
        print(
            f"  {label:<22} {wall:6.2f} s  {windows} windows  {row['windows_s']:7.1f} windows/s  "
            f"filler {row['filler_s']} s",
            flush=True,
        )
    return rows


def render(res: dict[str, Any]) -> str:
    lines = [f"GPU: {res['gpu']}; torch {res['torch']}; CPU cores {res['cpus']}", ""]
    lines += ["| generator | precision | batch | tiles/s |", "|---|---|---|---|"]
    lines += [f"| {r['generator']} | {r['precision']} | {r['batch']} | {r['tiles_s']:.0f} |" for r in res["generator"]]
    lines += ["", "| scene run | wall s | windows | windows/s | filler s | MP/s |", "|---|---|---|---|---|---|"]
    for r in res["scene"]:
        filler = "" if r["filler_s"] is None else f"{r['filler_s']:.2f}"
        lines.append(
            f"| {r['run']} | {r['wall_s']:.2f} | {r['windows']}/{r['windows_total']} | {r['windows_s']:.1f} | "
            f"{filler} | {r['mpix_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=bench_fill.DEFAULT_OUT / "gpu")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--gap", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=64, help="generator-alone batch")
    parser.add_argument("--scene-batches", default="16,64", help="--batch-size values of the scene runs")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py: no CUDA device; expected a machine with an NVIDIA GPU")
    import os

    res: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    res["generator"] = generator_rates(args.batch, args.repeats)
    res["scene"] = scene_runs(args.out, args.size, args.gap, [int(b) for b in args.scene_batches.split(",")])
    text = render(res)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
