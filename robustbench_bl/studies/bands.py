"""What the band-limited-convolution studies share: test-time band changes on a copy of a trained
model, and the fraction of coefficients each layer keeps (training recipes: training.recipe)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from robustbench_bl.models.common import eval_mode, placement
from robustbench_bl.spectral import bandlimit
from robustbench_bl.spectral.layers import recording_bands


def with_band(model: nn.Module, compress_rate: float | None = None, energy: float | None = None) -> nn.Module:
    """A band-limited copy of a trained model at another band (the original is left as it is)."""
    return bandlimit(copy.deepcopy(model), compress_rate=compress_rate, energy=energy)


@torch.no_grad()
def layer_fractions(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Fraction of spectral coefficients each band-limited layer keeps on input `x` (eval mode).

    Energy-based bands depend on the input, so this runs one forward pass; the model's training
    mode is restored afterwards.
    """
    with eval_mode(model), recording_bands(model) as record:
        model(x.to(placement(model)[0]))
    return {name: fractions[-1] for name, fractions in record.items() if fractions}


def discarded(fractions: dict[str, float]) -> float:
    """Mean over layers of the fraction of coefficients discarded (0 for a model with no band-limited layer)."""
    return 1.0 - sum(fractions.values()) / len(fractions) if fractions else 0.0
