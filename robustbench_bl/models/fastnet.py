"""FastNet: a residual-free CIFAR network that trains in minutes per epoch on a CPU.

Written here after Keller Jordan's published "airbench" design (2024): a frozen 2x2 patch-whitening
convolution, three conv-pool-BN-GELU blocks, a global max-pool and a scaled linear head. Widths
default to airbench's 64/256/256 (the first zoo used 64/128/128). `stem='learned'` replaces the frozen
whitening by an ordinary trained convolution of the same shape: the whitening-free control. Every
convolution is a plain nn.Conv2d, so `spectral.bandlimit` converts it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustbench_bl.models.common import Normalize, default_stats
from robustbench_bl.validation import check_choice


def _batch_norm(width: int) -> nn.BatchNorm2d:
    """BN with a fixed unit scale (only the shift trains) and fast-moving running statistics."""
    bn = nn.BatchNorm2d(width, momentum=0.4, eps=1e-12)
    bn.weight.requires_grad_(False)
    return bn


class ConvBlock(nn.Module):
    """conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU; halves the map size."""

    def __init__(self, in_width: int, out_width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_width, out_width, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _batch_norm(out_width)
        self.conv2 = nn.Conv2d(out_width, out_width, 3, padding=1, bias=False)
        self.norm2 = _batch_norm(out_width)
        self.act = nn.GELU()
        for conv in (self.conv1, self.conv2):
            # Identity start for the first filters: early training sees a near-linear network.
            w = conv.weight.data
            nn.init.dirac_(w[: w.shape[1]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


#: The first layer: 'whiten' (frozen, set from data, airbench's) or 'learned' (trained from a random init).
STEMS = ("whiten", "learned")


class FastNet(nn.Module):
    """Normalize -> 2x2 stem conv -> 3 blocks -> max-pool -> linear / 9.

    32x32 inputs give maps of 31, 15, 7 and 3 pixels. The stem (`whiten`) holds 2 * in_channels * 4
    filters. With stem='whiten' they are the eigenvectors of the 2x2 patch covariance scaled to unit
    variance, and their negatives (`training.fast.init_whitening` sets them from training images),
    and stay frozen; with stem='learned' they train like every other filter.
    """

    logit_scale = 1.0 / 9.0

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 256, 256),
        stem: str = "whiten",
    ) -> None:
        super().__init__()
        mean, std = default_stats(in_channels)
        self.widths = tuple(widths)
        self.stem = check_choice(stem, "stem", STEMS)
        self.normalize = Normalize(mean, std)
        whiten_width = 2 * in_channels * 4
        self.whiten = nn.Conv2d(in_channels, whiten_width, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(stem == "learned")
        self.act = nn.GELU()
        blocks, width = [], whiten_width
        for out in widths:
            blocks.append(ConvBlock(width, out))
            width = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(width, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.whiten(self.normalize(x)))
        x = self.pool(self.blocks(x)).flatten(1)
        return self.head(x) * self.logit_scale
