"""Backends for the three per-frequency complex products of band-limited convolution.

A backend takes compressed, frequency-first spectra and computes, summed per kept frequency:
forward X*W over input channels, grad-input G*conj(W) over output channels, grad-weight
conj(X)*G over the batch. 'torch' runs everywhere; 'cupy' (fused CUDA kernels) is optional.
"""

from __future__ import annotations

from typing import Protocol

import torch

from robustbench_bl.spectral.backends import cupy_backend  # imports CuPy only when loaded
from robustbench_bl.spectral.backends.torch_backend import TorchBackend
from robustbench_bl.validation import check_choice

BACKENDS = ("auto", "torch", "cupy")


class SpectralBackend(Protocol):
    """Spectra: X (K, N, C), W (K, C/groups, O), G and Y (K, N, O); K = kept frequencies."""

    name: str

    def forward_product(self, x_spec: torch.Tensor, w_spec: torch.Tensor, groups: int) -> torch.Tensor: ...

    def grad_input_product(self, g_spec: torch.Tensor, w_spec: torch.Tensor, groups: int) -> torch.Tensor: ...

    def grad_weight_product(self, x_spec: torch.Tensor, g_spec: torch.Tensor, groups: int) -> torch.Tensor: ...


def get_backend(name: str = "auto", device: torch.device | str | None = None) -> SpectralBackend:
    """The backend called `name` for tensors on `device` (None: not yet known, e.g. in a constructor).

    'torch' runs everywhere. 'cupy' needs CuPy, a CUDA device and a CUDA tensor, else a ValueError
    says which is missing. 'auto' is cupy where all that holds and its kernels compile, else torch.
    """
    check_choice(name, "backend", BACKENDS)
    on_cuda = device is not None and torch.device(device).type == "cuda"
    if name == "cupy" and device is not None and not on_cuda:
        raise ValueError(f"backend='cupy' runs on CUDA tensors, got a tensor on {device}; use 'torch' or 'auto'")
    if name == "cupy" or (name == "auto" and on_cuda):
        try:
            return cupy_backend.load()
        except ValueError:
            if name == "cupy":
                raise
    return TorchBackend()
