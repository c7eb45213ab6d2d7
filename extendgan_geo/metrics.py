"""Image-quality metrics for gap filling (numpy/scipy only), on float data with an explicit data range.

Every metric takes (C, H, W) arrays `truth` and `pred` and an optional boolean `region` (H, W): the pixels the
score is about (the gap, or every valid pixel). Windowed metrics (SSIM, UQI) compute their local maps on the whole
image, so windows see real context across the gap boundary, and average the map over `region`.

Definitions (docs/metrics.md has the formulas and the pitfalls they avoid):

- PSNR: 10 log10(range^2 / MSE) per band, with the band's data range given explicitly.
- SSIM: Wang et al. 2004, Gaussian 11 x 11 window with sigma 1.5, population covariance, K1 0.01, K2 0.03
  (what `skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)` computes).
- SSIM-D: SSIM(truth, output) - SSIM(reference, output) (Cui et al. 2023, Sec. III-A-3): positive when the output is
  closer to the truth than to the coarse reference it was guided by.
- CC: Pearson correlation per band over the region.
- UQI: the universal quality index of Wang and Bovik (2002) on 8 x 8 sliding windows; a flat window pair scores 1 when
  the means agree (the factor whose denominator vanishes is taken as 1).
- SAM: the per-pixel spectral angle in radians, averaged over pixels; pixels where either vector is zero are skipped.
- ERGAS: Wald (2002), 100 (h / l) sqrt(mean_b (RMSE_b / mean_b)^2) with h / l = 1 / scale, the HR-to-reference
  pixel-size ratio.
- MAE: mean absolute error divided by the band's data range (so 0.01 = 1 % of the range).
- Seam score: mean |step| between 4-neighbour pixel pairs across the gap boundary in the output, divided by the same
  in the truth; 1.0 is seamless, above 1 means a visible edge.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from scipy import ndimage

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5 px: the 11 x 11 window
UQI_WINDOW = 8

BAND_METRICS = ("psnr", "ssim", "ssim_d", "cc", "uqi", "mae")
METRICS = (*BAND_METRICS, "sam", "ergas", "seam")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ssim_d": True, "cc": True, "uqi": True, "mae": False,
                    "sam": False, "ergas": False, "seam": None}  # fmt: skip


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _region(shape: tuple[int, ...], region: np.ndarray | None) -> np.ndarray:
    return np.ones(shape[-2:], bool) if region is None else np.asarray(region, bool)


def _ranges(data_range: float | np.ndarray, bands: int) -> np.ndarray:
    r = np.broadcast_to(np.asarray(data_range, np.float64), (bands,)).copy()
    if not np.all(r > 0):
        raise ValueError(f"data_range must be > 0 for every band, got {r.tolist()}")
    return r


def psnr(
    truth: np.ndarray, pred: np.ndarray, data_range: float | np.ndarray, region: np.ndarray | None = None
) -> np.ndarray:
    """(C,) PSNR in dB per band over `region` (inf where the band is exact)."""
    t, p = _f64(truth), _f64(pred)
    m = _region(t.shape, region)
    r = _ranges(data_range, t.shape[0])
    mse = ((t - p) ** 2)[:, m].mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, 10 * np.log10(r**2 / np.maximum(mse, 1e-300)), np.inf)


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    """SSIM map of two (H, W) images: Gaussian 11 x 11 / sigma 1.5 window, population statistics."""
    a, b = _f64(a), _f64(b)

    def blur(x: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, ndimage.gaussian_filter(x, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect"))

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    smap: np.ndarray = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return smap


def ssim(
    truth: np.ndarray,
    pred: np.ndarray,
    data_range: float | np.ndarray,
    region: np.ndarray | None = None,
    *,
    crop_border: bool = False,
) -> np.ndarray:
    """(C,) mean SSIM per band over `region`.

    Args:
        truth: (C, H, W) ground truth.
        pred: (C, H, W) prediction.
        data_range: per-band (or one) data range.
        region: (H, W) pixels to average over; None = all.
        crop_border: leave out the 5 px border where the window runs off the image (what scikit-image does).
    """
    t, p = _f64(truth), _f64(pred)
    m = _region(t.shape, region).copy()
    if crop_border:
        pad = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
        m[:pad], m[-pad:], m[:, :pad], m[:, -pad:] = False, False, False, False
    r = _ranges(data_range, t.shape[0])
    return np.array([ssim_map(t[i], p[i], r[i])[m].mean() for i in range(t.shape[0])])


def cc(truth: np.ndarray, pred: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """(C,) Pearson correlation per band over `region` (NaN when a band is constant there)."""
    t, p = _f64(truth), _f64(pred)
    m = _region(t.shape, region)
    out = []
    for i in range(t.shape[0]):
        a, b = t[i][m] - t[i][m].mean(), p[i][m] - p[i][m].mean()
        den = np.sqrt((a * a).sum() * (b * b).sum())
        out.append((a * b).sum() / den if den > 0 else np.nan)
    return np.array(out)


def uqi(
    truth: np.ndarray, pred: np.ndarray, region: np.ndarray | None = None, *, window: int = UQI_WINDOW
) -> np.ndarray:
    """(C,) Wang-Bovik universal quality index per band: mean over the 8 x 8 windows centred in `region`.

    Q = [2 cov / (var_x + var_y)] [2 mu_x mu_y / (mu_x^2 + mu_y^2)] per window, population statistics; a factor
    whose denominator is 0 counts as 1 (two flat windows of equal mean score 1).
    """
    t, p = _f64(truth), _f64(pred)
    m = _region(t.shape, region)
    h, w = t.shape[-2:]
    if h < window or w < window:
        raise ValueError(f"UQI needs images of at least {window} x {window} px, got {w} x {h}")
    # Windows fully inside the image, indexed by their top-left pixel; a window "is in the region" when the
    # pixel at its centre is.
    half = window // 2
    inside = m[half : h - window + 1 + half, half : w - window + 1 + half]
    out = []
    for i in range(t.shape[0]):
        x, y = t[i], p[i]

        def mean(z: np.ndarray) -> np.ndarray:
            # uniform_filter centres an even window at offset window // 2: entry half + j is the mean of the
            # window whose top-left pixel is j.
            return cast(np.ndarray, ndimage.uniform_filter(z, window, mode="constant"))[
                half : h - window + 1 + half, half : w - window + 1 + half
            ]

        mx, my = mean(x), mean(y)
        vx, vy = mean(x * x) - mx**2, mean(y * y) - my**2
        cxy = mean(x * y) - mx * my
        d1, d2 = vx + vy, mx**2 + my**2
        tol = 1e-12 * max(1.0, float(np.nanmax(np.abs(x))) ** 2)
        f1 = np.where(d1 > tol, 2 * cxy / np.where(d1 > tol, d1, 1.0), 1.0)
        f2 = np.where(d2 > tol, 2 * mx * my / np.where(d2 > tol, d2, 1.0), 1.0)
        q = f1 * f2
        out.append(q[inside].mean() if inside.any() else np.nan)
    return np.array(out)


def sam(truth: np.ndarray, pred: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean spectral angle (radians) over the pixels of `region` where neither vector is zero."""
    t, p = _f64(truth), _f64(pred)
    m = _region(t.shape, region)
    a, b = t[:, m], p[:, m]
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    ok = (na > 0) & (nb > 0)
    if not ok.any():
        return float("nan")
    cos = (a[:, ok] * b[:, ok]).sum(axis=0) / (na[ok] * nb[ok])
    return float(np.arccos(np.clip(cos, -1.0, 1.0)).mean())


def ergas(truth: np.ndarray, pred: np.ndarray, scale: float, region: np.ndarray | None = None) -> float:
    """Wald's ERGAS: 100 / scale * sqrt(mean over bands of (RMSE_b / mean_b)^2), `scale` = ref px / HR px."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    t, p = _f64(truth), _f64(pred)
    m = _region(t.shape, region)
    rmse = np.sqrt(((t - p) ** 2)[:, m].mean(axis=1))
    mu = t[:, m].mean(axis=1)
    if np.any(mu == 0):
        return float("nan")
    return float(100.0 / scale * np.sqrt(np.mean((rmse / mu) ** 2)))


def mae(
    truth: np.ndarray, pred: np.ndarray, data_range: float | np.ndarray, region: np.ndarray | None = None
) -> np.ndarray:
    """(C,) mean absolute error over `region`, as a share of each band's data range."""
    t, p = _f64(truth), _f64(pred)
    m = _region(t.shape, region)
    return cast(np.ndarray, np.abs(t - p)[:, m].mean(axis=1) / _ranges(data_range, t.shape[0]))


def boundary_pairs(gap: np.ndarray) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Index arrays (a, b) of the 4-neighbour pixel pairs with exactly one pixel in the gap."""
    g = np.asarray(gap, bool)
    a_rows, a_cols, b_rows, b_cols = [], [], [], []
    for dr, dc in ((0, 1), (1, 0)):
        h, w = g.shape
        left = g[: h - dr, : w - dc]
        right = g[dr:, dc:]
        r, c = np.nonzero(left != right)
        a_rows.append(r)
        a_cols.append(c)
        b_rows.append(r + dr)
        b_cols.append(c + dc)
    return (np.concatenate(a_rows), np.concatenate(a_cols)), (np.concatenate(b_rows), np.concatenate(b_cols))


def seam_score(truth: np.ndarray, pred: np.ndarray, gap: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean |step| across the gap boundary in `pred` over the same in `truth`, all bands pooled (1.0 = seamless).

    Bands are weighted equally by dividing each band's steps by the truth's mean step of that band. Pairs with a
    pixel outside `valid` (truth nodata, unfilled) are left out.
    """
    t, p = _f64(truth), _f64(pred)
    a, b = boundary_pairs(gap)
    if valid is not None:
        keep = np.asarray(valid, bool)[a] & np.asarray(valid, bool)[b]
        a = (a[0][keep], a[1][keep])
        b = (b[0][keep], b[1][keep])
    if a[0].size == 0:
        return float("nan")
    ratios = []
    for i in range(t.shape[0]):
        st = np.abs(t[i][a] - t[i][b]).mean()
        sp = np.abs(p[i][a] - p[i][b]).mean()
        if st > 0:
            ratios.append(sp / st)
    return float(np.mean(ratios)) if ratios else float("nan")


def data_range_of(truth: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(C,) max - min of each band of the truth over its valid pixels (the true range, not the dtype's)."""
    t = _f64(truth)
    m = _region(t.shape, valid)
    v = t[:, m]
    r = v.max(axis=1) - v.min(axis=1)
    return np.where(r > 0, r, 1.0)


def score(
    truth: np.ndarray,
    pred: np.ndarray,
    gap: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    data_range: float | np.ndarray | None = None,
    scale: float = 1.0,
    valid: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """Every metric on the gap only and on the whole image.

    Args:
        truth: (C, H, W) ground truth.
        pred: (C, H, W) filled output (known pixels included).
        gap: (H, W) True where the pixels were filled.
        reference: (C, H, W) reference on the HR grid for SSIM-D (None: SSIM-D is NaN).
        data_range: per-band range; None = `data_range_of(truth)`.
        scale: reference pixel size / HR pixel size (for ERGAS).
        valid: (H, W) pixels to score: a valid truth and a prediction (None = all). Pixels outside it take the
            band's mean of the valid truth in every input before windowed metrics run, so no window sees
            NaN or a value that was not predicted.

    Returns:
        {"gap": {...}, "whole": {...}}: each metric averaged over bands, and "<metric>_bands" lists per band.
    """
    t, p = _f64(truth), _f64(pred)
    ok = _region(t.shape, valid) & np.isfinite(t).all(axis=0) & np.isfinite(p).all(axis=0)
    g = np.asarray(gap, bool) & ok
    if ok.any():
        fill = t[:, ok].mean(axis=1)[:, None, None]
        t, p = np.where(ok, t, fill), np.where(ok, p, fill)
        if reference is not None:
            reference = np.where(ok, _f64(reference), fill)
    rng = data_range_of(t, ok) if data_range is None else _ranges(data_range, t.shape[0])
    out: dict[str, dict[str, Any]] = {}
    for name, region in (("gap", g), ("whole", ok)):
        if not region.any():
            out[name] = {k: float("nan") for k in METRICS}
            continue
        bands = {
            "psnr": psnr(t, p, rng, region),
            "ssim": ssim(t, p, rng, region),
            "cc": cc(t, p, region),
            "uqi": uqi(t, p, region),
            "mae": mae(t, p, rng, region),
        }
        if reference is not None:
            # Pixels without reference take the output's value there (they add no difference).
            ref = np.where(np.isfinite(reference), _f64(reference), p)
            bands["ssim_d"] = bands["ssim"] - ssim(ref, p, rng, region)
        else:
            bands["ssim_d"] = np.full(t.shape[0], np.nan)
        row: dict[str, Any] = {k: float(np.mean(v)) for k, v in bands.items()}
        row.update({f"{k}_bands": [float(x) for x in v] for k, v in bands.items()})
        row["sam"] = sam(t, p, region)
        row["ergas"] = ergas(t, p, scale, region)
        row["seam"] = seam_score(t, p, np.asarray(gap, bool), ok)
        row["pixels"] = int(region.sum())
        out[name] = row
    out["data_range"] = {"bands": [float(x) for x in rng]}
    return out
