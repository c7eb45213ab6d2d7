#!/usr/bin/env python
"""Benchmarks of the `egan-fill` engine on synthetic scenes.

The scenes are generated here, cheaply and reproducibly, from one analytic multiband field:

* HR: a UTM (EPSG:32650) raster at 1 m, 4-band uint16, tiled 512, ZSTD + predictor 2, nodata 0 in the gap.
  It is written in 512-row strips, so a 16384 x 16384 scene is never held whole. The gap is a union of a few
  large discs (same centres for every gap fraction, radii scaled to reach the fraction).
* Reference: a Landsat-like 7-band uint16 raster at ~30 m in EPSG:4326, point-sampled from the smooth part of
  the same field with a per-band gain and bias; HR bands 1-4 pair with reference bands 2-5
  (`--ref-bidx 2,3,4,5`).

What is measured (every configuration `--repeats` times, runs of compared configurations interleaved, each run
in a fresh process under `/usr/bin/time -v`, input files in the page cache):

1. gap scaling: the same 4096 x 4096 scene with a 5 % and a 50 % gap, filled with `--method match` (CLI, with
   `--cog` and `--no-cog`) and with a compute-heavy stand-in filler (`ConvNetFiller`, a random-init torch conv
   net, through the library since the CLI cannot take a custom filler);
2. memory: peak RSS of the CLI on a 10 % gap at 4096 (repeated), 8192 and 16384 (one run each);
3. match throughput (scene megapixels per second), the per-stage `FillResult.seconds` and a cProfile top-15;
4. the share of wall time spent outside the filler stage when the filler is the stand-in.

Usage:
    python benchmarks/bench_fill.py all                 # everything: OUT/results.json and OUT/results.md
    python benchmarks/bench_fill.py all --big 0         # skip the 8192/16384 memory scenes
    python benchmarks/bench_fill.py gen --size 4096 --gap 0.05   # one scene only
    python benchmarks/bench_fill.py tile-cost           # per-tile cost of the stand-in filler
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import pstats
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extendgan_geo.fillers.base import TileBatch

HR_CRS = "EPSG:32650"  # UTM zone 50N
HR_ORIGIN = (440000.0, 3330000.0)  # upper-left corner, metres (~30.1 N, 116.4 E)
HR_RES = 1.0
HR_BANDS = 4
HR_BLOCK = 512
REF_CRS = "EPSG:4326"
REF_RES_M = 30.0
REF_BANDS = 7
REF_BIDX = "2,3,4,5"
# Reference band k (1-based) = gain * smooth HR band + bias; bands 2-5 carry HR bands 1-4.
REF_MAP: dict[int, tuple[int, float, float]] = {
    1: (0, 3.2, 6100.0),
    2: (0, 4.1, 5200.0),
    3: (1, 3.9, 5400.0),
    4: (2, 4.3, 5000.0),
    5: (3, 3.6, 5900.0),
    6: (3, 2.7, 6500.0),
    7: (2, 2.2, 7000.0),
}
DEFAULT_OUT = Path(__file__).resolve().parent / "out"
EGAN_FILL = str(Path(sys.executable).with_name("egan-fill"))
STAGES = ("sample", "read", "reference", "filler", "blend", "composite", "write", "finalize")
# "other" = total - sum of the stages: opening the inputs and warping the reference once (RefGrid.build).
ALL_STAGES = (*STAGES, "other")


# ----------------------------------------------------------------------------------------------------------
# The synthetic field and gaps
# ----------------------------------------------------------------------------------------------------------


def smooth_field(u: np.ndarray, v: np.ndarray, band: int) -> np.ndarray:
    """The smooth (reference-visible) part of HR band `band` (0-based) at u m east, v m south of the origin.

    `u` and `v` broadcast against each other; with u of shape (1, W) and v of shape (H, 1) the transcendental
    functions run on 1-D vectors only, so a strip costs a few array operations per pixel.

    Returns:
        float32 values in about [800, 3600] for scenes up to 16384 m.
    """
    k = band + 1
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    out = (1800.0 + 0.015 * k * u - 0.01 * v).astype(np.float32)
    out += (450.0 * np.sin(u / (610.0 + 37 * k))).astype(np.float32) * np.cos(v / (530.0 - 23 * k)).astype(np.float32)
    out += (250.0 * np.sin(u / (173.0 + 11 * k) + k)).astype(np.float32) * np.sin(v / (211.0 + 7 * k)).astype(
        np.float32
    )
    return out


def texture(u: np.ndarray, v: np.ndarray, band: int) -> np.ndarray:
    """Fine HR-only texture (periods of a few metres, invisible at 30 m), float32."""
    k = band + 1
    return (120.0 * np.sin(u / 6.3 + k)).astype(np.float32) * np.cos(v / (4.7 + 0.3 * k)).astype(np.float32)


@dataclass(frozen=True)
class Discs:
    """A union of discs in pixel units: centres (cy, cx) and radii."""

    cy: np.ndarray
    cx: np.ndarray
    r: np.ndarray

    def rows(self, start: int, stop: int, width: int) -> np.ndarray:
        """(stop - start, width) bool, True at pixel centres inside a disc."""
        out = np.zeros((stop - start, width), dtype=bool)
        for cy, cx, r in zip(self.cy, self.cx, self.r, strict=True):
            r0, r1 = max(start, int(cy - r) - 1), min(stop, int(cy + r) + 2)
            c0, c1 = max(0, int(cx - r) - 1), min(width, int(cx + r) + 2)
            if r0 >= r1 or c0 >= c1:
                continue
            yy = (np.arange(r0, r1, dtype=np.float64) + 0.5 - cy)[:, None]
            xx = (np.arange(c0, c1, dtype=np.float64) + 0.5 - cx)[None, :]
            out[r0 - start : r1 - start, c0:c1] |= yy * yy + xx * xx <= r * r
        return out


def make_discs(size: int, fraction: float, blobs: int, seed: int) -> Discs:
    """`blobs` discs whose union covers about `fraction` of a `size` x `size` scene.

    Centres and relative radii depend only on `seed` and `blobs`, so gaps of different fractions on the same
    scene are nested. The common radius scale is found by bisection on a 512 x 512 proxy grid.
    """
    if fraction <= 0:
        return Discs(np.zeros(0), np.zeros(0), np.zeros(0))
    rng = np.random.default_rng(seed)
    cy = rng.uniform(0.22, 0.78, blobs)
    cx = rng.uniform(0.22, 0.78, blobs)
    rel = rng.uniform(0.75, 1.25, blobs)
    n = 512
    g = (np.arange(n) + 0.5) / n
    d2 = [(g[:, None] - y) ** 2 + (g[None, :] - x) ** 2 for y, x in zip(cy, cx, strict=True)]

    def covered(scale: float) -> float:
        m = np.zeros((n, n), dtype=bool)
        for d, q in zip(d2, rel, strict=True):
            m |= d <= (scale * q) ** 2
        return float(m.mean())

    lo, hi = 0.0, 1.5
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if covered(mid) < fraction else (lo, mid)
    scale = 0.5 * (lo + hi)
    return Discs(cy * size, cx * size, rel * scale * size)


# ----------------------------------------------------------------------------------------------------------
# Writing the scenes
# ----------------------------------------------------------------------------------------------------------


def hr_path(out: Path, size: int, gap: float) -> Path:
    """File name of an HR scene."""
    return out / f"hr_{size}_gap{round(gap * 100):02d}.tif"


def ref_path(out: Path, size: int) -> Path:
    """File name of the reference of a scene size."""
    return out / f"ref_{size}.tif"


def write_hr(path: Path, size: int, gap: float, *, blobs: int = 3, seed: int = 7) -> dict[str, Any]:
    """Write a `size` x `size` 4-band uint16 HR scene with a disc gap (nodata 0), strip by strip.

    Returns:
        Facts about the file: gap pixels and fraction, seconds, bytes.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    t0 = time.perf_counter()
    discs = make_discs(size, gap, blobs, seed)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": HR_BANDS,
        "dtype": "uint16",
        "nodata": 0,
        "crs": HR_CRS,
        "transform": from_origin(*HR_ORIGIN, HR_RES, HR_RES),
        "tiled": True,
        "blockxsize": HR_BLOCK,
        "blockysize": HR_BLOCK,
        "compress": "zstd",
        "predictor": 2,
        "interleave": "pixel",
        "bigtiff": "if_safer",
    }
    u = ((np.arange(size) + 0.5) * HR_RES)[None, :]
    gap_pixels = 0
    tmp = path.with_suffix(".partial.tif")
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), rasterio.open(tmp, "w", **profile) as dst:
        for start in range(0, size, HR_BLOCK):
            stop = min(size, start + HR_BLOCK)
            rng = np.random.default_rng([seed, start])
            v = ((np.arange(start, stop) + 0.5) * HR_RES)[:, None]
            data = np.empty((HR_BANDS, stop - start, size), dtype=np.uint16)
            for b in range(HR_BANDS):
                f = smooth_field(u, v, b)
                f += texture(u, v, b)
                data[b] = f.astype(np.uint16)
                data[b] += rng.integers(0, 40, (stop - start, size), dtype=np.uint16)
            hole = discs.rows(start, stop, size)
            data[:, hole] = 0
            gap_pixels += int(hole.sum())
            dst.write(data, window=Window(0, start, size, stop - start))
            del data, hole
    os.replace(tmp, path)
    return {
        "path": str(path),
        "size": size,
        "gap_target": gap,
        "gap_pixels": gap_pixels,
        "gap_fraction": gap_pixels / size / size,
        "blobs": blobs,
        "seconds": time.perf_counter() - t0,
        "bytes": path.stat().st_size,
    }


def write_ref(path: Path, size: int, *, margin: int = 4) -> dict[str, Any]:
    """Write the Landsat-like reference (EPSG:4326, ~30 m, 7-band uint16, nodata 0) covering a `size` scene.

    Returns:
        Facts about the file.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.warp import transform as warp_transform
    from rasterio.warp import transform_bounds

    t0 = time.perf_counter()
    x0, y0 = HR_ORIGIN
    west, south, east, north = transform_bounds(
        HR_CRS, REF_CRS, x0, y0 - size * HR_RES, x0 + size * HR_RES, y0, densify_pts=51
    )
    lat = 0.5 * (south + north)
    dlat = REF_RES_M / 110_950.0
    dlon = REF_RES_M / (111_320.0 * math.cos(math.radians(lat)))
    west, north = west - margin * dlon, north + margin * dlat
    width = math.ceil((east + margin * dlon - west) / dlon)
    height = math.ceil((north - (south - margin * dlat)) / dlat)
    lons = west + (np.arange(width) + 0.5) * dlon
    lats = north - (np.arange(height) + 0.5) * dlat
    glon, glat = np.meshgrid(lons, lats)
    xs, ys = warp_transform(REF_CRS, HR_CRS, glon.ravel().tolist(), glat.ravel().tolist())
    u = np.asarray(xs).reshape(height, width) - x0
    v = y0 - np.asarray(ys).reshape(height, width)
    smooth = [smooth_field(u, v, b) for b in range(HR_BANDS)]
    data = np.empty((REF_BANDS, height, width), dtype=np.uint16)
    for k, (b, gain, bias) in REF_MAP.items():
        data[k - 1] = np.clip(np.rint(gain * smooth[b] + bias), 1, 65535).astype(np.uint16)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": REF_BANDS,
        "dtype": "uint16",
        "nodata": 0,
        "crs": REF_CRS,
        "transform": from_origin(west, north, dlon, dlat),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 2,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("coastal", "blue", "green", "red", "nir", "swir1", "swir2")
    return {
        "path": str(path),
        "shape": [height, width],
        "crs": REF_CRS,
        "res_deg": [dlon, dlat],
        "seconds": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------------------------------------
# The compute-heavy stand-in filler
# ----------------------------------------------------------------------------------------------------------


class ConvNetFiller:
    """A stand-in for a neural generator: a random-init torch conv net run on every window of the batch.

    Input channels: HR (gap zeroed), reference (NaN -> 0) and the gap, scaled to about [0, 1]; `depth` 3x3
    convolutions of `width` channels with ReLU; output = 1000 + 200 * net (so values are valid uint16).
    With width 64, depth 4 it costs 10.7 GFLOP per 256 x 256 window (~0.19 s on 2 EPYC cores). The numbers it
    produces mean nothing; only its cost matters.

    Args:
        bands: HR bands it predicts.
        ref_bands: reference bands it takes.
        width: channels of the hidden convolutions.
        depth: number of convolutions.
        threads: torch intra-op threads (None = torch's default).
        seed: weight initialisation seed.
    """

    name = "convnet-standin"
    tile: int | None = None
    model_hash = ""

    def __init__(
        self,
        bands: int,
        ref_bands: int,
        *,
        width: int = 64,
        depth: int = 4,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.bands: int | None = bands
        self.ref_bands: int | None = ref_bands
        layers: list[torch.nn.Module] = []
        c = bands + ref_bands + 1
        for _ in range(depth - 1):
            layers += [torch.nn.Conv2d(c, width, 3, padding=1), torch.nn.ReLU()]
            c = width
        layers.append(torch.nn.Conv2d(c, bands, 3, padding=1))
        self.net = torch.nn.Sequential(*layers).eval()
        self.torch = torch

    def flops_per_pixel(self) -> int:
        """Multiply-adds x 2 of the convolutions per output pixel."""
        return sum(2 * m.in_channels * m.out_channels * 9 for m in self.net if isinstance(m, self.torch.nn.Conv2d))

    def prepare(self, sample: TileBatch) -> None:
        """Nothing to fit."""

    def __call__(self, batch: TileBatch) -> np.ndarray:
        """Run the net over the batch.

        Returns:
            (N, bands, T, T) float32.
        """
        x = np.concatenate(
            [
                batch.hr / np.float32(4096.0),
                np.nan_to_num(batch.ref) / np.float32(16384.0),
                batch.gap.astype(np.float32),
            ],
            axis=1,
        ).astype(np.float32, copy=False)
        with self.torch.inference_mode():
            y: np.ndarray = self.net(self.torch.from_numpy(x)).numpy()
        return (np.float32(1000.0) + np.float32(200.0) * y).astype(np.float32, copy=False)


def tile_cost(width: int, depth: int, *, tile: int = 256, batch: int = 8, repeats: int = 3) -> dict[str, Any]:
    """Seconds per window of `ConvNetFiller` on random data (median of `repeats` batches after a warm-up)."""
    filler = ConvNetFiller(HR_BANDS, HR_BANDS, width=width, depth=depth)
    rng = np.random.default_rng(0)
    tb = TileBatch(
        hr=rng.uniform(0, 4000, (batch, HR_BANDS, tile, tile)).astype(np.float32),
        ref=rng.uniform(5000, 20000, (batch, HR_BANDS, tile, tile)).astype(np.float32),
        gap=rng.random((batch, 1, tile, tile)) < 0.5,
        origins=np.zeros((batch, 2), dtype=np.int64),
    )
    filler(tb)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        filler(tb)
        times.append((time.perf_counter() - t0) / batch)
    per = statistics.median(times)
    flops = filler.flops_per_pixel() * tile * tile
    return {
        "width": width,
        "depth": depth,
        "tile": tile,
        "batch": batch,
        "seconds_per_tile": per,
        "gflop_per_tile": flops / 1e9,
        "gflops": flops / per / 1e9,
        "torch_threads": filler.torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------------------------------------
# Running one fill in a fresh process
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured process."""

    label: str
    wall: float  # /usr/bin/time elapsed, whole process
    rss_kib: int  # /usr/bin/time maximum resident set size
    result: dict[str, Any]  # FillResult as a dict (seconds, windows, pixels)

    @property
    def seconds(self) -> dict[str, float]:
        """The FillResult per-stage seconds, plus "other" (total minus the named stages)."""
        s = dict(self.result["seconds"])
        s["other"] = s["total"] - sum(s.get(k, 0.0) for k in STAGES)
        return s


def _parse_time_v(text: str) -> tuple[float, int]:
    """Elapsed seconds and max RSS (KiB) from `/usr/bin/time -v` output."""
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))  # type: ignore[union-attr]
    el = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1)  # type: ignore[union-attr]
    wall = 0.0
    for part in el.split(":"):
        wall = wall * 60 + float(part)
    return wall, rss


def run_fill(
    label: str,
    hr: Path,
    ref: Path,
    output: Path,
    *,
    method: str,
    cog: bool,
    net: tuple[int, int],
    extra: Sequence[str] = (),
) -> Run:
    """Fill `hr` in a fresh process under `/usr/bin/time -v` and return its timings.

    `method` "match" runs the `egan-fill` CLI; "convnet" runs this script's `one` command, which calls
    `fill_raster` with `ConvNetFiller`.
    """
    timefile = output.with_suffix(".time.txt")
    if method == "match":
        cmd = [
            EGAN_FILL,
            str(hr),
            "--ref",
            str(ref),
            "--ref-bidx",
            REF_BIDX,
            "-o",
            str(output),
            "--overwrite",
            "--json",
            "-q",
            "--cog" if cog else "--no-cog",
            *extra,
        ]
    else:
        cmd = [
            sys.executable,
            __file__,
            "one",
            str(hr),
            str(ref),
            str(output),
            "--net-width",
            str(net[0]),
            "--net-depth",
            str(net[1]),
            "--cog" if cog else "--no-cog",
        ]
    proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(timefile), *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: {' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    wall, rss = _parse_time_v(timefile.read_text())
    timefile.unlink()
    result = json.loads(proc.stdout)
    run = Run(label, wall, rss, result)
    s = run.seconds
    print(
        f"  {label:<28} total {s['total']:7.2f}s  process {wall:7.2f}s  filler {s.get('filler', 0):7.2f}s  "
        f"windows {result['windows_computed']:>4}/{result['windows_total']}  rss {rss / 1024:7.1f} MiB",
        flush=True,
    )
    return run


def cmd_one(args: argparse.Namespace) -> None:
    """Worker: fill with the stand-in filler via the library and print the FillResult as JSON."""
    from dataclasses import asdict

    from extendgan_geo.config import FillConfig, OutputConfig
    from extendgan_geo.pipeline import fill_raster

    filler = ConvNetFiller(HR_BANDS, HR_BANDS, width=args.net_width, depth=args.net_depth)
    cfg = FillConfig(ref_indexes=tuple(int(b) for b in REF_BIDX.split(",")))
    out_cfg = OutputConfig(cog=args.cog, overwrite=True)
    result = fill_raster(args.hr, args.ref, args.output, cfg, out_cfg, filler=filler)
    print(json.dumps(asdict(result)))


# ----------------------------------------------------------------------------------------------------------
# Statistics and the report
# ----------------------------------------------------------------------------------------------------------


def stats(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[Run], pixels: int) -> dict[str, Any]:
    """Median/min/max of the totals, process walls, RSS and every stage over the runs of one configuration."""
    totals = [r.seconds["total"] for r in runs]
    stage_med = {k: statistics.median([r.seconds.get(k, 0.0) for r in runs]) for k in (*ALL_STAGES, "total")}
    non_filler = [r.seconds["total"] - r.seconds.get("filler", 0.0) for r in runs]
    return {
        "total": stats(totals),
        "process_wall": stats([r.wall for r in runs]),
        "rss_mib": stats([r.rss_kib / 1024 for r in runs]),
        "stages_median": stage_med,
        "outside_filler": stats(non_filler),
        "outside_filler_share": stats([nf / t for nf, t in zip(non_filler, totals, strict=True)]),
        "mp_per_s_total": stats([pixels / 1e6 / t for t in totals]),
        "mp_per_s_process": stats([pixels / 1e6 / r.wall for r in runs]),
        "windows_computed": runs[0].result["windows_computed"],
        "windows_total": runs[0].result["windows_total"],
        "gap_pixels": runs[0].result["gap_pixels"],
        "runs": [
            {"total": r.seconds["total"], "wall": r.wall, "rss_kib": r.rss_kib, "seconds": r.seconds} for r in runs
        ],
    }


def interleaved(configs: dict[str, dict[str, Any]], repeats: int) -> dict[str, list[Run]]:
    """Run each configuration `repeats` times, round-robin, so drifts of a shared machine hit all alike."""
    runs: dict[str, list[Run]] = {k: [] for k in configs}
    for i in range(repeats):
        for label, kw in configs.items():
            runs[label].append(run_fill(f"{label} #{i + 1}", **kw))
    return runs


def profile_run(hr: Path, ref: Path, output: Path, *, cog: bool) -> dict[str, str]:
    """cProfile one `egan-fill --method match` run in a fresh process (imports excluded).

    Returns:
        Top-15 tables by own time ("tottime") and by cumulative time ("cumulative").
    """
    prof = output.with_suffix(".prof")
    cmd = [
        sys.executable,
        __file__,
        "profile-one",
        str(prof),
        "--",
        str(hr),
        "--ref",
        str(ref),
        "--ref-bidx",
        REF_BIDX,
        "-o",
        str(output),
        "--overwrite",
        "-q",
        "--cog" if cog else "--no-cog",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    out: dict[str, str] = {}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(str(prof), stream=buf).strip_dirs().sort_stats(key).print_stats(15)
        text = buf.getvalue()
        out[key] = text[text.find("   ncalls") :].rstrip()
    return out


def cmd_profile_one(args: argparse.Namespace) -> None:
    """Worker: import everything the CLI needs, then cProfile one CLI call into `args.prof`."""
    import cProfile

    import rio_cogeo.cogeo  # noqa: F401  (imported here so that imports stay out of the profile)

    import extendgan_geo.fillers.match
    import extendgan_geo.pipeline  # noqa: F401
    from extendgan_geo.cli.main import cli

    prof = cProfile.Profile()
    prof.enable()
    try:
        cli_args = list(args.cli_args)
        cli.main(cli_args[1:] if cli_args[:1] == ["--"] else cli_args, standalone_mode=False)
    finally:
        prof.disable()
        prof.dump_stats(args.prof)


def environment() -> dict[str, Any]:
    """The machine and library versions."""
    import rasterio
    import rio_cogeo
    import scipy
    import torch

    import extendgan_geo

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "rio_cogeo": rio_cogeo.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "extendgan_geo": extendgan_geo.__version__,
    }


def _fmt(s: dict[str, float], unit: str = "s", digits: int = 2) -> str:
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def render_markdown(res: dict[str, Any]) -> str:
    """A Markdown summary of `results.json` (tables only; docs/benchmarks.md adds the discussion)."""
    lines: list[str] = []
    env = res["environment"]
    lines += ["## Environment", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    if "tile_cost" in res:
        tc = res["tile_cost"]
        lines += [
            "",
            f"Stand-in filler: width {tc['width']}, depth {tc['depth']}: {tc['gflop_per_tile']:.2f} GFLOP "
            f"and {tc['seconds_per_tile'] * 1000:.0f} ms per {tc['tile']} px window "
            f"({tc['gflops']:.1f} GFLOP/s, batch {tc['batch']}, {tc['torch_threads']} torch threads).",
        ]
    if "scenes" in res:
        lines += [
            "",
            "## Scenes",
            "",
            "| file | gap fraction | gap px | MiB | seconds to write |",
            "|---|---|---|---|---|",
        ]
        for s in res["scenes"]:
            lines.append(
                f"| {Path(s['path']).name} | {s['gap_fraction']:.4f} | {s['gap_pixels']:,} | "
                f"{s['bytes'] / 2**20:.0f} | {s['seconds']:.1f} |"
            )
    for name, group in res.get("groups", {}).items():
        lines += [
            "",
            f"## {name}",
            "",
            "| config | engine total (median, min-max) | process wall | windows | filler | outside filler "
            "(share) | MP/s (engine) | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, s in group.items():
            lines.append(
                f"| {label} | {_fmt(s['total'])} | {_fmt(s['process_wall'])} | {s['windows_computed']}/"
                f"{s['windows_total']} | {s['stages_median']['filler']:.2f}s | "
                f"{s['outside_filler']['median']:.2f}s ({100 * s['outside_filler_share']['median']:.1f} %) | "
                f"{s['mp_per_s_total']['median']:.1f} | "
                f"{s['rss_mib']['median']:.0f} |"
            )
        lines += [
            "",
            "Median seconds per stage:",
            "",
            "| config | " + " | ".join(ALL_STAGES) + " | total |",
            "|---" * (len(ALL_STAGES) + 2) + "|",
        ]
        for label, s in group.items():
            st = s["stages_median"]
            lines.append(f"| {label} | " + " | ".join(f"{st[k]:.2f}" for k in ALL_STAGES) + f" | {st['total']:.2f} |")
    if "ratios" in res:
        lines += ["", "## Ratios (same invocation, medians)", ""]
        lines += [f"- {k}: {v:.3f}" for k, v in res["ratios"].items()]
    if "profile" in res:
        for key, text in res["profile"].items():
            lines += ["", f"## cProfile top-15 by {key}", "", "```", text, "```"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------------------


def ensure_scene(out: Path, size: int, gap: float, scenes: list[dict[str, Any]], *, blobs: int) -> Path:
    """Write the HR scene and its size's reference if missing; return the HR path."""
    hr = hr_path(out, size, gap)
    if not ref_path(out, size).exists():
        print(f"writing {ref_path(out, size).name}", flush=True)
        write_ref(ref_path(out, size), size)
    if not hr.exists():
        print(f"writing {hr.name}", flush=True)
        info = write_hr(hr, size, gap, blobs=blobs)
        print(
            f"  gap {info['gap_fraction']:.4f}, {info['bytes'] / 2**20:.0f} MiB, {info['seconds']:.1f}s",
            flush=True,
        )
        scenes.append(info)
    return hr


def _ratio(g: dict[str, Any], num: str, den: str, *keys: str) -> float:
    """g[num][keys...] / g[den][keys...]."""
    a, b = g[num], g[den]
    for k in keys:
        a, b = a[k], b[k]
    return float(a) / float(b)


class Bench:
    """One `all` invocation: the scenes, the suites and what they measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.runs_dir = self.out / "runs"
        self.runs_dir.mkdir(exist_ok=True)
        self.net = (int(args.net_width), int(args.net_depth))
        self.size = int(args.size)
        self.scenes: list[dict[str, Any]] = []
        self.groups: dict[str, dict[str, Any]] = {}
        self.ratios: dict[str, float] = {}
        self.res: dict[str, Any] = {
            "environment": environment(),
            "args": {k: str(v) for k, v in vars(args).items() if k != "func"},
        }
        self.ref = ref_path(self.out, self.size)
        self.hr = {g: ensure_scene(self.out, self.size, g, self.scenes, blobs=args.blobs) for g in (0.05, 0.5, 0.1)}

    def kw(self, gap: float, method: str, cog: bool, name: str) -> dict[str, Any]:
        """Arguments of `run_fill` for the main scene."""
        return {
            "hr": self.hr[gap],
            "ref": self.ref,
            "output": self.runs_dir / f"{name}.tif",
            "method": method,
            "cog": cog,
            "net": self.net,
        }

    def match(self) -> None:
        """Suite 1 and 3 with `--method match`: 5 % and 50 % gap, `--cog` and `--no-cog`."""
        print("match: gap scaling and throughput", flush=True)
        configs = {
            f"match {round(g * 100)}% {m}": self.kw(g, "match", m == "cog", f"m{round(g * 100)}{m}")
            for m in ("cog", "no-cog")
            for g in (0.05, 0.5)
        }
        runs = interleaved(configs, self.args.repeats)
        g = {k: summarize(v, self.size**2) for k, v in runs.items()}
        self.groups[f"match, {self.size}x{self.size}"] = g
        for m in ("cog", "no-cog"):
            self.ratios[f"match {m}: time(5%) / time(50%)"] = _ratio(
                g, f"match 5% {m}", f"match 50% {m}", "total", "median"
            )

    def convnet(self) -> None:
        """Suites 1 and 4 with the stand-in filler."""
        print("stand-in filler: gap scaling and overhead", flush=True)
        modes = ("cog", "no-cog") if self.args.convnet_no_cog else ("cog",)
        configs = {
            f"convnet {round(g * 100)}% {m}": self.kw(g, "convnet", m == "cog", f"c{round(g * 100)}{m}")
            for m in modes
            for g in (0.05, 0.5)
        }
        runs = interleaved(configs, self.args.repeats)
        g = {k: summarize(v, self.size**2) for k, v in runs.items()}
        self.groups[f"stand-in filler, {self.size}x{self.size}"] = g
        for m in modes:
            a, b = f"convnet 5% {m}", f"convnet 50% {m}"
            self.ratios[f"convnet {m}: time(5%) / time(50%)"] = _ratio(g, a, b, "total", "median")
            self.ratios[f"convnet {m}: filler stage(5%) / filler stage(50%)"] = _ratio(
                g, a, b, "stages_median", "filler"
            )
        self.ratios["windows(5%) / windows(50%)"] = _ratio(g, "convnet 5% cog", "convnet 50% cog", "windows_computed")

    def memory(self) -> None:
        """Suite 2: peak RSS on a 10 % gap, main scene repeated, big scenes once each (deleted after)."""
        print("memory: 10% gap", flush=True)
        base = f"match 10% {self.size} cog"
        runs = interleaved({base: self.kw(0.1, "match", True, "mem_main")}, self.args.repeats)
        mem: dict[str, Any] = {k: summarize(v, self.size**2) for k, v in runs.items()}
        for big in self.args.big:
            hr = ensure_scene(self.out, big, 0.10, self.scenes, blobs=self.args.blobs)
            for cog in (True, False) if self.args.big_no_cog else (True,):
                label = f"match 10% {big} {'cog' if cog else 'no-cog'}"
                o = self.runs_dir / f"mem_{big}_{'c' if cog else 'n'}.tif"
                run = run_fill(label, hr, ref_path(self.out, big), o, method="match", cog=cog, net=self.net)
                mem[label] = summarize([run], big * big)
                for p in (o, Path(str(o) + ".fillmask.tif")):
                    p.unlink(missing_ok=True)
            if not self.args.keep_big:
                hr.unlink()
                ref_path(self.out, big).unlink()
        self.groups["memory, 10% gap"] = mem
        for label in mem:
            self.ratios[f"peak RSS {label} / {base}"] = _ratio(mem, label, base, "rss_mib", "median")

    def profile(self) -> None:
        """cProfile of one match run on the 50 % scene, `--cog` and `--no-cog`."""
        print("profile", flush=True)
        self.res["profile"] = {}
        for cog in (True, False):
            mode = "cog" if cog else "no-cog"
            tables = profile_run(self.hr[0.5], self.ref, self.runs_dir / f"profile_{mode}.tif", cog=cog)
            for key, text in tables.items():
                self.res["profile"][f"{key}, match 50% {self.size} {mode}"] = text

    def report(self, seconds: float) -> None:
        """Write OUT/results.json and OUT/results.md and print the Markdown."""
        self.res.update(scenes=self.scenes, groups=self.groups, ratios=self.ratios, benchmark_seconds=seconds)
        (self.out / "results.json").write_text(json.dumps(self.res, indent=2, default=str))
        md = render_markdown(self.res)
        (self.out / "results.md").write_text(md)
        print(md)
        print(f"benchmark took {seconds:.0f}s; results in {self.out}", flush=True)


def cmd_all(args: argparse.Namespace) -> None:
    """Generate the scenes, run the chosen suites and write OUT/results.json and OUT/results.md."""
    t0 = time.perf_counter()
    tc = tile_cost(args.net_width, args.net_depth)
    print(f"stand-in filler: {tc['seconds_per_tile'] * 1000:.0f} ms/window", flush=True)
    bench = Bench(args)
    print(json.dumps(bench.res["environment"]), flush=True)
    bench.res["tile_cost"] = tc
    for suite in ("match", "convnet", "memory", "profile"):
        if suite in args.suites:
            getattr(bench, suite)()
    bench.report(time.perf_counter() - t0)


def _rss_kib() -> int:
    """Current resident set size of this process, KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cmd_rss_trace(args: argparse.Namespace) -> None:
    """Fill one scene with `--method match` in this process and report the peak RSS reached in each stage.

    A thread samples VmRSS every `--interval` s; `extendgan_geo.pipeline._timed` is wrapped (in this process
    only) so each sample is tagged with the stage running then ("untimed" outside the timed stages: opening
    inputs, the reference warp, accumulator growth, closing the temporary file).
    """
    import contextlib
    import threading
    from collections.abc import Iterator

    import extendgan_geo.pipeline as pipeline
    from extendgan_geo.config import FillConfig, OutputConfig

    stage = ["untimed"]
    peaks: dict[str, int] = {}
    original = pipeline._timed

    @contextlib.contextmanager
    def tagged(seconds: dict[str, float], name: str) -> Iterator[None]:
        previous, stage[0] = stage[0], name
        try:
            with original(seconds, name):
                yield
        finally:
            stage[0] = previous

    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss, where = _rss_kib(), stage[0]
            peaks[where] = max(peaks.get(where, 0), rss)
            time.sleep(args.interval)

    base = _rss_kib()
    pipeline._timed = tagged  # type: ignore[assignment]
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        cfg = FillConfig(ref_indexes=tuple(int(b) for b in REF_BIDX.split(",")))
        result = pipeline.fill_raster(args.hr, args.ref, args.output, cfg, OutputConfig(cog=args.cog, overwrite=True))
    finally:
        stop.set()
        thread.join()
        pipeline._timed = original
    report = {
        "hr": args.hr,
        "cog": args.cog,
        "rss_before_fill_mib": base / 1024,
        "peak_rss_mib_by_stage": {k: round(v / 1024, 1) for k, v in sorted(peaks.items(), key=lambda kv: -kv[1])},
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
    }
    print(json.dumps(report, indent=2))


def cmd_cog_variants(args: argparse.Namespace) -> None:
    """Time ways of turning a filled GeoTIFF into a COG (what the engine's finalize stage does, and others).

    The input is first copied to a ZSTD level-1 temporary file, like the engine's temporary file with --cog.
    """
    import rasterio
    import rasterio.shutil
    from rio_cogeo.cogeo import cog_translate

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "cogvar_tmp.tif"
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
        rasterio.shutil.copy(
            args.src,
            tmp,
            driver="GTiff",
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="zstd",
            zstd_level=1,
            predictor=2,
            num_threads="all_cpus",
        )
    base = {
        "driver": "GTiff",
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "interleave": "pixel",
        "compress": "zstd",
        "predictor": 2,
        "bigtiff": "if_safer",
    }

    def rio_cogeo(level: int | None, resampling: Any) -> None:
        profile = dict(base, **({"zstd_level": level} if level else {}))
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_TIFF_INTERNAL_MASK=True, GDAL_CACHEMAX=256):
            cog_translate(
                str(tmp),
                str(out / "cogvar_out.tif"),
                profile,
                nodata=0,
                overview_resampling=resampling,
                use_cog_driver=False,
                in_memory=False,
                forward_band_tags=True,
                forward_ns_tags=True,
                quiet=True,
                temporary_compression="ZSTD",
                allow_intermediate_compression=True,
            )

    def gdal_cog(level: int, resampling: str) -> None:
        with rasterio.Env(GDAL_CACHEMAX=256):
            rasterio.shutil.copy(
                tmp,
                out / "cogvar_out.tif",
                driver="COG",
                compress="ZSTD",
                level=level,
                predictor="YES",
                blocksize=512,
                overview_resampling=resampling,
                num_threads="ALL_CPUS",
                bigtiff="IF_SAFER",
            )

    variants: dict[str, Callable[[], None]] = {
        "rio-cogeo as in finalize (ZSTD default level 9, average overviews)": lambda: rio_cogeo(None, "average"),
        "rio-cogeo, ZSTD level 1": lambda: rio_cogeo(1, "average"),
        "rio-cogeo, ZSTD level 1, nearest overviews": lambda: rio_cogeo(1, "nearest"),
        "GDAL COG driver, ZSTD level 9, average": lambda: gdal_cog(9, "AVERAGE"),
        "GDAL COG driver, ZSTD level 1, average": lambda: gdal_cog(1, "AVERAGE"),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    sizes: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            sizes[name] = (out / "cogvar_out.tif").stat().st_size
    tmp.unlink()
    (out / "cogvar_out.tif").unlink()
    report = {k: {**stats(v), "mib": round(sizes[k] / 2**20, 1)} for k, v in times.items()}
    print(json.dumps({"src": args.src, "seconds": report}, indent=2))


def cmd_read_align(args: argparse.Namespace) -> None:
    """Read the top `--rows-total` rows of a raster in full-width strips of several heights; print MP/s.

    The engine reads in strips of one window stride (192 rows by default) from files tiled 512: this shows what
    that costs against block-aligned strips.
    """
    import rasterio
    from rasterio.windows import Window

    report: dict[str, float] = {}
    for threads in ("ALL_CPUS", "1"):
        for rows in args.rows:
            with rasterio.Env(GDAL_CACHEMAX=256, GDAL_NUM_THREADS=threads), rasterio.open(args.src) as src:
                total = min(args.rows_total, src.height)
                t0 = time.perf_counter()
                for r in range(0, total, rows):
                    src.read(window=Window(0, r, src.width, min(rows, total - r)))
                report[f"{rows} rows, GDAL_NUM_THREADS={threads}"] = (
                    total * src.width / 1e6 / (time.perf_counter() - t0)
                )
    print(json.dumps({"src": args.src, "mp_per_s": report}, indent=2))


def cmd_gen(args: argparse.Namespace) -> None:
    """Generate one scene (and its reference)."""
    args.out.mkdir(parents=True, exist_ok=True)
    scenes: list[dict[str, Any]] = []
    ensure_scene(args.out, args.size, args.gap, scenes, blobs=args.blobs)
    print(json.dumps(scenes, indent=2))


def cmd_tile_cost(args: argparse.Namespace) -> None:
    """Print the per-window cost of the stand-in filler."""
    print(json.dumps(tile_cost(args.net_width, args.net_depth), indent=2))


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip() and int(s) > 0]


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for scenes and outputs [%(default)s]")
        sp.add_argument("--blobs", type=int, default=3, help="discs in the gap [%(default)s]")
        sp.add_argument("--net-width", type=int, default=64, help="stand-in filler channels [%(default)s]")
        sp.add_argument("--net-depth", type=int, default=4, help="stand-in filler convolutions [%(default)s]")

    a = sub.add_parser("all", help="generate scenes and run the suites")
    common(a)
    a.add_argument("--size", type=int, default=4096, help="edge of the main scene, px [%(default)s]")
    a.add_argument("--repeats", type=int, default=3, help="runs per configuration [%(default)s]")
    a.add_argument(
        "--big",
        type=_sizes,
        default=[8192, 16384],
        help="comma-separated edges of the memory-only scenes, one run each; 0 = none [8192,16384]",
    )
    a.add_argument("--big-no-cog", action="store_true", help="also run the big scenes with --no-cog")
    a.add_argument("--convnet-no-cog", action="store_true", help="also run the stand-in filler with --no-cog")
    a.add_argument("--keep-big", action="store_true", help="keep the big scenes after measuring")
    a.add_argument(
        "--suites",
        type=lambda s: set(s.split(",")),
        default={"match", "convnet", "memory", "profile"},
        help="comma-separated subset of match,convnet,memory,profile [all]",
    )
    a.set_defaults(func=cmd_all)

    g = sub.add_parser("gen", help="generate one scene and its reference")
    common(g)
    g.add_argument("--size", type=int, default=4096)
    g.add_argument("--gap", type=float, default=0.1, help="gap fraction [%(default)s]")
    g.set_defaults(func=cmd_gen)

    r = sub.add_parser("rss-trace", help="peak RSS per engine stage of one match fill (in-process)")
    r.add_argument("hr")
    r.add_argument("ref")
    r.add_argument("output")
    r.add_argument("--cog", action=argparse.BooleanOptionalAction, default=True)
    r.add_argument("--interval", type=float, default=0.02, help="RSS sampling period, s [%(default)s]")
    r.set_defaults(func=cmd_rss_trace)

    c = sub.add_parser("cog-variants", help="time COG conversions of a filled GeoTIFF")
    c.add_argument("src", help="a filled GeoTIFF (e.g. OUT/runs/m5no-cog.tif)")
    c.add_argument("--out", type=Path, default=DEFAULT_OUT)
    c.add_argument("--repeats", type=int, default=3)
    c.set_defaults(func=cmd_cog_variants)

    ra = sub.add_parser("read-align", help="read speed of full-width strips of several heights")
    ra.add_argument("src")
    ra.add_argument("--rows", type=_sizes, default=[512, 192], help="strip heights [512,192]")
    ra.add_argument("--rows-total", type=int, default=8192, help="rows read per strip height [%(default)s]")
    ra.set_defaults(func=cmd_read_align)

    t = sub.add_parser("tile-cost", help="per-window cost of the stand-in filler")
    common(t)
    t.set_defaults(func=cmd_tile_cost)

    o = sub.add_parser("one", help=argparse.SUPPRESS)
    o.add_argument("hr")
    o.add_argument("ref")
    o.add_argument("output")
    o.add_argument("--net-width", type=int, default=64)
    o.add_argument("--net-depth", type=int, default=4)
    o.add_argument("--cog", action=argparse.BooleanOptionalAction, default=True)
    o.set_defaults(func=cmd_one)

    q = sub.add_parser("profile-one", help=argparse.SUPPRESS)
    q.add_argument("prof")
    q.add_argument("cli_args", nargs=argparse.REMAINDER)
    q.set_defaults(func=cmd_profile_one)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
