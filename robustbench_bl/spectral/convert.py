"""bandlimit(model): swap every nn.Conv1d / 2d / 3d for its band-limited twin, keeping weights."""

from __future__ import annotations

from typing import TypeVar, cast

from torch import nn

from robustbench_bl.spectral.backends import get_backend
from robustbench_bl.spectral.functional import check_band
from robustbench_bl.spectral.layers import (
    BAND_LIMITED,
    BandLimitedConv1d,
    BandLimitedConv2d,
    BandLimitedConv3d,
    _BandLimited,
)

TWINS: dict[type[nn.Module], type[_BandLimited]] = {
    nn.Conv1d: BandLimitedConv1d,
    nn.Conv2d: BandLimitedConv2d,
    nn.Conv3d: BandLimitedConv3d,
}


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def bandlimit(
    model: ModuleT, compress_rate: float | None = None, energy: float | None = None, backend: str = "auto"
) -> ModuleT:
    """Band-limit every 1D/2D/3D convolution of `model` in place and return it.

    Give compress_rate (static, default 0) or energy (dynamic), not both. Layers that are already
    band-limited get the new band; a convolution used under several names stays one shared module;
    other modules (transposed convs) are left as they are.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, tuple(TWINS)):
        raise TypeError("model is itself a convolution: use BandLimitedConv2d.from_conv(conv, ...) instead")
    rate, energy = check_band(compress_rate, energy)
    get_backend(backend)
    if not any(isinstance(m, (*BAND_LIMITED, *TWINS)) for m in model.modules()):
        raise ValueError(
            f"model ({type(model).__name__}) has no nn.Conv1d/2d/3d and no band-limited layer: band-limiting it would "
            "change nothing (an error rather than a model returned as it was)"
        )
    twins: dict[int, nn.Module] = {}  # a conv used in several places keeps one (shared) twin
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):  # every name, also a second name of one module
            if isinstance(child, BAND_LIMITED):
                child.set_band(rate, energy)
                child.backend = backend
            elif isinstance(child, tuple(TWINS)):
                if id(child) not in twins:
                    twin = next(t for conv, t in TWINS.items() if isinstance(child, conv))
                    twins[id(child)] = twin.from_conv(cast(nn.modules.conv._ConvNd, child), rate, energy, backend)
                setattr(parent, name, twins[id(child)])
    return model
