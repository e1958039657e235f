"""Pieces every model shares: the input normalization layer, dataset statistics, and where a model
runs (device, dtype, mode)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

# Per-channel mean/std of the training sets (CIFAR-10 and MNIST, official values).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
#: Images per forward pass for evaluation on a CPU, where small batches stay in cache: a FastNet
#: evaluates 1.2-1.4x faster than in batches of 500 or more (benchmarks/README.md), and static bands
#: give the same predictions (an energy band depends on the batch, so the zoo's cards keep 500).
CPU_BATCH = 128


class Normalize(nn.Module):
    """(x - mean) / std per channel, so a model takes [0, 1] inputs and attacks live in pixel space."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    mean: torch.Tensor
    std: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape).to(x.dtype)) / self.std.view(shape).to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={tuple(round(v, 4) for v in self.mean.tolist())}, std={tuple(round(v, 4) for v in self.std.tolist())}"


def default_stats(in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalization statistics for an image model: CIFAR-10's for 3 channels, MNIST's for 1, else 0.5/0.25."""
    if in_channels == 3:
        return CIFAR10_MEAN, CIFAR10_STD
    if in_channels == 1:
        return MNIST_MEAN, MNIST_STD
    return (0.5,) * in_channels, (0.25,) * in_channels


def input_std(model: nn.Module) -> torch.Tensor:
    """The per-channel std of the model's normalization layer: the unit of noise "in normalized units"."""
    layer = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    if layer is None:
        raise ValueError(f"model must normalize its input with a Normalize layer, {type(model).__name__} has none")
    return layer.std


def placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) of the model's first parameter, or (cpu, float32) for a parameter-free model:
    where and in what precision callers should send inputs."""
    parameter = next(model.parameters(), None)
    if parameter is None:
        return torch.device("cpu"), torch.float32
    return parameter.device, parameter.dtype


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode (per-example outputs, no batch statistics), restoring its mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def run_model(model: nn.Module, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """model(x), with the model's refusal of x (wrong channels or size for its layers) turned into a
    ValueError naming the argument; torch's message and traceback stay attached as the cause."""
    try:
        return model(x)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{name} of shape {tuple(x.shape)} does not fit the model: {reason}") from err
