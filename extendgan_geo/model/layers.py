"""Gated convolution and learnable adaptive region normalization (LARN), Cui et al. 2023, Sec. II-A/B."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LarnStats = Literal["paper", "code"]


def region_mean(x: Tensor, m: Tensor, eps: float) -> Tensor:
    """Eq. 7: mean of x weighted by m over H, W. x, m: (N, C, H, W). Returns (N, C, 1, 1)."""
    return (x * m).sum(dim=(2, 3), keepdim=True) / (eps + m.sum(dim=(2, 3), keepdim=True))


def region_std(x: Tensor, m: Tensor, mu: Tensor, eps: float) -> Tensor:
    """Eq. 8: standard deviation of x weighted by m over H, W, plus eps. Returns (N, C, 1, 1).

    The printed eq. 8 omits m inside the sum; we weight the squared deviations by m, which is what makes it the
    standard deviation *of the region* that the text describes (see docs/model.md).
    """
    var = (m * (x - mu) ** 2).sum(dim=(2, 3), keepdim=True) / (eps + m.sum(dim=(2, 3), keepdim=True))
    return torch.sqrt(var + eps * eps) + eps


class LARN(nn.Module):
    """Learnable adaptive region normalization, eq. 5-8.

    The features of the missing region (weight m) are standardised and re-coloured with the mean and standard
    deviation of the known region (weight 1 - m), scaled by learnable gamma and beta, and blended back by m:
    LARN(x, m) = (1 - m) x + m (gamma sigma(x, 1-m) (x - mu(x, m)) / sigma(x, m) + beta mu(x, 1-m)).

    Args:
        channels: feature channels C.
        eps: stabilising constant of eq. 7-8.
        stats: "paper" (eq. 7-8 with region-weighted variance, gamma = beta = 1 at init) or "code" (the authors'
            implementation: m applied twice in the statistics, deviations summed over every pixel, gamma and beta
            drawn from N(0, 1) at init).
    """

    def __init__(self, channels: int, *, eps: float = 1e-5, stats: LarnStats = "paper") -> None:
        super().__init__()
        self.eps = eps
        self.stats = stats
        init = torch.randn if stats == "code" else torch.ones
        self.gamma = nn.Parameter(init(1, channels, 1, 1))
        self.beta = nn.Parameter(init(1, channels, 1, 1))

    def forward(self, x: Tensor, m: Tensor) -> Tensor:
        """Normalise x (N, C, H, W) with soft mask m in [0, 1] (same shape; 1 = missing region)."""
        if self.stats == "code":
            known = 1.0 - m
            xp, xq = x * m, x * known
            mu_p, mu_q = region_mean(xp, m, self.eps), region_mean(xq, known, self.eps)
            sd_p = self._code_std(xp, m, mu_p)
            sd_q = self._code_std(xq, known, mu_q)
            moved = (xp - mu_p) / sd_p * sd_q * self.gamma + mu_q * self.beta
            return moved * m + x * known
        # Eq. 5-8 from spatial sums (one pass over x m, x x m, x and x x), then known * x + m * moved rewritten
        # as x + m (a x + b): far fewer full-size temporaries than the two-pass form. Under reduced precision
        # (bf16 autocast) the sums are taken in fp32 on x shifted by its per-channel mean, so the variance does
        # not cancel; fp32 features (|mean| / std far below 1e3 after gating) need neither.
        eps = self.eps
        dims = (2, 3)
        xf, mf = x.float(), m.float()
        if x.dtype == torch.float32:
            shift = torch.zeros((), dtype=xf.dtype, device=xf.device)
            xs = xf
        else:
            shift = xf.mean(dim=dims, keepdim=True).detach()
            xs = xf - shift
        xm = xs * mf
        s_m = mf.sum(dim=dims, keepdim=True)
        s_xm = xm.sum(dim=dims, keepdim=True)
        s_xxm = (xm * xs).sum(dim=dims, keepdim=True)
        s_k = m.shape[2] * m.shape[3] - s_m
        s_xk = xs.sum(dim=dims, keepdim=True) - s_xm
        s_xxk = (xs * xs).sum(dim=dims, keepdim=True) - s_xxm
        mu_p, mu_q = s_xm / (eps + s_m), s_xk / (eps + s_k)  # of the shifted x
        var_p = (s_xxm - 2 * mu_p * s_xm + mu_p * mu_p * s_m).clamp_min(0.0) / (eps + s_m)
        var_q = (s_xxk - 2 * mu_q * s_xk + mu_q * mu_q * s_k).clamp_min(0.0) / (eps + s_k)
        sd_p = torch.sqrt(var_p + eps * eps) + eps
        sd_q = torch.sqrt(var_q + eps * eps) + eps
        # Means of the unshifted x: the shift cancels where eps does not weigh (eps / (eps + s) ~ 0).
        mu_p = mu_p + shift * s_m / (eps + s_m)
        mu_q = mu_q + shift * s_k / (eps + s_k)
        a = self.gamma * sd_q / sd_p
        b = self.beta * mu_q - a * mu_p
        out = xf + mf * ((a - 1.0) * xf + b)
        return out if out.dtype == x.dtype else out.to(x.dtype)

    def _code_std(self, z: Tensor, w: Tensor, mu: Tensor) -> Tensor:
        """The authors' sigma: sqrt(sum((z w - mu)^2) / (sum w + eps) + eps), over every pixel."""
        num = ((z * w - mu) ** 2).sum(dim=(2, 3), keepdim=True)
        return torch.sqrt(num / (w.sum(dim=(2, 3), keepdim=True) + self.eps) + self.eps)


class GatedConv2d(nn.Module):
    """Gated convolution (eq. 2): phi(W_F x) * sigmoid(W_G x), then LARN with the gate as soft mask.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel: kernel size.
        stride: stride.
        dilation: dilation (padding keeps the size, "same" style).
        larn: apply LARN after gating (Table II ablation switch).
        larn_stats: see `LARN`.
        instance_norm: apply a non-affine instance norm last, as the authors' code does.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        larn: bool = True,
        larn_stats: LarnStats = "paper",
        instance_norm: bool = False,
    ) -> None:
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.feature = nn.Conv2d(in_ch, out_ch, kernel, stride, pad, dilation)
        self.gate = nn.Conv2d(in_ch, out_ch, kernel, stride, pad, dilation)
        self.larn = LARN(out_ch, stats=larn_stats) if larn else None
        self.instance_norm = instance_norm

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_ch, H, W) -> (N, out_ch, H / stride, W / stride)."""
        # One convolution for the feature and gate branches (one GEMM instead of two).
        f = self.feature
        weight = torch.cat([f.weight, self.gate.weight])
        bias = torch.cat([f.bias, self.gate.bias])  # type: ignore[list-item]
        both = F.conv2d(x, weight, bias, f.stride, f.padding, f.dilation)
        feat, gate = both.split(f.out_channels, dim=1)  # type: ignore[no-untyped-call]
        gate = torch.sigmoid(gate)
        y = F.elu(feat)
        y = y.mul_(gate) if not torch.is_grad_enabled() else y * gate
        if self.larn is not None:
            y = self.larn(y, gate)
        if self.instance_norm:
            y = F.instance_norm(y)
        return y
