"""bandlimit(model): swap every nn.Conv1d / nn.Conv2d for its band-limited twin, keeping weights."""

from __future__ import annotations

from torch import nn

from robustbench_bl.spectral.backends import get_backend
from robustbench_bl.spectral.functional import check_band
from robustbench_bl.spectral.layers import BandLimitedConv1d, BandLimitedConv2d


def bandlimit(
    model: nn.Module, compress_rate: float | None = None, energy: float | None = None, backend: str = "auto"
) -> nn.Module:
    """Band-limit every 1D/2D convolution of `model` in place and return it.

    Give compress_rate (static, default 0) or energy (dynamic), not both. Layers that are already
    band-limited get the new band; a convolution used under several names stays one shared module;
    other modules (Conv3d, transposed convs) are left as they are.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, (nn.Conv1d, nn.Conv2d)):
        raise TypeError("model is itself a convolution: use BandLimitedConv2d.from_conv(conv, ...) instead")
    rate, energy = check_band(compress_rate, energy)
    get_backend(backend)
    twins: dict[int, nn.Module] = {}  # a conv used in several places keeps one (shared) twin
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):  # every name, also a second name of one module
            if isinstance(child, (BandLimitedConv1d, BandLimitedConv2d)):
                child.set_band(rate, energy)
                child.backend = backend
            elif isinstance(child, (nn.Conv1d, nn.Conv2d)):
                if id(child) not in twins:
                    twin = BandLimitedConv2d if isinstance(child, nn.Conv2d) else BandLimitedConv1d
                    twins[id(child)] = twin.from_conv(child, rate, energy, backend)
                setattr(parent, name, twins[id(child)])
    return model
