"""Backends for the three per-frequency complex products of band-limited convolution.

A backend takes compressed, frequency-first spectra and computes, summed per kept frequency:
forward X*W over input channels, grad-input G*conj(W) over output channels, grad-weight
conj(X)*G over the batch. 'torch' runs everywhere; 'cupy' (fused CUDA kernels) is optional.
"""

from __future__ import annotations

from typing import Protocol

import torch

from robustbench_bl.spectral.backends.torch_backend import TorchBackend
from robustbench_bl.validation import check_choice

BACKENDS = ("auto", "torch", "cupy")


class SpectralBackend(Protocol):
    """Spectra: X (K, N, C), W (K, C/groups, O), G and Y (K, N, O); K = kept frequencies."""

    name: str

    def forward_product(self, x_spec: torch.Tensor, w_spec: torch.Tensor, groups: int) -> torch.Tensor: ...

    def grad_input_product(self, g_spec: torch.Tensor, w_spec: torch.Tensor, groups: int) -> torch.Tensor: ...

    def grad_weight_product(self, x_spec: torch.Tensor, g_spec: torch.Tensor, groups: int) -> torch.Tensor: ...


def _cupy_backend() -> SpectralBackend:
    try:
        import cupy  # noqa: F401  (optional dependency: pip install robustbench-bl[gpu])
    except ImportError as err:
        raise ValueError("backend='cupy' needs CuPy (pip install 'robustbench-bl[gpu]'); use 'torch' or 'auto'") from err
    if not torch.cuda.is_available():
        raise ValueError("backend='cupy' needs a CUDA device, and torch sees none; use 'torch' or 'auto'")
    raise ValueError("backend='cupy' is not implemented yet; use 'torch' or 'auto'")


def get_backend(name: str = "auto") -> SpectralBackend:
    """The backend called `name`, one of 'auto' (torch for now), 'torch' or 'cupy'."""
    check_choice(name, "backend", BACKENDS)
    if name == "cupy":
        return _cupy_backend()
    return TorchBackend()
