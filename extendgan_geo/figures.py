"""Pictures of an evaluation (Pillow only): per-case panels like the paper's Fig. 6, and a metrics bar chart.

Case panel geometry: two rows of `PANEL` px squares (plus a title strip each), 3 + M columns for M methods.
Top row: truth, masked input, reference, then each method's result; bottom row: a legend under the first three,
then each method's error map under its result. Display bands: `rgb`, else 3,2,1 for 3-band files (B,G,R-ordered
like Landsat) and 1,2,3 otherwise. Every image panel but the reference uses the truth's 2-98 % stretch, so colours
compare across panels; the reference, often in other units, gets its own stretch. Error maps show mean
|result - truth| over the bands as a share of the data range, on one scale for all methods of a case; gap pixels
a method left unfilled are magenta there.
The PNG's text chunk "panels" holds the number of image panels (3 + 2 M).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

if TYPE_CHECKING:
    from extendgan_geo.evaluate import Case

PANEL = 256
TITLE = 18
PAD = 4
BG = (255, 255, 255)
GAP_COLOUR = np.array([255, 0, 255], np.uint8)
# Anchors of a perceptual dark-to-bright colour map (black, purple, orange, pale yellow), interpolated to 256.
_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)
LUT = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, k]) for k in range(3)], axis=1
).astype(np.uint8)
METHOD_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def _font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _display_bands(n: int, rgb: tuple[int, ...] | None) -> list[int]:
    if rgb is not None:
        bad = [b for b in rgb if not 1 <= b <= n]
        if bad:
            raise ValueError(f"--rgb positions {bad} are outside 1..{n}")
        return [b - 1 for b in rgb] * (3 if len(rgb) == 1 else 1)
    return [2, 1, 0] if n == 3 else ([0, 1, 2] if n >= 3 else [0, 0, 0])


def _stretch(img: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    out = (img - lo[:, None, None]) / np.maximum(hi - lo, 1e-12)[:, None, None]
    return cast(np.ndarray, (np.clip(np.nan_to_num(out), 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0))


def _fit(rgb: np.ndarray) -> Image.Image:
    im = Image.fromarray(rgb)
    return im if im.size == (PANEL, PANEL) else im.resize((PANEL, PANEL), Image.Resampling.BOX)


def case_panel(case: Case, methods: list[str], path: str, *, rgb: tuple[int, ...] | None = None) -> None:
    """Write the Fig.-6-style panel of one case to `path` (PNG)."""
    truth = case.truth
    bands = _display_bands(truth.shape[0], rgb)
    valid = case.valid
    sel = truth[bands]
    lo = np.array([np.percentile(b[valid], 2) for b in sel])
    hi = np.array([np.percentile(b[valid], 98) for b in sel])
    gap = case.gap
    panels: list[tuple[str, Image.Image]] = [("truth", _fit(_stretch(sel, lo, hi)))]
    masked = _stretch(sel, lo, hi)
    masked[gap] = GAP_COLOUR
    panels.append((f"input ({100 * gap.mean():.0f}% gap)", _fit(masked)))
    ref = case.reference[bands] if case.reference is not None else np.zeros_like(sel)
    finite = np.isfinite(ref).all(axis=0)
    if finite.any():
        rlo = np.array([np.percentile(b[finite], 2) for b in ref])
        rhi = np.array([np.percentile(b[finite], 98) for b in ref])
    else:
        rlo, rhi = np.zeros(3), np.ones(3)
    factor = f" x{case.factor:g}" if case.factor else ""
    panels.append((f"reference{factor}", _fit(_stretch(ref, rlo, rhi))))
    rng = np.maximum(truth[:, valid].max(axis=1) - truth[:, valid].min(axis=1), 1e-12)
    scored = gap & valid
    errors = {m: (np.abs(case.outputs[m] - truth) / rng[:, None, None]).mean(axis=0) * scored for m in methods}
    tops = [float(np.nanpercentile(e[scored], 99)) for e in errors.values() if scored.any()]
    top = max([t for t in tops if np.isfinite(t)], default=1.0) or 1.0
    results = [(m, _fit(_stretch(case.outputs[m][bands], lo, hi))) for m in methods]
    maps = []
    for m, e in errors.items():
        err_rgb: np.ndarray = LUT[(np.clip(np.nan_to_num(e) / top, 0, 1) * 255).astype(np.uint8)]
        err_rgb[case.outputs[m + ":codes"] == 2] = GAP_COLOUR  # left unfilled by this method
        maps.append((f"|error| {m}", _fit(err_rgb)))

    cols = 3 + len(methods)
    cell_w, cell_h = PANEL + PAD, PANEL + TITLE + PAD
    canvas = Image.new("RGB", (cols * cell_w + PAD, 2 * cell_h + PAD), BG)
    draw = ImageDraw.Draw(canvas)
    font = _font()

    def put(col: int, row: int, title: str, im: Image.Image) -> None:
        x, y = PAD + col * cell_w, PAD + row * cell_h
        draw.text((x, y + 2), title, fill=(0, 0, 0), font=font)
        canvas.paste(im, (x, y + TITLE))

    for k, (title, im) in enumerate(panels + results):
        put(k, 0, title, im)
    for k, (title, im) in enumerate(maps):
        put(3 + k, 1, title, im)
    # Legend under the first three panels: the error colour scale and what the stretch is.
    x0, y0 = PAD, PAD + cell_h + TITLE
    bar = Image.fromarray(np.repeat(LUT[None], 16, axis=0)).resize((2 * PANEL, 16))
    canvas.paste(bar, (x0, y0 + 20))
    draw.text((x0, y0), f"{case.name}: error scale (share of data range)", fill=(0, 0, 0), font=font)
    draw.text((x0, y0 + 40), "0", fill=(0, 0, 0), font=font)
    draw.text((x0 + 2 * PANEL - 40, y0 + 40), f"{top:.3f}", fill=(0, 0, 0), font=font)
    draw.text(
        (x0, y0 + 64),
        "truth, input and results share the truth's 2-98 % stretch; magenta = gap",
        fill=(0, 0, 0),
        font=font,
    )
    info = PngImagePlugin.PngInfo()
    info.add_text("panels", str(len(panels) + len(results) + len(maps)))
    info.add_text("columns", str(cols))
    canvas.save(path, pnginfo=info)


def metrics_chart(rows: list[dict[str, Any]], methods: list[str], path: str, *, region: str = "gap") -> None:
    """Bar chart of the mean of each metric per method over the cases of `region` (PNG)."""
    shown = [("psnr", "PSNR dB ^"), ("ssim", "SSIM ^"), ("ssim_d", "SSIM-D ^"), ("sam", "SAM rad v"),
             ("mae", "MAE v"), ("seam", "seam (1 = seamless)")]  # fmt: skip
    means: dict[str, dict[str, float]] = {}
    for key, _ in shown:
        means[key] = {}
        for m in methods:
            vals = [float(r[key]) for r in rows if r["method"] == m and r["region"] == region]
            vals = [v for v in vals if math.isfinite(v)]
            means[key][m] = float(np.mean(vals)) if vals else math.nan
    cw, ch = 300, 40 + 26 * len(methods)
    ncol = 3
    nrow = math.ceil(len(shown) / ncol)
    canvas = Image.new("RGB", (ncol * cw + 20, nrow * ch + 40), BG)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    draw.text((10, 8), f"mean over cases, {region} pixels (^ higher is better, v lower)", fill=(0, 0, 0), font=font)
    for k, (key, label) in enumerate(shown):
        x0, y0 = 10 + (k % ncol) * cw, 34 + (k // ncol) * ch
        draw.text((x0, y0), label, fill=(0, 0, 0), font=font)
        vals = [v for v in means[key].values() if math.isfinite(v)]
        lo = min([0.0, *vals])
        hi = max([0.0, *vals])
        hi = hi if hi > lo else lo + 1e-9
        for j, m in enumerate(methods):
            v = means[key][m]
            y = y0 + 20 + 26 * j
            draw.text((x0, y + 4), m[:12], fill=(0, 0, 0), font=font)
            if not math.isfinite(v):
                draw.text((x0 + 90, y + 4), "n/a", fill=(0, 0, 0), font=font)
                continue
            bx0 = x0 + 90 + int(150 * (0 - lo) / (hi - lo))
            bx1 = x0 + 90 + int(150 * (v - lo) / (hi - lo))
            draw.rectangle([min(bx0, bx1), y + 2, max(bx0, bx1) + 1, y + 20], fill=METHOD_COLOURS[j % 6])
            draw.text((x0 + 246, y + 4), f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}", fill=(0, 0, 0), font=font)
    canvas.save(path)
