#!/usr/bin/env python
"""Benchmarks of the `egan-fill` engine on synthetic scenes.

The scenes are generated here, cheaply and reproducibly, from one analytic multiband field:

* HR: a UTM (EPSG:32650) raster at 1 m, 4-band uint16, tiled 512, ZSTD + predictor 2, nodata 0 in the gap.
  It is written in 512-row strips, so a 16384 x 16384 scene is never held whole.
* Gap ("clouds", the default): many mid-size blobs, the pixels where a smooth random field (white noise on a
  64 px grid, Gaussian-smoothed, bilinearly interpolated) exceeds the quantile that gives the gap fraction.
  Gaps of different fractions on the same scene are nested. "discs" is the previous benchmark's gap: the union
  of 3 large discs, radii scaled to reach the fraction.
* Reference: a Landsat-like 7-band uint16 raster at ~30 m in EPSG:4326, point-sampled from the smooth part of
  the same field with a per-band gain and bias; HR bands 1-4 pair with reference bands 2-5
  (`--ref-bidx 2,3,4,5`).

Every fill runs the `egan-fill` CLI in a fresh process under `/usr/bin/time -v` (input files in the page
cache); compared configurations run interleaved, `--repeats` times each. Suites of `all`:

1. match: gap scaling with `--method match` on the main scene (5 % and 50 % gap, `--cog` and `--no-cog`),
   for the cloud gap and for the previous benchmark's 3-disc gap;
2. memory: peak RSS and throughput on a 10 % cloud gap at the main size and at `--big` (both output modes);
3. profile: cProfile top-15 of one match run on the main scene (`--cog` and `--no-cog`);
4. gan: gap scaling and the share of wall time outside the filler with `--method gan` and a random-init
   paper-width generator checkpoint (made by this script) at `--batch-size` 8 (the default) and 1, plus the
   generator's own per-window cost by batch size.

Usage:
    python benchmarks/bench_fill.py all                        # everything: OUT/results.json and OUT/results.md
    python benchmarks/bench_fill.py all --suites match,profile --big 0
    python benchmarks/bench_fill.py windows                    # window-count floor of the gap shapes (no I/O)
    python benchmarks/bench_fill.py gen --size 4096 --gap 0.05 # one scene only
    python benchmarks/bench_fill.py make-model OUT.safetensors # the random-init paper-width checkpoint
    python benchmarks/bench_fill.py gan-tile-cost              # generator seconds per window by batch size
    python benchmarks/bench_fill.py rss-trace HR REF OUT       # peak RSS per engine stage (in-process)
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

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
# FillResult.seconds stages; "other" = total - their sum: opening the inputs, the one-time reference warp
# (RefGrid.build), the engine set-up, the provenance tags and closing the patched file (GDAL flushes the dirty
# blocks it still caches then, so part of the write cost lands here).
STAGES = ("scan", "sample", "copy", "read", "reference", "filler", "blend", "composite", "write", "finalize")
ALL_STAGES = (*STAGES, "other")
GAN_WIDTH = 32  # the paper's generator width
TILE, STRIDE = 256, 192  # the CLI defaults (tile 256, overlap 64)


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


class Clouds:
    """Many mid-size blobs: where a smooth random field exceeds a threshold (a cloud-mask-like gap).

    White noise on a grid of `cell` px, smoothed by a Gaussian of `sigma` cells, is interpolated bilinearly to
    the pixel centres; the gap is where it exceeds its (1 - fraction) quantile (estimated on every 4th pixel).
    With cell 64 and sigma 2 a 4096 x 4096 scene holds about 15 blobs of ~200 px median diameter at 5 % and a
    few large irregular regions at 50 %. The field depends only on `seed` and the scene size, so gaps of
    different fractions on one scene are nested.

    Args:
        size: scene edge, px.
        fraction: gap fraction wanted.
        cell: noise grid spacing, px.
        sigma: Gaussian smoothing, in cells (blob size grows with it).
        seed: noise seed.
    """

    def __init__(self, size: int, fraction: float, *, cell: int = 64, sigma: float = 2.0, seed: int = 7) -> None:
        from scipy import ndimage

        self.cell = cell
        n = size // cell + 3
        noise = np.random.default_rng(seed).standard_normal((n, n))
        self.field = ndimage.gaussian_filter(noise, sigma, mode="wrap").astype(np.float32)
        sub = np.arange(0, size, 4) + 0.5
        self.threshold = float(np.quantile(self.values(sub, sub), 1.0 - fraction)) if fraction > 0 else np.inf

    def values(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(len(rows), len(cols)) float32 field at pixel coordinates (separable bilinear interpolation)."""
        ty = np.asarray(rows, np.float64) / self.cell
        iy = np.floor(ty).astype(np.int64)
        fy = (ty - iy).astype(np.float32)[:, None]
        a = self.field[iy] * (1 - fy) + self.field[iy + 1] * fy
        tx = np.asarray(cols, np.float64) / self.cell
        ix = np.floor(tx).astype(np.int64)
        fx = (tx - ix).astype(np.float32)
        return np.asarray(a[:, ix] * (1 - fx) + a[:, ix + 1] * fx, dtype=np.float32)

    def rows(self, start: int, stop: int, width: int) -> np.ndarray:
        """(stop - start, width) bool, True in the gap."""
        return self.values(np.arange(start, stop) + 0.5, np.arange(width) + 0.5) > self.threshold


class GapShape(Protocol):
    """Anything that yields the gap of a strip of rows."""

    def rows(self, start: int, stop: int, width: int) -> np.ndarray:
        """(stop - start, width) bool, True in the gap."""
        ...


SHAPES = ("clouds", "discs")


def make_gap(shape: str, size: int, fraction: float, *, blobs: int = 3, seed: int = 7) -> GapShape:
    """The gap of a scene: "clouds" (many mid-size blobs) or "discs" (`blobs` large discs)."""
    if shape == "clouds":
        return Clouds(size, fraction, seed=seed)
    if shape == "discs":
        return make_discs(size, fraction, blobs, seed)
    raise ValueError(f"unknown gap shape {shape!r}; expected one of {SHAPES}")


def window_counts(gap: GapShape, size: int) -> tuple[int, int]:
    """Windows of the default grid (tile 256, stride 192) that touch the gap, and windows in the grid.

    Uses the grid's exact per-pixel test; the engine's own test uses 16 px gap cells and may add a window whose
    edge only grazes a cell.
    """
    from extendgan_geo.tiling import WindowGrid

    grid = WindowGrid.for_scene(size, size, TILE, STRIDE)
    touched = 0
    for r in grid.rows:
        h, _ = grid.extent(r, 0)
        touched += len(grid.cols_with_gap(gap.rows(r, r + h, size)))
    return touched, grid.count


# ----------------------------------------------------------------------------------------------------------
# Writing the scenes
# ----------------------------------------------------------------------------------------------------------


def hr_path(out: Path, size: int, gap: float, shape: str = "clouds") -> Path:
    """File name of an HR scene."""
    return out / f"hr_{size}_{shape}{round(gap * 100):02d}.tif"


def ref_path(out: Path, size: int) -> Path:
    """File name of the reference of a scene size."""
    return out / f"ref_{size}.tif"


def write_hr(
    path: Path, size: int, gap: float, *, shape: str = "clouds", blobs: int = 3, seed: int = 7
) -> dict[str, Any]:
    """Write a `size` x `size` 4-band uint16 HR scene with a gap (nodata 0), strip by strip.

    Returns:
        Facts about the file: gap pixels and fraction, windows touching the gap, seconds, bytes.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    t0 = time.perf_counter()
    holes = make_gap(shape, size, gap, blobs=blobs, seed=seed)
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
            hole = holes.rows(start, stop, size)
            data[:, hole] = 0
            gap_pixels += int(hole.sum())
            dst.write(data, window=Window(0, start, size, stop - start))
            del data, hole
    os.replace(tmp, path)
    windows, total = window_counts(holes, size)
    return {
        "path": str(path),
        "size": size,
        "shape": shape,
        "gap_target": gap,
        "gap_pixels": gap_pixels,
        "gap_fraction": gap_pixels / size / size,
        "windows_touching_gap": windows,
        "windows_total": total,
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
# The paper-width generator (random init: only its cost matters)
# ----------------------------------------------------------------------------------------------------------


def make_model(path: Path, *, width: int = GAN_WIDTH, seed: int = 0) -> dict[str, Any]:
    """Save a random-init Extend-GAN generator checkpoint that `egan-fill --method gan --model` loads.

    The metadata follows `fillers/gan.py`: architecture, fixed HR scaling (800-3600 DN to -1..1, the range of
    the synthetic scenes), matched reference input, no pinned tile.

    Returns:
        Path, sha256 and parameter count.
    """
    import dataclasses

    import torch

    from extendgan_geo.model.checkpoint import save_checkpoint, state_tensors
    from extendgan_geo.model.generator import Generator, GeneratorConfig

    torch.manual_seed(seed)
    cfg = GeneratorConfig(bands=HR_BANDS, ref_bands=HR_BANDS, width=width)
    g = Generator(cfg).eval()
    meta = {
        "generator": dataclasses.asdict(cfg),
        "scaling": {"hr": {"low": [800.0] * HR_BANDS, "high": [3600.0] * HR_BANDS}},
        "ref_input": "matched",
        "tile": None,
    }
    sha = save_checkpoint(path, state_tensors("generator", g), meta)
    return {"path": str(path), "sha256": sha, "width": width, "parameters": sum(p.numel() for p in g.parameters())}


def gan_tile_cost(
    *, width: int = GAN_WIDTH, batches: Sequence[int] = (1, 2, 4, 8), tiles: int = 8, repeats: int = 2
) -> dict[str, Any]:
    """Seconds per 256 px window of the bare generator forward pass (CPU, fp32) at several batch sizes.

    Each batch size runs `tiles` windows (in batches of that size) `repeats` times after one warm-up batch;
    the median per-window time is reported.
    """
    import torch

    from extendgan_geo.model.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(bands=HR_BANDS, ref_bands=HR_BANDS, width=width)).eval()
    per: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for b in batches:
            x = torch.rand(b, HR_BANDS, TILE, TILE) * 2 - 1
            gap = (torch.rand(b, 1, TILE, TILE) < 0.5).float()
            g(x, x, gap)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(max(1, tiles // b)):
                    g(x, x, gap)
                times.append((time.perf_counter() - t0) / (max(1, tiles // b) * b))
            per[str(b)] = stats(times)
    return {"width": width, "tile": TILE, "torch_threads": torch.get_num_threads(), "seconds_per_window": per}


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
        s = {k: float(v) for k, v in self.result["seconds"].items()}
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


def fill_command(hr: Path, ref: Path, output: Path, *, cog: bool, extra: Sequence[str] = ()) -> list[str]:
    """The `egan-fill` command line of one run (`--method match` unless `extra` says otherwise)."""
    return [
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


def run_fill(label: str, hr: Path, ref: Path, output: Path, *, cog: bool, extra: Sequence[str] = ()) -> Run:
    """Run the `egan-fill` CLI on `hr` in a fresh process under `/usr/bin/time -v`; return its timings.

    The output and its fill-mask sidecar are deleted afterwards.
    """
    timefile = output.with_suffix(".time.txt")
    cmd = fill_command(hr, ref, output, cog=cog, extra=extra)
    proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(timefile), *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: {' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    wall, rss = _parse_time_v(timefile.read_text())
    timefile.unlink()
    for p in (output, Path(str(output) + ".fillmask.tif")):
        p.unlink(missing_ok=True)
    result = json.loads(proc.stdout)
    run = Run(label, wall, rss, result)
    s = run.seconds
    print(
        f"  {label:<30} total {s['total']:7.2f}s  process {wall:7.2f}s  filler {s.get('filler', 0):7.2f}s  "
        f"windows {result['windows_computed']:>4}/{result['windows_total']}  rss {rss / 1024:7.1f} MiB",
        flush=True,
    )
    return run


# ----------------------------------------------------------------------------------------------------------
# Statistics and the report
# ----------------------------------------------------------------------------------------------------------


def stats(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[Run], pixels: int) -> dict[str, Any]:
    """Median/min/max of the totals, process walls, RSS and every stage over the runs of one configuration."""
    totals = [r.seconds["total"] for r in runs]
    walls = [r.wall for r in runs]
    fillers = [r.seconds.get("filler", 0.0) for r in runs]
    stage_med = {k: statistics.median([r.seconds.get(k, 0.0) for r in runs]) for k in (*ALL_STAGES, "total")}
    return {
        "total": stats(totals),
        "process_wall": stats(walls),
        "rss_mib": stats([r.rss_kib / 1024 for r in runs]),
        "stages_median": stage_med,
        "outside_filler": stats([t - f for t, f in zip(totals, fillers, strict=True)]),
        "outside_filler_share": stats([(t - f) / t for t, f in zip(totals, fillers, strict=True)]),
        "outside_filler_share_process": stats([(w - f) / w for w, f in zip(walls, fillers, strict=True)]),
        "mp_per_s_total": stats([pixels / 1e6 / t for t in totals]),
        "mp_per_s_process": stats([pixels / 1e6 / w for w in walls]),
        "windows_computed": runs[0].result["windows_computed"],
        "windows_total": runs[0].result["windows_total"],
        "gap_pixels": runs[0].result["gap_pixels"],
        "filled_pixels": runs[0].result["filled_pixels"],
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
    cmd = [sys.executable, __file__, "profile-one", str(prof), "--", *fill_command(hr, ref, output, cog=cog)[1:]]
    subprocess.run(cmd, check=True, capture_output=True)
    for p in (output, Path(str(output) + ".fillmask.tif")):
        p.unlink(missing_ok=True)
    out: dict[str, str] = {}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(str(prof), stream=buf).strip_dirs().sort_stats(key).print_stats(15)
        text = buf.getvalue()
        out[key] = text[text.find("   ncalls") :].rstrip()
    return out


def cmd_profile_one(args: argparse.Namespace) -> None:
    """Worker: import everything the CLI needs, then cProfile one CLI call into `args.prof`."""
    import contextlib
    import cProfile

    import extendgan_geo.fillers.match
    import extendgan_geo.pipeline  # noqa: F401  (imported here so that imports stay out of the profile)
    from extendgan_geo.cli.main import cli

    prof = cProfile.Profile()
    prof.enable()
    try:
        cli_args = list(args.cli_args)
        with contextlib.redirect_stdout(io.StringIO()):
            cli.main(cli_args[1:] if cli_args[:1] == ["--"] else cli_args, standalone_mode=False)
    finally:
        prof.disable()
        prof.dump_stats(args.prof)


def environment() -> dict[str, Any]:
    """The machine, library versions and the commit measured."""
    import rasterio
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
    repo = Path(__file__).resolve().parent.parent

    def git(*a: str) -> str:
        proc = subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True)
        return proc.stdout.strip()

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
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "extendgan_geo": extendgan_geo.__version__,
        "commit": git("rev-parse", "--short", "HEAD"),
        "engine_files_modified": git("status", "--porcelain", "--", "extendgan_geo") or "none",
        "loadavg_at_start": os.getloadavg(),
    }


def _fmt(s: dict[str, float], unit: str = "s", digits: int = 2) -> str:
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def render_markdown(res: dict[str, Any]) -> str:
    """A Markdown summary of `results.json` (tables only; docs/benchmarks.md adds the discussion)."""
    lines: list[str] = []
    env = res["environment"]
    lines += ["## Environment", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    if "model" in res:
        lines += ["", f"GAN checkpoint: {json.dumps(res['model'])}"]
    if "gan_tile_cost" in res:
        tc = res["gan_tile_cost"]
        per = ", ".join(f"batch {b}: {_fmt(s)}" for b, s in tc["seconds_per_window"].items())
        lines += ["", f"Generator forward (width {tc['width']}, {tc['torch_threads']} threads) per window: {per}"]
    if res.get("scenes"):
        lines += [
            "",
            "## Scenes",
            "",
            "| file | gap fraction | gap px | windows touching the gap | MiB | seconds to write |",
            "|---|---|---|---|---|---|",
        ]
        for s in res["scenes"]:
            lines.append(
                f"| {Path(s['path']).name} | {s['gap_fraction']:.4f} | {s['gap_pixels']:,} | "
                f"{s['windows_touching_gap']}/{s['windows_total']} | {s['bytes'] / 2**20:.0f} | {s['seconds']:.1f} |"
            )
    for name, group in res.get("groups", {}).items():
        lines += [
            "",
            f"## {name}",
            "",
            "| config | engine total (median, min-max) | process wall | windows | filler | outside filler "
            "(share of total / of process) | MP/s (engine) | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, s in group.items():
            lines.append(
                f"| {label} | {_fmt(s['total'])} | {_fmt(s['process_wall'])} | {s['windows_computed']}/"
                f"{s['windows_total']} | {s['stages_median']['filler']:.2f}s | "
                f"{s['outside_filler']['median']:.2f}s ({100 * s['outside_filler_share']['median']:.1f} % / "
                f"{100 * s['outside_filler_share_process']['median']:.1f} %) | "
                f"{s['mp_per_s_total']['median']:.1f} | {_fmt(s['rss_mib'], '', 0)} |"
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
    if res.get("ratios"):
        lines += ["", "## Ratios (same invocation, medians)", ""]
        lines += [f"- {k}: {v:.3f}" for k, v in res["ratios"].items()]
    for key, text in res.get("profile", {}).items():
        lines += ["", f"## cProfile top-15 by {key}", "", "```", text, "```"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------------------


def ensure_scene(out: Path, size: int, gap: float, scenes: list[dict[str, Any]], *, shape: str = "clouds") -> Path:
    """Write the HR scene and its size's reference if missing; return the HR path."""
    hr = hr_path(out, size, gap, shape)
    if not ref_path(out, size).exists():
        print(f"writing {ref_path(out, size).name}", flush=True)
        write_ref(ref_path(out, size), size)
    if not hr.exists():
        print(f"writing {hr.name}", flush=True)
        info = write_hr(hr, size, gap, shape=shape)
        print(
            f"  gap {info['gap_fraction']:.4f}, windows touching it {info['windows_touching_gap']}/"
            f"{info['windows_total']}, {info['bytes'] / 2**20:.0f} MiB, {info['seconds']:.1f}s",
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


def _pct(gap: float) -> str:
    return f"{round(gap * 100)}%"


class Bench:
    """One `all` invocation: the scenes, the suites and what they measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.runs_dir = self.out / "runs"
        self.runs_dir.mkdir(exist_ok=True)
        self.size = int(args.size)
        self.scenes: list[dict[str, Any]] = []
        self.groups: dict[str, dict[str, Any]] = {}
        self.ratios: dict[str, float] = {}
        self.res: dict[str, Any] = {
            "environment": environment(),
            "args": {k: str(v) for k, v in vars(args).items() if k != "func"},
            "scenes": self.scenes,
            "groups": self.groups,
            "ratios": self.ratios,
        }

    def kw(self, hr: Path, cog: bool, name: str, extra: Sequence[str] = ()) -> dict[str, Any]:
        """Arguments of `run_fill`."""
        size = int(hr.name.split("_")[1])
        return {
            "hr": hr,
            "ref": ref_path(self.out, size),
            "output": self.runs_dir / f"{name}.tif",
            "cog": cog,
            "extra": list(extra),
        }

    def _gap_scaling(self, group: str, configs: dict[str, dict[str, Any]], repeats: int, pixels: int) -> None:
        runs = interleaved(configs, repeats)
        g = {k: summarize(v, pixels) for k, v in runs.items()}
        self.groups[group] = g
        for label in g:
            if " 5% " not in f"{label} ":
                continue
            den = label.replace(" 5%", " 50%")
            stem = label.replace(" 5%", "")
            self.ratios[f"{stem}: engine total(5%) / total(50%)"] = _ratio(g, label, den, "total", "median")
            self.ratios[f"{stem}: process wall(5%) / wall(50%)"] = _ratio(g, label, den, "process_wall", "median")
            self.ratios[f"{stem}: windows(5%) / windows(50%)"] = _ratio(g, label, den, "windows_computed")
            if g[den]["stages_median"]["filler"] > 1.0:
                self.ratios[f"{stem}: filler stage(5%) / filler stage(50%)"] = _ratio(
                    g, label, den, "stages_median", "filler"
                )

    def match(self) -> None:
        """Suites 1 and 3 with `--method match`: 5 % and 50 % gap, `--cog` and `--no-cog`, each gap shape."""
        print("match: gap scaling and throughput", flush=True)
        configs: dict[str, dict[str, Any]] = {}
        for shape in self.args.shapes:
            hr = {g: ensure_scene(self.out, self.size, g, self.scenes, shape=shape) for g in (0.05, 0.5)}
            for mode in ("cog", "no-cog"):
                for g in (0.05, 0.5):
                    name = f"m_{shape}{round(g * 100)}_{mode}"
                    configs[f"match {shape} {_pct(g)} {mode}"] = self.kw(hr[g], mode == "cog", name)
        self._gap_scaling(f"match, {self.size}x{self.size}", configs, self.args.repeats, self.size**2)

    def gan(self) -> None:
        """Suites 1 and 4 with the paper-width generator: 5 % and 50 % cloud gap at `--gan-size`."""
        print("gan: generator cost, gap scaling and overhead", flush=True)
        model = self.out / f"gan_w{GAN_WIDTH}.safetensors"
        self.res["model"] = make_model(model)
        tc = gan_tile_cost()
        self.res["gan_tile_cost"] = tc
        print(f"  generator s/window by batch: {json.dumps(tc['seconds_per_window'])}", flush=True)
        size = int(self.args.gan_size)
        hr = {g: ensure_scene(self.out, size, g, self.scenes) for g in (0.05, 0.5)}
        extra = ["--method", "gan", "--model", str(model), "--device", "cpu"]
        modes = ("cog", "no-cog") if self.args.gan_no_cog else ("cog",)
        configs = {
            f"gan {_pct(g)} {m} batch{b}": self.kw(
                hr[g], m == "cog", f"g{round(g * 100)}_{m}_b{b}", [*extra, "--batch-size", str(b)]
            )
            for b in self.args.gan_batches
            for m in modes
            for g in (0.05, 0.5)
        }
        self._gap_scaling(f"gan (paper width {GAN_WIDTH}), {size}x{size}", configs, self.args.gan_repeats, size**2)

    def memory(self) -> None:
        """Suites 2 and 3: peak RSS and throughput on a 10 % cloud gap at the main size and `--big` sizes."""
        print("memory: 10% gap", flush=True)
        sizes = [self.size, *self.args.big]
        hr = {s: ensure_scene(self.out, s, 0.10, self.scenes) for s in sizes}
        configs = {
            f"match 10% {s} {m}": self.kw(hr[s], m == "cog", f"mem{s}_{m}") for s in sizes for m in ("cog", "no-cog")
        }
        runs = interleaved(configs, self.args.repeats)
        mem = {k: summarize(v, int(k.split()[2]) ** 2) for k, v in runs.items()}
        self.groups["memory and throughput, 10% gap"] = mem
        for big in self.args.big:
            for m in ("cog", "no-cog"):
                a, b = f"match 10% {big} {m}", f"match 10% {self.size} {m}"
                self.ratios[f"peak RSS {a} / {b}"] = _ratio(mem, a, b, "rss_mib", "median")
            if not self.args.keep_big:
                hr[big].unlink()
                ref_path(self.out, big).unlink()

    def profile(self) -> None:
        """cProfile of one match run on the 50 % cloud scene, `--cog` and `--no-cog`."""
        print("profile", flush=True)
        hr = ensure_scene(self.out, self.size, 0.5, self.scenes)
        self.res["profile"] = {}
        for cog in (True, False):
            mode = "cog" if cog else "no-cog"
            tables = profile_run(hr, ref_path(self.out, self.size), self.runs_dir / f"profile_{mode}.tif", cog=cog)
            for key, text in tables.items():
                self.res["profile"][f"{key}, match clouds 50% {self.size} {mode}"] = text

    def save(self, seconds: float) -> None:
        """Write OUT/results.json and OUT/results.md (after every suite, so a failure keeps what ran)."""
        self.res["benchmark_seconds"] = seconds
        (self.out / "results.json").write_text(json.dumps(self.res, indent=2, default=str))
        (self.out / "results.md").write_text(render_markdown(self.res))


def cmd_all(args: argparse.Namespace) -> None:
    """Generate the scenes, run the chosen suites and write OUT/results.json and OUT/results.md."""
    t0 = time.perf_counter()
    bench = Bench(args)
    print(json.dumps(bench.res["environment"]), flush=True)
    for suite in ("match", "memory", "profile", "gan"):
        if suite in args.suites:
            getattr(bench, suite)()
            bench.save(time.perf_counter() - t0)
    print((bench.out / "results.md").read_text())
    print(f"benchmark took {time.perf_counter() - t0:.0f}s; results in {bench.out}", flush=True)


def _rss_kib() -> int:
    """Current resident set size of this process, KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cmd_rss_trace(args: argparse.Namespace) -> None:
    """Fill one scene with `--method match` in this process and report the peak RSS reached in each stage.

    A thread samples VmRSS every `--interval` s; the engine's `timed` is wrapped (in this process only) so each
    sample is tagged with the stage running then ("untimed" outside the timed stages: opening inputs, the
    reference warp, engine set-up, closing the patched file). `UnitAccumulator.add` is wrapped too, to report
    the most output units held at once and their float32 bytes. GDAL_CACHEMAX defaults to 256 MB as in the CLI.
    """
    import contextlib
    import threading
    from collections.abc import Iterator

    os.environ.setdefault("GDAL_CACHEMAX", "256")
    import extendgan_geo.engine as engine
    import extendgan_geo.pipeline as pipeline
    from extendgan_geo.blending import UnitAccumulator
    from extendgan_geo.config import FillConfig, OutputConfig

    stage = ["untimed"]
    peaks: dict[str, int] = {}
    original = engine.timed
    original_add = UnitAccumulator.add
    held = {"units": 0, "bytes": 0}

    def counting_add(self: Any, *a: Any, **k: Any) -> None:
        original_add(self, *a, **k)
        if len(self.units) > held["units"]:
            held["units"] = len(self.units)
            held["bytes"] = sum(v.nbytes + w.nbytes for v, w in self.units.values())

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
    engine.timed = pipeline.timed = tagged  # type: ignore[assignment,attr-defined]
    UnitAccumulator.add = counting_add  # type: ignore[method-assign]
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        cfg = FillConfig(ref_indexes=tuple(int(b) for b in REF_BIDX.split(",")))
        result = pipeline.fill_raster(args.hr, args.ref, args.output, cfg, OutputConfig(cog=args.cog, overwrite=True))
    finally:
        stop.set()
        thread.join()
        engine.timed = pipeline.timed = original  # type: ignore[attr-defined]
        UnitAccumulator.add = original_add  # type: ignore[method-assign]
    report = {
        "hr": args.hr,
        "cog": args.cog,
        "rss_before_fill_mib": base / 1024,
        "peak_rss_mib_by_stage": {k: round(v / 1024, 1) for k, v in sorted(peaks.items(), key=lambda kv: -kv[1])},
        "most_units_held": held["units"],
        "their_mib": round(held["bytes"] / 2**20, 1),
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
    }
    print(json.dumps(report, indent=2))


def cmd_gen(args: argparse.Namespace) -> None:
    """Generate one scene (and its reference)."""
    args.out.mkdir(parents=True, exist_ok=True)
    scenes: list[dict[str, Any]] = []
    ensure_scene(args.out, args.size, args.gap, scenes, shape=args.shape)
    print(json.dumps(scenes, indent=2))


def cmd_windows(args: argparse.Namespace) -> None:
    """Print the windows touching the gap at each fraction, per shape and size (no files written)."""
    rows = []
    for shape in args.shapes:
        for size in args.sizes:
            counts = {g: window_counts(make_gap(shape, size, g), size) for g in args.gaps}
            lo, hi = min(args.gaps), max(args.gaps)
            rows.append(
                {
                    "shape": shape,
                    "size": size,
                    "windows": {str(g): c[0] for g, c in counts.items()},
                    "grid": counts[lo][1],
                    f"ratio {lo}/{hi}": round(counts[lo][0] / max(1, counts[hi][0]), 3),
                }
            )
            print(json.dumps(rows[-1]), flush=True)


def cmd_make_model(args: argparse.Namespace) -> None:
    """Write the random-init paper-width generator checkpoint."""
    print(json.dumps(make_model(args.path, width=args.width), indent=2))


def cmd_gan_tile_cost(args: argparse.Namespace) -> None:
    """Print the generator's per-window cost by batch size."""
    print(json.dumps(gan_tile_cost(width=args.width, batches=args.batches), indent=2))


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip() and int(s) > 0]


def _shapes(text: str) -> list[str]:
    shapes = [s for s in text.split(",") if s]
    for s in shapes:
        if s not in SHAPES:
            raise argparse.ArgumentTypeError(f"unknown shape {s!r}; expected {','.join(SHAPES)}")
    return shapes


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    out_help = "folder for scenes and outputs [%(default)s]"

    a = sub.add_parser("all", help="generate scenes and run the suites")
    a.add_argument("--out", type=Path, default=DEFAULT_OUT, help=out_help)
    a.add_argument("--size", type=int, default=4096, help="edge of the main scene, px [%(default)s]")
    a.add_argument("--repeats", type=int, default=3, help="runs per match configuration [%(default)s]")
    a.add_argument("--shapes", type=_shapes, default=list(SHAPES), help="gap shapes of the match suite [clouds,discs]")
    a.add_argument("--gan-size", type=int, default=3072, help="edge of the GAN scenes, px [%(default)s]")
    a.add_argument("--gan-repeats", type=int, default=2, help="runs per GAN configuration [%(default)s]")
    a.add_argument("--gan-no-cog", action="store_true", help="also run the GAN with --no-cog")
    a.add_argument(
        "--gan-batches", type=_sizes, default=[8, 1], help="--batch-size values of the GAN runs [8,1] (8: the default)"
    )
    a.add_argument(
        "--big",
        type=_sizes,
        default=[16384],
        help="comma-separated edges of the memory/throughput scenes besides --size; 0 = none [16384]",
    )
    a.add_argument("--keep-big", action="store_true", help="keep the big scenes after measuring")
    a.add_argument(
        "--suites",
        type=lambda s: set(s.split(",")),
        default={"match", "gan", "memory", "profile"},
        help="comma-separated subset of match,memory,profile,gan (run in that order) [all]",
    )
    a.set_defaults(func=cmd_all)

    g = sub.add_parser("gen", help="generate one scene and its reference")
    g.add_argument("--out", type=Path, default=DEFAULT_OUT, help=out_help)
    g.add_argument("--size", type=int, default=4096)
    g.add_argument("--gap", type=float, default=0.1, help="gap fraction [%(default)s]")
    g.add_argument("--shape", choices=SHAPES, default="clouds")
    g.set_defaults(func=cmd_gen)

    w = sub.add_parser("windows", help="window-count floor of the gap shapes (no files)")
    w.add_argument("--shapes", type=_shapes, default=list(SHAPES))
    w.add_argument("--sizes", type=_sizes, default=[2048, 3072, 4096, 16384])
    w.add_argument("--gaps", type=lambda s: [float(v) for v in s.split(",")], default=[0.05, 0.1, 0.5])
    w.set_defaults(func=cmd_windows)

    m = sub.add_parser("make-model", help="write the random-init paper-width generator checkpoint")
    m.add_argument("path", type=Path)
    m.add_argument("--width", type=int, default=GAN_WIDTH)
    m.set_defaults(func=cmd_make_model)

    t = sub.add_parser("gan-tile-cost", help="generator seconds per window by batch size")
    t.add_argument("--width", type=int, default=GAN_WIDTH)
    t.add_argument("--batches", type=_sizes, default=[1, 2, 4, 8])
    t.set_defaults(func=cmd_gan_tile_cost)

    r = sub.add_parser("rss-trace", help="peak RSS per engine stage of one match fill (in-process)")
    r.add_argument("hr")
    r.add_argument("ref")
    r.add_argument("output")
    r.add_argument("--cog", action=argparse.BooleanOptionalAction, default=True)
    r.add_argument("--interval", type=float, default=0.02, help="RSS sampling period, s [%(default)s]")
    r.set_defaults(func=cmd_rss_trace)

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
