"""Spectral-normalised conditional discriminator (Sec. II-A), for any training crop size >= 64 px."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm


class Discriminator(nn.Module):
    """Spectral-normalised stack of stride-2 convolutions with a pooled linear head.

    Six stride-2 5x5 convolutions (64-128-256-256-256-256 channels x width/64), a 3x3 convolution, global
    average pooling and a linear layer, every layer spectrally normalised; LeakyReLU 0.01 as in the authors' code.

    The authors end with a 4x4 "valid" convolution that only fits 256 px crops; pooling makes the same stack work
    at any crop size. Input: image (N, bands, H, W), gap (N, 1, H, W), reference (N, ref_bands, H, W).
    Output: (N,) realness scores.
    """

    def __init__(self, bands: int, ref_bands: int, *, width: int = 64) -> None:
        super().__init__()
        chans = [bands + 1 + ref_bands, width, 2 * width, 4 * width, 4 * width, 4 * width, 4 * width]
        self.convs = nn.ModuleList(
            spectral_norm(nn.Conv2d(a, b, 5, stride=2, padding=2)) for a, b in itertools.pairwise(chans)
        )
        self.head = spectral_norm(nn.Conv2d(chans[-1], chans[-1], 3, padding=1))
        self.linear = spectral_norm(nn.Linear(chans[-1], 1, bias=False))

    def forward(self, image: Tensor, gap: Tensor, ref: Tensor) -> Tensor:
        """Score (image, gap, reference) triples: high for real, low for generated."""
        x = torch.cat([image, gap, ref], dim=1)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.01)
        x = F.leaky_relu(self.head(x), 0.01)
        score: Tensor = self.linear(x.mean(dim=(2, 3))).squeeze(1)
        return score
