"""SVD compression: each image channel replaced by its best rank-k approximation (Eckart-Young).

Batched over images and channels in one linear-algebra call; never a Python loop over images.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from .base import Channel


class _RankTruncation(torch.autograd.Function):
    """Y = U_k U_k^T X for X (..., m, n) with m <= n, U_k the top-k left singular vectors of X.

    Forward takes U_k from `eigh` of the m x m Gram matrix X X^T: on CPU that is about twice as
    fast as a batched SVD, and only U_k is needed. Backward differentiates the projector
    P = U_k U_k^T through the kept/discarded eigenvalue gaps only, so repeated singular values
    within either group (rank-deficient images) give finite gradients where autograd through
    eigh or svd gives NaN. Where the cut itself is degenerate (lambda_k = lambda_k+1) the
    truncation is not differentiable; those pairs contribute zero.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, k: int) -> Tensor:
        eigenvalues, vectors = torch.linalg.eigh(x @ x.mT)  # ascending
        kept = vectors[..., -k:]
        ctx.save_for_backward(x, eigenvalues, vectors)
        ctx.k = k
        return kept @ (kept.mT @ x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        x, eigenvalues, vectors = ctx.saved_tensors
        m = x.shape[-2]
        is_kept = torch.arange(m, device=x.device) >= m - ctx.k
        across = is_kept[:, None] != is_kept[None, :]
        gaps = (eigenvalues[..., :, None] - eigenvalues[..., None, :]).abs()
        tiny = torch.finfo(x.dtype).eps * eigenvalues[..., -1:, None].clamp_min(torch.finfo(x.dtype).tiny)
        usable = across & (gaps > tiny)
        inverse_gaps = torch.where(usable, gaps, torch.full_like(gaps, math.inf)).reciprocal()
        kept = vectors[..., -ctx.k :]
        coupled = vectors @ (inverse_gaps * (vectors.mT @ (grad @ x.mT) @ vectors)) @ vectors.mT
        return kept @ (kept.mT @ grad) + (coupled + coupled.mT) @ x, None


class SVDCompression(Channel):
    """Keep the largest singular values of each H x W image channel; rate = fraction of the rank dropped.

    It keeps ceil((1 - rate) * min(H, W)) singular values, so at least one survives.
    """

    name: ClassVar[str] = "svd"
    bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    open_high: ClassVar[bool] = True
    sweep: ClassVar[tuple[float, float]] = (0.0, 0.9)
    identity_strength: ClassVar[float | None] = 0.0

    def __init__(self, rate: float, *, seed: int | None = None, gradient: str = "exact") -> None:
        super().__init__(rate, seed=seed, gradient=gradient)

    def rank_kept(self, height: int, width: int) -> int:
        """Singular values kept for an H x W channel."""
        rank = min(height, width)
        return max(1, math.ceil(round((1 - self.strength) * rank, 9)))

    def _lossy(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        k = self.rank_kept(x.shape[-2], x.shape[-1])
        if k == min(x.shape[-2:]):
            return x
        # The Gram matrix of the shorter side is the smaller eigenproblem.
        if x.shape[-2] > x.shape[-1]:
            return _RankTruncation.apply(x.mT, k).mT
        return _RankTruncation.apply(x, k)
