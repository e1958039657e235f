"""Fully convolutional network for time series (Wang et al. 2017): conv 8/5/3 with 128/256/128 channels."""

from __future__ import annotations

import torch
from torch import nn

from robustbench_bl.models.common import Normalize


class FCN1d(nn.Module):
    """Three Conv1d-BN-ReLU blocks (zero 'same' padding), global average pooling, a linear classifier.

    Inputs are N x C x L series; UCR series come z-normalized, so the normalization layer is the
    identity unless other statistics are given.
    """

    def __init__(self, num_classes: int = 2, in_channels: int = 1) -> None:
        super().__init__()
        self.normalize = Normalize((0.0,) * in_channels, (1.0,) * in_channels)
        blocks = []
        for c_in, c_out, k in ((in_channels, 128, 8), (128, 256, 5), (256, 128, 3)):
            # Explicit 'same' padding: torch warns on padding='same' with even kernels.
            blocks += [
                nn.ConstantPad1d(((k - 1) // 2, k // 2), 0.0),
                nn.Conv1d(c_in, c_out, k),
                nn.BatchNorm1d(c_out),
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(self.normalize(x)).mean(dim=2))
