"""The Extend-GAN generator (Fig. 2): a gated-convolution U-Net with LARN, any band count."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from extendgan_geo.model.layers import GatedConv2d, LarnStats


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of the generator.

    Attributes:
        bands: HR bands in and out.
        ref_bands: reference bands in.
        width: channels of the first layer; the authors' network uses 32 (the "paper" preset).
        larn: LARN after each gated convolution (Table II switch).
        larn_stats: "paper" or "code" statistics (see `LARN`).
        instance_norm: instance norm after each gated convolution (authors' code; not in the paper).
        residual: predict a correction added to the reference instead of the image itself (ours; off in the
            paper). With a reference already matched to HR radiometry, training starts from that baseline.
        bandwise: one set of weights for any band count (ours): each band goes through the network on its own,
            with the band means of the masked HR and of the reference as two context channels (cross-band
            information). `bands` and `ref_bands` must then be 1; inputs may have any number of bands.
        scale_input: one more input channel (ours): log10 of the reference's scale factor (its pixel size over the
            HR's) as a constant map, so the network need not infer from the reference how coarse it is. Its
            weights start at zero when a checkpoint without it starts the run (`init`), which keeps that
            checkpoint's output.
    """

    bands: int = 4
    ref_bands: int = 4
    width: int = 32
    larn: bool = True
    larn_stats: LarnStats = "paper"
    instance_norm: bool = False
    residual: bool = False
    bandwise: bool = False
    scale_input: bool = False

    def __post_init__(self) -> None:
        if self.bands < 1 or self.ref_bands < 1 or self.width < 2:
            raise ValueError(f"bands, ref_bands >= 1 and width >= 2 expected, got {asdict(self)}")
        if self.residual and self.ref_bands != self.bands:
            raise ValueError(f"a residual generator needs ref_bands == bands, got {self.ref_bands} and {self.bands}")
        if self.bandwise and (self.bands, self.ref_bands) != (1, 1):
            raise ValueError(f"a bandwise generator has bands = ref_bands = 1, got {self.bands} and {self.ref_bands}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        """Rebuild from `asdict` output (unknown keys are an error)."""
        return cls(**data)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"width": 32},  # the authors' widths: 3.46 M parameters, 27.3 GMACs per 256 x 256 tile
    "small": {"width": 12},  # trains usefully on a 2-core CPU in about an hour
    "bandwise": {"width": 8, "bands": 1, "ref_bands": 1, "bandwise": True, "residual": True},  # the shipped model
}


class Generator(nn.Module):
    """U-Net of gated convolutions with LARN.

    Two stride-2 downsamplings, dilations 2/4/8/16 at 1/4 resolution, concatenation skips and bilinear
    upsampling (layer table in docs/model.md).

    Input: masked HR (N, bands, H, W), reference on the HR grid (N, ref_bands, H, W) and gap (N, 1, H, W), all
    in model range ([-1, 1]-ish, gap 1 = missing), any H and W (padded by edge replication to multiples of 4 inside).
    Output: (N, bands, H, W).
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        kw: dict[str, Any] = {"larn": cfg.larn, "larn_stats": cfg.larn_stats, "instance_norm": cfg.instance_norm}
        c_in = 1 + cfg.ref_bands + cfg.bands + (2 if cfg.bandwise else 0) + (1 if cfg.scale_input else 0)
        self.enc1 = GatedConv2d(c_in, w, 5, **kw)
        self.enc2 = GatedConv2d(w, 2 * w, 3, stride=2, **kw)
        self.enc3 = GatedConv2d(2 * w, 2 * w, 3, **kw)
        self.enc4 = GatedConv2d(2 * w, 4 * w, 3, stride=2, **kw)
        self.enc5 = GatedConv2d(4 * w, 4 * w, 3, **kw)
        self.mid = nn.Sequential(
            GatedConv2d(4 * w, 4 * w, 3, **kw),
            *(GatedConv2d(4 * w, 4 * w, 3, dilation=d, **kw) for d in (2, 4, 8, 16)),
            GatedConv2d(4 * w, 4 * w, 3, **kw),
        )
        self.dec12 = GatedConv2d(8 * w, 4 * w, 3, **kw)
        self.dec14 = GatedConv2d(8 * w, 2 * w, 3, **kw)
        self.dec15 = GatedConv2d(4 * w, 2 * w, 3, **kw)
        self.dec17 = GatedConv2d(4 * w, w, 3, **kw)
        self.dec18 = GatedConv2d(2 * w, w // 2, 3, **kw)
        self.out = nn.Conv2d(w // 2, cfg.bands, 3, padding=1)

    def forward(self, hr: Tensor, ref: Tensor, gap: Tensor, scale: Tensor | None = None) -> Tensor:
        """Predict every HR pixel of the windows; callers keep the known pixels (composite).

        `scale` (N or N x 1 x 1 x 1: the windows' reference scale factor, >= 1; a fill passes the scene's pixel-size
        ratio) is read by scale-input generators only, which need it.
        """
        n, c, h, w = hr.shape
        ph, pw = -h % 4, -w % 4
        known = hr * (1.0 - gap)
        extra: list[Tensor] = []
        if self.cfg.scale_input:
            if scale is None:
                raise ValueError("a scale-input generator needs each window's reference scale factor")
            level = torch.log10(scale.to(hr.dtype).reshape(n, 1, 1, 1).clamp_min(1.0)).expand(n, 1, h, w)
            extra = [level.repeat_interleave(c, dim=0) if self.cfg.bandwise else level]
        if self.cfg.bandwise:
            if ref.shape[1] != c:
                raise ValueError(f"a bandwise generator needs as many reference bands as HR bands, got {ref.shape}")
            ctx = torch.cat([ref.mean(dim=1, keepdim=True), known.mean(dim=1, keepdim=True)], dim=1)
            x = torch.cat(
                [
                    gap.repeat_interleave(c, dim=0),
                    ref.reshape(n * c, 1, h, w),
                    known.reshape(n * c, 1, h, w),
                    ctx.repeat_interleave(c, dim=0),
                    *extra,
                ],
                dim=1,
            )
        else:
            x = torch.cat([gap, ref, known, *extra], dim=1)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        out = self._unet(x)[..., :h, :w].reshape(n, -1, h, w)
        return out + ref if self.cfg.residual else out

    def _unet(self, x: Tensor) -> Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        e5 = self.enc5(e4)
        d = self.dec12(torch.cat([self.mid(e5), e5], dim=1))
        d = _up(torch.cat([d, e4], dim=1))
        d = self.dec15(torch.cat([self.dec14(d), e3], dim=1))
        d = _up(torch.cat([d, e2], dim=1))
        d = self.dec18(torch.cat([self.dec17(d), e1], dim=1))
        out: Tensor = self.out(d)
        return out


def _up(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def with_scale_input(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Generator weights of a checkpoint without `scale_input`, widened for one: zero weights on the new channel.

    The channel is the last input of the first layer, so the widened generator computes what the checkpoint did.
    """
    out = dict(state)
    for name in ("enc1.feature.weight", "enc1.gate.weight"):
        weight = state[name]
        out[name] = torch.cat([weight, weight.new_zeros(weight.shape[0], 1, *weight.shape[2:])], dim=1)
    return out
