"""Reference backend: the three per-frequency channel products as batched torch matmuls.

Runs on every device torch does. Spectra are complex and frequency-first: X (K, N, C),
W (K, C/groups, O), G and Y (K, N, O). Batched GEMM cannot conjugate an operand without a
copy, so conj(a) b is computed as conj(a^T conj(b))-style identities on torch's lazy conj views:
pass G as a lazily conjugated tensor (G = Gc.conj()) and no spectrum is copied.
"""

from __future__ import annotations

import torch


def _grouped(t: torch.Tensor, groups: int) -> torch.Tensor:
    """(K, rows, C) -> (K, groups, rows, C // groups): one matrix per frequency and group (groups=1: t)."""
    if groups == 1:
        return t
    k, rows, c = t.shape
    return t.view(k, rows, groups, c // groups).transpose(1, 2)


def _ungrouped(t: torch.Tensor) -> torch.Tensor:
    """(K, groups, rows, c) -> (K, rows, groups * c); a 3-dim t (groups=1) is already that."""
    if t.dim() == 3:
        return t
    k, groups, rows, c = t.shape
    return t.transpose(1, 2).reshape(k, rows, groups * c)


class TorchBackend:
    """Channel mixing per kept frequency with torch.matmul; results may be lazily conjugated."""

    name = "torch"

    @staticmethod
    def forward_product(x_spec: torch.Tensor, w_spec: torch.Tensor, groups: int) -> torch.Tensor:
        """Y[k, n, o] = sum_c X[k, n, c] W[k, c, o] within each group."""
        return _ungrouped(torch.matmul(_grouped(x_spec, groups), _grouped(w_spec, groups)))

    @staticmethod
    def grad_input_product(g_spec: torch.Tensor, w_spec: torch.Tensor, groups: int) -> torch.Tensor:
        """gX[k, n, c] = sum_o G[k, n, o] conj(W[k, c, o]) within each group."""
        return _ungrouped(torch.matmul(_grouped(g_spec, groups).conj(), _grouped(w_spec, groups).mT).conj())

    @staticmethod
    def grad_weight_product(x_spec: torch.Tensor, g_spec: torch.Tensor, groups: int) -> torch.Tensor:
        """gW[k, c, o] = sum_n conj(X[k, n, c]) G[k, n, o] within each group."""
        return _ungrouped(torch.matmul(_grouped(x_spec, groups).mT, _grouped(g_spec, groups).conj()).conj())
