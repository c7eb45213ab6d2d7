"""Model cost: parameters, multiply-accumulates per 256 x 256 tile, forward time (fp32/bf16), training throughput.

Usage: python benchmarks/bench_model.py [--repeats 5] [--json out.json]
Prints a Markdown table; docs/model.md quotes it with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import torch
from torch import nn

from extendgan_geo import allocator
from extendgan_geo.model.discriminator import Discriminator
from extendgan_geo.model.generator import Generator, GeneratorConfig
from extendgan_geo.model.layers import GatedConv2d
from extendgan_geo.training.config import PRESETS, TrainConfig


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of convolutions and linear layers in one forward pass (forward hooks)."""
    total = 0

    def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, GatedConv2d):
            # Feature and gate convolutions run as one fused call (not through the Conv2d modules).
            conv = module.feature
            total += 2 * out.numel() * conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += out.numel() * k
        elif isinstance(module, nn.Linear):
            total += out.numel() * module.in_features

    kinds = (nn.Conv2d, nn.Linear, GatedConv2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(*inputs)
    for h in handles:
        h.remove()
    return total


def time_forward(g: Generator, bands: int, dtype: torch.dtype, repeats: int, batch: int = 1) -> list[float]:
    x = torch.randn(batch, bands, 256, 256)
    gap = torch.zeros(batch, 1, 256, 256)
    gap[..., 128:] = 1
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        g(x, x, gap)
        for _ in range(repeats):
            t = time.perf_counter()
            g(x, x, gap)
            times.append((time.perf_counter() - t) / batch)
    return times


def time_training(preset: str, bands: int, repeats: int) -> float:
    """Samples per second of G+D training steps on random tensors (data loading excluded)."""
    from extendgan_geo.model import losses

    cfg = TrainConfig(**{**PRESETS[preset], "preset": preset})
    g = Generator(GeneratorConfig(bands=bands, ref_bands=bands, width=cfg.width, residual=cfg.residual))
    d = Discriminator(bands, bands, width=cfg.disc_width)
    og, od = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
    n, s = cfg.batch_size, cfg.crop
    hr, ref = torch.randn(n, bands, s, s), torch.randn(n, bands, s, s)
    gap = torch.zeros(n, 1, s, s)
    gap[..., s // 2 :] = 1

    def step() -> None:
        out = g(hr, ref, gap)
        comp = out * gap + hr * (1 - gap)
        loss = (
            losses.l1(out, hr)
            + 0.01 * losses.g_hinge(d(comp, gap, ref))
            + 0.1 * losses.triplet_ssim(comp, hr, ref, gap)
        )
        og.zero_grad()
        loss.backward()
        og.step()
        ld = losses.d_hinge(d(hr, gap, ref), d(comp.detach(), gap, ref))
        od.zero_grad()
        ld.backward()
        od.step()

    step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return n / statistics.median(times)


# The shipped default generator (extendgan_geo/weights/default.json): bandwise, width 8, residual.
DEFAULT = GeneratorConfig(bands=1, ref_bands=1, width=8, bandwise=True, residual=True)


def speed_pair(bands: int, repeats: int, channels_last: bool = False, compile: bool = False) -> dict[str, float]:
    """Forward time per 256 x 256 tile of the default and the paper generator, interleaved in one run (fp32).

    With `compile`, both networks are also timed through `torch.compile` (what `egan-fill --compile` runs),
    interleaved with the plain ones; the one-off compile times are reported, not timed as forwards.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    default = Generator(DEFAULT).eval().to(memory_format=fmt)
    paper = Generator(GeneratorConfig(bands=bands, ref_bands=bands, width=32)).eval().to(memory_format=fmt)
    x = torch.randn(1, bands, 256, 256).to(memory_format=fmt)
    gap = torch.zeros(1, 1, 256, 256)
    gap[..., 128:] = 1
    nets: dict[str, Any] = {"default": default, "paper": paper}
    out: dict[str, float] = {}
    with torch.inference_mode():
        if compile:
            for name, g in list(nets.items()):
                t = time.perf_counter()
                nets[f"{name}_compiled"] = torch.compile(g)
                nets[f"{name}_compiled"](x, x, gap)
                out[f"{name}_compile_s"] = time.perf_counter() - t
        for g in nets.values():
            g(x, x, gap)
        times: dict[str, list[float]] = {name: [] for name in nets}
        for _ in range(repeats):
            for name, g in nets.items():
                t = time.perf_counter()
                g(x, x, gap)
                times[name].append(time.perf_counter() - t)
    out.update({f"{k}_ms_median": 1e3 * statistics.median(v) for k, v in times.items()})
    out.update({f"{k}_ms_min": 1e3 * min(v) for k, v in times.items()})
    out["ratio_median"] = out["default_ms_median"] / out["paper_ms_median"]
    if compile:
        out["ratio_compiled_median"] = out["default_compiled_ms_median"] / out["paper_compiled_ms_median"]
    out["default_params_M"] = sum(p.numel() for p in default.parameters()) / 1e6
    out["paper_params_M"] = sum(p.numel() for p in paper.parameters()) / 1e6
    out["default_gmacs"] = count_macs(default, x, x, gap) / 1e9
    out["paper_gmacs"] = count_macs(paper, x, x, gap) / 1e9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--json")
    parser.add_argument("--bf16-repeats", type=int, default=1, help="bf16 can be very slow on CPUs without bf16 units")
    parser.add_argument("--skip-bf16", default="", help="comma-separated presets whose bf16 timing is skipped")
    parser.add_argument("--pair", action="store_true", help="only the default-vs-paper forward timing")
    parser.add_argument("--channels-last", action="store_true", help="both networks in channels-last layout")
    parser.add_argument("--compile", action="store_true", help="with --pair: also both networks via torch.compile")
    args = parser.parse_args()
    # As the fill and train commands do on CPU (EGAN_TUNE_MALLOC=NO for glibc's defaults).
    tuned = allocator.tune()
    if args.pair:
        res = speed_pair(args.bands, args.repeats, args.channels_last, args.compile)
        layout = "channels-last" if args.channels_last else "contiguous"
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.bands} bands, 256 x 256, "
            f"fp32, {layout}, allocator {'tuned' if tuned else 'defaults'}"
        )
        print("| generator | params M | GMACs | ms median | ms min |")
        print("|---|---|---|---|---|")
        print(f"| default (bandwise w8) | {res['default_params_M']:.3f} | {res['default_gmacs']:.2f} | "
              f"{res['default_ms_median']:.0f} | {res['default_ms_min']:.0f} |")  # fmt: skip
        print(f"| paper (w32) | {res['paper_params_M']:.3f} | {res['paper_gmacs']:.2f} | "
              f"{res['paper_ms_median']:.0f} | {res['paper_ms_min']:.0f} |")  # fmt: skip
        print(f"ratio default / paper (medians): {res['ratio_median']:.2f}")
        if args.compile:
            for name in ("default", "paper"):
                print(f"| {name}, torch.compile | | | {res[name + '_compiled_ms_median']:.0f} | "
                      f"{res[name + '_compiled_ms_min']:.0f} | (compile {res[name + '_compile_s']:.0f} s)")  # fmt: skip
            print(f"ratio default / paper, both compiled (medians): {res['ratio_compiled_median']:.2f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=2)
        return
    rows = []
    for preset in ("small", "paper"):
        print(f"measuring {preset}...", flush=True)
        cfg = TrainConfig(**{**PRESETS[preset], "preset": preset})
        g = Generator(GeneratorConfig(bands=3, ref_bands=3, width=cfg.width)).eval()
        d = Discriminator(3, 3, width=cfg.disc_width)
        x = torch.randn(1, 3, 256, 256)
        gap = torch.zeros(1, 1, 256, 256)
        row: dict[str, Any] = {
            "preset": preset,
            "width": cfg.width,
            "g_params_M": sum(p.numel() for p in g.parameters()) / 1e6,
            "d_params_M": sum(p.numel() for p in d.parameters()) / 1e6,
            "g_gmacs": count_macs(g, x, x, gap) / 1e9,
            "d_gmacs": count_macs(d, x, gap, x) / 1e9,
        }
        g4 = Generator(GeneratorConfig(bands=args.bands, ref_bands=args.bands, width=cfg.width)).eval()
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            if name == "bf16" and preset in args.skip_bf16:
                continue
            t = time_forward(g4, args.bands, dtype, args.repeats if name == "fp32" else args.bf16_repeats)
            row[f"fwd_{name}_ms_median"] = 1e3 * statistics.median(t)
            row[f"fwd_{name}_ms_min"] = 1e3 * min(t)
        row["train_samples_per_s"] = time_training(preset, args.bands, max(2, args.repeats // 2))
        row["train_crop"] = cfg.crop
        row["train_batch"] = cfg.batch_size
        rows.append(row)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        cells = [r.get(k, "not run") for k in keys]
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
