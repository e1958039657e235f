"""DenseNet-121 for 32x32 images (Huang et al. 2017, DenseNet-BC) with growth rate 12."""

from __future__ import annotations

import torch
from torch import nn

from robustbench_bl.models.common import Normalize, default_stats


class Bottleneck(nn.Module):
    """BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k); the output is concatenated to the input."""

    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(torch.relu(self.bn1(x)))
        out = self.conv2(torch.relu(self.bn2(out)))
        return torch.cat([out, x], dim=1)


class Transition(nn.Module):
    """BN-ReLU-Conv1x1 halving the channels (compression 0.5), then 2x2 average pooling."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(torch.relu(self.bn(x))))


class DenseNet121(nn.Module):
    """DenseNet-BC-121 (blocks of 6, 12, 24, 16 layers) with a 3x3 stem of 2k channels."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, growth_rate: int = 12) -> None:
        super().__init__()
        mean, std = default_stats(in_channels)
        self.normalize = Normalize(mean, std)
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(in_channels, planes, 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        for i, depth in enumerate((6, 12, 24, 16)):
            for _ in range(depth):
                layers.append(Bottleneck(planes, growth_rate))
                planes += growth_rate
            if i < 3:
                out_planes = planes // 2
                layers.append(Transition(planes, out_planes))
                planes = out_planes
        self.features = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(planes)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.conv1(self.normalize(x)))
        out = torch.relu(self.bn(out))
        return self.fc(out.mean(dim=(2, 3)))
