"""The model zoo: every model takes inputs in [0, 1] (normalization is its first layer) and uses
plain nn.Conv1d/2d, so `spectral.bandlimit` can swap the convolutions later."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from robustbench_bl.models.common import Normalize
from robustbench_bl.models.densenet import DenseNet121
from robustbench_bl.models.fastnet import FastNet
from robustbench_bl.models.fcn import FCN1d
from robustbench_bl.models.lenet import lenet
from robustbench_bl.models.resnet import ResNet18
from robustbench_bl.validation import check_choice, check_positive_int

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "lenet": lenet,
    "resnet18": ResNet18,
    "densenet121": DenseNet121,
    "fcn1d": FCN1d,
    "fastnet": FastNet,
    # the whitening-free control: FastNet with a learned first convolution instead of the frozen whitening
    "fastnet_nw": partial(FastNet, stem="learned"),
}

#: The input rank each model expects: 4 for images N x C x H x W, 3 for series N x C x L.
INPUT_RANK = {"lenet": 4, "fastnet": 4, "fastnet_nw": 4, "resnet18": 4, "densenet121": 4, "fcn1d": 3}


def names() -> list[str]:
    """Names accepted by `make`."""
    return sorted(_REGISTRY)


def make(name: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """Build a freshly initialized model by name; `image_size` matters only for 'lenet'."""
    check_choice(name, "name", names())
    check_positive_int(num_classes, "num_classes", minimum=2)
    check_positive_int(in_channels, "in_channels")
    if name == "lenet":
        return lenet(num_classes, in_channels, image_size)
    return _REGISTRY[name](num_classes=num_classes, in_channels=in_channels)


__all__ = ["INPUT_RANK", "DenseNet121", "FCN1d", "FastNet", "Normalize", "ResNet18", "lenet", "make", "names"]
