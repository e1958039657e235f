"""LeNet-5 style CNN: two 5x5 convolutions with max-pooling, three fully connected layers."""

from __future__ import annotations

from torch import nn

from robustbench_bl.models.common import Normalize, default_stats


def lenet(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Sequential:
    """LeNet-5 for square images of side `image_size` (28 for MNIST, 32 for CIFAR-10)."""
    mean, std = default_stats(in_channels)
    side = ((image_size - 4) // 2 - 4) // 2
    if side < 1:
        raise ValueError(f"image_size must be >= 16 for LeNet, got {image_size}")
    return nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(in_channels, 6, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )
