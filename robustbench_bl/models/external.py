"""A user's own model for the command line: `package.module:factory` (a callable returning an
`nn.Module` that takes [0, 1] images, normalization inside) plus optional weights, loaded safely.

Weights are a safetensors file or a state dict saved with `torch.save(model.state_dict(), ...)`,
read with `weights_only=True`: a file that would need code to unpickle is refused, never run.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn


def from_factory(spec: str, name: str = "--model") -> nn.Module:
    """The module `factory()` returns for spec 'package.module:factory' (the current folder is
    importable, as for `python -m`)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{name} must be 'package.module:factory' (a callable returning an nn.Module), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{name} {spec!r}: cannot import {module_name!r} ({err})") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"{name} {spec!r}: {module_name} has no callable {attribute!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} {spec!r}: {attribute}() must return a torch nn.Module, got {type(model).__name__}")
    return model


def load_weights(model: nn.Module, path: str | os.PathLike[str], name: str = "--weights") -> nn.Module:
    """`model` with the state dict in `path` (safetensors, or a weights-only torch file) loaded."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{name} must be an existing file, got {str(path)!r}")
    try:
        if file.suffix == ".safetensors":
            state = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{name} {file} holds objects other than tensors, which are not loaded (no code from a weights file "
            "runs here); save the weights with torch.save(model.state_dict(), PATH) or as safetensors"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, SafetensorError) as err:
        raise ValueError(f"{name} {file} is not a readable weights file ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{name} {file} must hold a state dict (names to tensors), got {type(state).__name__}")
    if problem := state_mismatch(model, state):
        raise ValueError(f"{name} {file} does not fit the model: {problem}")
    model.load_state_dict(state)
    return model


def state_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """What keeps `state` from loading into `model` (missing, unexpected and mis-shaped keys, a few
    of each), or '' when it fits: a sentence instead of load_state_dict's RuntimeError."""
    mine = model.state_dict()
    missing, unexpected = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    wrong = sorted(k for k in set(mine) & set(state) if mine[k].shape != state[k].shape)
    return "; ".join(
        f"{label} {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong))
        if keys
    )
