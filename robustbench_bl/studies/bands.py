"""What the band-limited-convolution studies share: test-time band changes on a copy of a trained
model, and the fraction of coefficients each layer keeps (training recipes: training.recipe)."""

from __future__ import annotations

import copy
from functools import partial

import torch
from torch import nn

from robustbench_bl.models.common import eval_mode, placement
from robustbench_bl.spectral import bandlimit
from robustbench_bl.spectral.layers import BAND_LIMITED, _BandLimited, recording_bands


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


@torch.no_grad()
def layer_sizes(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Spectral coefficients each band-limited layer transforms per image on input `x` (one forward
    pass in eval mode): the weights of a network-wide compression rate, as the first paper's Fig. 4
    counts it (the size of the FFT-domain intermediate results)."""
    sizes: dict[str, int] = {}

    def measure(name: str, module: _BandLimited, inputs: tuple[torch.Tensor, ...]) -> None:  # None: inputs unchanged
        sizes.setdefault(name, module.spectrum_size(inputs[0]))

    hooks = [
        layer.register_forward_pre_hook(partial(measure, name))
        for name, layer in model.named_modules()
        if isinstance(layer, BAND_LIMITED)
    ]
    try:
        with eval_mode(model):
            model(x[:1].to(placement(model)[0]))
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def discarded(fractions: dict[str, float]) -> float:
    """Mean over layers of the fraction of coefficients discarded (0 for a model with no band-limited layer)."""
    return 1.0 - sum(fractions.values()) / len(fractions) if fractions else 0.0
