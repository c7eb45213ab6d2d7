#!/usr/bin/env python
"""Benchmark of `egan-fill batch`: jobs per minute on a Dask LocalCluster with 1 and 2 workers, and the overhead
of the Dask path against calling `fill_raster` directly.

The jobs are generated here: `--jobs` HR scenes of `--size` x `--size` px, 4-band uint16 at 1 m in UTM 50N
(tiled 512, ZSTD), each with ~10 % of its pixels in nodata discs, and one 8 m reference per scene in the same
CRS whose bands 2-5 carry the HR bands. Every job is `--method match`, written as a COG.

Configurations, each run `--repeats` times, interleaved (outputs removed before each run, so nothing is skipped):

* direct: `fill_raster` over the jobs in a loop, in this process;
* run_job: `extendgan_geo.batch.run_job` over the jobs in a loop, in this process (the batch job wrapper: signature,
  staging into a temporary GeoTIFF, tagging, COG conversion; no Dask);
* a CPU ceiling: the speed-up of 2 busy pure-Python processes over 1, before and after each run (what the
  machine can give in parallel now, whatever else runs on it);
* dask-1, dask-2: `run_batch` on a LocalCluster of 1 or 2 worker processes with 1 thread each, started, and the
  fill engine imported on its workers, before the clock starts (that start-up time is measured apart).

Usage:
    python benchmarks/bench_batch.py                     # 8 jobs of 1024 x 1024, median of 3 runs
    python benchmarks/bench_batch.py --jobs 4 --size 512 --repeats 1 --out /tmp/bb
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

HR_CRS = "EPSG:32650"
HR_ORIGIN = (440000.0, 3330000.0)


def field(size: int, seed: int) -> np.ndarray:
    """A smooth, textured 4-band field in [500, 3500] (float32, (4, size, size))."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    bands = []
    for b in range(4):
        f = 1500 + xx * (b + 1) / 4 + yy / 2 + 300 * np.sin(xx / (37 + 5 * b) + seed) * np.cos(yy / 53)
        bands.append(f + rng.normal(0, 10, (size, size)).astype(np.float32))
    return np.clip(np.stack(bands), 500, 3500)


def make_job(folder: Path, i: int, size: int) -> tuple[Path, Path]:
    """Write scene `i` (with nodata discs) and its 8x coarser reference; return their paths."""
    import rasterio
    from rasterio.transform import from_origin

    data = field(size, i)
    rng = np.random.default_rng(100 + i)
    yy, xx = np.mgrid[0:size, 0:size]
    gap = np.zeros((size, size), bool)
    for _ in range(6):  # ~10 % of the scene
        cy, cx = rng.integers(0, size, 2)
        gap |= (yy - cy) ** 2 + (xx - cx) ** 2 < (0.075 * size) ** 2
    hr = data.astype(np.uint16)
    hr[:, gap] = 0
    origin = (HR_ORIGIN[0] + i * size, HR_ORIGIN[1])
    hr_path = folder / f"hr{i:02d}.tif"
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 4,
        "dtype": "uint16",
        "nodata": 0,
        "crs": HR_CRS,
        "transform": from_origin(*origin, 1.0, 1.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "zstd",
        "predictor": 2,
    }
    with rasterio.open(hr_path, "w", **profile) as dst:
        dst.write(hr)
    f = 8
    coarse = data.reshape(4, size // f, f, size // f, f).mean(axis=(2, 4))
    ref = np.concatenate([np.full((1, *coarse.shape[1:]), 77.0), coarse * 0.8 + 150]).astype(np.float32)
    ref_path = folder / f"ref{i:02d}.tif"
    ref_profile = {
        "driver": "GTiff",
        "width": size // f,
        "height": size // f,
        "count": 5,
        "dtype": "float32",
        "crs": HR_CRS,
        "transform": from_origin(*origin, float(f), float(f)),
    }
    with rasterio.open(ref_path, "w", **ref_profile) as dst:
        dst.write(ref)
    return hr_path, ref_path


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def run_direct(jobs: list[Any]) -> float:
    from extendgan_geo.pipeline import fill_raster

    t0 = time.perf_counter()
    for job in jobs:
        fill_raster(job.hr, job.ref, job.out, job.cfg, job.out_cfg)
    return time.perf_counter() - t0


def run_wrapped(jobs: list[Any]) -> float:
    from extendgan_geo.batch import run_job

    t0 = time.perf_counter()
    for job in jobs:
        result = run_job(job)
        assert result.status == "done", result.error
    return time.perf_counter() - t0


def warm() -> None:
    """Import the fill engine on a worker (rasterio, GDAL, scipy): a one-time cost per worker process."""
    import extendgan_geo.pipeline  # noqa: F401


def run_dask(jobs: list[Any], client: Any) -> float:
    from extendgan_geo.batch import run_batch

    report = run_batch(jobs, client)
    assert report.counts()["done"] == len(jobs), report.table()
    return report.seconds


def spin(n: int) -> float:
    """Pure-Python busy work (no GIL release, no I/O); returns its own wall time."""
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i % 7
    return time.perf_counter() - t0


def cpu_ceiling(n: int = 20_000_000) -> float:
    """How many cores this process can get now: the work of 2 busy processes over the time of 1 (<= 2)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        one = pool.submit(spin, n).result()
        t0 = time.perf_counter()
        list(pool.map(spin, [n, n]))
        two = time.perf_counter() - t0
    return 2 * one / two


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/batch"))
    args = parser.parse_args()

    os.environ.setdefault("GDAL_CACHEMAX", "256")  # as the CLI sets it (inherited by the worker processes)
    from extendgan_geo.batch import ClusterOptions, dask_client
    from extendgan_geo.batch import make_job as batch_job

    inputs = args.out / "inputs"
    clear(inputs)
    pairs = [make_job(inputs, i, args.size) for i in range(args.jobs)]
    options = {"method": "match", "ref_bidx": (2, 3, 4, 5)}

    def jobs_in(folder: Path) -> list[Any]:
        clear(folder)
        rows = [{"hr": str(h), "ref": str(r), "out": str(folder / h.name)} for h, r in pairs]
        return [batch_job(row, f"job {i}", defaults=options) for i, row in enumerate(rows)]

    ceilings = [cpu_ceiling()]
    times: dict[str, list[float]] = {"direct": [], "run_job": [], "dask-1": [], "dask-2": []}
    starts: dict[str, list[float]] = {"dask-1": [], "dask-2": []}
    for rep in range(args.repeats):
        times["direct"].append(run_direct(jobs_in(args.out / "direct")))
        times["run_job"].append(run_wrapped(jobs_in(args.out / "run_job")))
        for workers in (1, 2):
            name = f"dask-{workers}"
            t0 = time.perf_counter()
            with dask_client(ClusterOptions(workers=workers, threads_per_worker=1, memory_limit="4GiB")) as (c, _):
                c.run(warm)
                starts[name].append(time.perf_counter() - t0)
                times[name].append(run_dask(jobs_in(args.out / name), c))
        ceilings.append(cpu_ceiling())
        print(f"run {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()), flush=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: 60 * args.jobs / v for k, v in med.items()}
    rows = [
        ("direct", "`fill_raster` loop, this process", "-"),
        ("run_job", "`run_job` loop, this process (no Dask)", "-"),
        ("dask-1", "`run_batch`, LocalCluster", "1 x 1 thread"),
        ("dask-2", "`run_batch`, LocalCluster", "2 x 1 thread"),
    ]
    lines = [
        f"{args.jobs} jobs of {args.size} x {args.size} px, 4-band uint16, ~10 % gap, `--method match`, COG output; "
        f"median of {args.repeats} run(s); {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s).",
        "",
        "| path | workers | wall (s) | jobs/min | vs direct | speed-up vs 1 worker |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, what, workers in rows:
        speed = f"{med['dask-1'] / med[key]:.2f}x" if key.startswith("dask") else "-"
        lines.append(
            f"| {what} | {workers} | {med[key]:.1f} | {rate[key]:.1f} | {med[key] / med['direct'] - 1:+.1%} | {speed} |"
        )
    start = {k: statistics.median(v) for k, v in starts.items()}
    lines += [
        "",
        f"LocalCluster start-up and the fill engine's imports on the workers (not in the wall times above): "
        f"{start['dask-1']:.1f}s with 1 worker, {start['dask-2']:.1f}s with 2.",
        f"CPU ceiling (2 busy processes / 1, measured before and after each run): median "
        f"{statistics.median(ceilings):.2f}x, range {min(ceilings):.2f}-{max(ceilings):.2f}x.",
    ]
    table = "\n".join(lines)
    print(table)
    results = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "seconds": times,
        "startup": starts,
        "cpu_ceiling": ceilings,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
