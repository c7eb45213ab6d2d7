"""Losses of Extend-GAN: hinge adversarial (eq. 3-4), SSIM triplet (eq. 9-10), L1 reconstruction (eq. 11)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def d_hinge(real: Tensor, fake: Tensor) -> Tensor:
    """Eq. 3: mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def g_hinge(fake: Tensor, *, relu: bool = True) -> Tensor:
    """Eq. 4: -mean(ReLU(D(fake))) as printed in the paper; `relu=False` gives the authors' -mean(D(fake))."""
    return -(F.relu(fake) if relu else fake).mean()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """1-D Gaussian of `size` taps, summing to 1 (Wang et al. 2004)."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(x: Tensor, y: Tensor, *, data_range: float, size: int = 11, sigma: float = 1.5) -> Tensor:
    """Local SSIM of x and y (N, C, H, W) with a Gaussian window, "valid" borders.

    Returns:
        (N, C, H - size + 1, W - size + 1) SSIM values.
    """
    c = x.shape[1]
    g = gaussian_window(size, sigma).to(x)
    kx = g.view(1, 1, 1, size).repeat(c, 1, 1, 1)
    ky = g.view(1, 1, size, 1).repeat(c, 1, 1, 1)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(z, kx, groups=c), ky, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def masked_ssim(x: Tensor, y: Tensor, gap: Tensor, *, data_range: float) -> Tensor:
    """Per-sample SSIM averaged over the windows centred in the gap (N,). gap: (N, 1, H, W), 1 = missing.

    The authors zero the known area and average SSIM over the whole tile, which dilutes the loss with the
    trivially similar zeros; averaging over gap-centred windows measures the filled region only.
    """
    s = ssim_map(x, y, data_range=data_range).mean(dim=1, keepdim=True)
    half = (gap.shape[-1] - s.shape[-1]) // 2
    w = gap[:, :, half : half + s.shape[-2], half : half + s.shape[-1]]
    return (s * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3)).clamp_min(1.0)


def triplet_ssim(
    output: Tensor, truth: Tensor, ref: Tensor, gap: Tensor, *, margin: float = 0.1, data_range: float = 2.0
) -> Tensor:
    """Eq. 9-10: max(f(O, O_hat) - f(R, O_hat) + alpha, 0) with f = 1 - SSIM, over the gap, batch mean.

    Args:
        output: (N, C, H, W) composited generator output O_hat, model range.
        truth: (N, C, H, W) ground truth O.
        ref: (N, C, H, W) reference R in the same units as `truth`.
        gap: (N, 1, H, W), 1 = missing.
        margin: alpha (0.1 in the paper, 0.3 in the authors' code).
        data_range: value range of the data (2 for [-1, 1]).
    """
    d_pos = 1.0 - masked_ssim(output, truth, gap, data_range=data_range)
    d_neg = 1.0 - masked_ssim(output, ref, gap, data_range=data_range)
    return F.relu(d_pos - d_neg + margin).mean()


def l1(pred: Tensor, target: Tensor, gap: Tensor | None = None, *, known_weight: float = 1.0) -> Tensor:
    """Eq. 11: mean absolute error; with `gap`, weight 1 inside and `known_weight` outside it."""
    if gap is None:
        return (pred - target).abs().mean()
    weight = (gap + known_weight * (1.0 - gap)).expand_as(pred)
    return (weight * (pred - target).abs()).sum() / weight.sum().clamp_min(1e-6)
