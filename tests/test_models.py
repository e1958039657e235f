"""Model zoo: output shapes on each model's input size, loss falls on a fixed batch, bad names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_bl import models

CASES = [
    ("lenet", (8, 3, 32, 32), 3, 32),
    ("lenet", (8, 1, 28, 28), 1, 28),
    ("resnet18", (4, 3, 32, 32), 3, 32),
    ("densenet121", (4, 3, 32, 32), 3, 32),
    ("fcn1d", (8, 1, 150), 1, 150),
    ("fcn1d", (8, 6, 101), 6, 101),
]


@pytest.mark.parametrize("name,shape,in_channels,size", CASES)
def test_output_shape(name: str, shape: tuple, in_channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = models.make(name, num_classes=7, in_channels=in_channels, image_size=size).eval()
    assert model(torch.rand(shape)).shape == (shape[0], 7)


@pytest.mark.parametrize("name,shape,in_channels,size", [*CASES[::2], CASES[3]])
def test_loss_falls_on_a_fixed_batch(name: str, shape: tuple, in_channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = models.make(name, num_classes=4, in_channels=in_channels, image_size=size)
    x, y = torch.rand(shape), torch.arange(shape[0]) % 4
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_normalization_is_the_first_layer() -> None:
    model = models.make("resnet18")
    first = next(model.children())
    assert isinstance(first, models.Normalize)
    x = torch.rand(2, 3, 8, 8)
    expected = (x - torch.tensor(models.common.CIFAR10_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        models.common.CIFAR10_STD
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(first(x), expected)


def test_convolutions_are_plain_nn_conv() -> None:
    for name in models.names():
        convs = [
            m
            for m in models.make(name, in_channels=1 if name == "fcn1d" else 3).modules()
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))
        ]
        assert convs and all(type(m) in (torch.nn.Conv1d, torch.nn.Conv2d) for m in convs)


def test_densenet_growth_rate_12() -> None:
    model = models.make("densenet121")
    assert isinstance(model.conv1, nn.Conv2d) and model.conv1.out_channels == 24
    assert sum(isinstance(m, models.densenet.Bottleneck) for m in model.modules()) == 58


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(name="vgg"), ValueError, "name must be one of"),
        (dict(name="lenet", num_classes=1), ValueError, "num_classes must be >= 2"),
        (dict(name="lenet", in_channels=0), ValueError, "in_channels must be >= 1"),
        (dict(name="lenet", image_size=8), ValueError, "image_size must be >= 16"),
    ],
)
def test_bad_input(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        models.make(**kwargs)
