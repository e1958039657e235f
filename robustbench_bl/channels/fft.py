"""FFT compression: each image channel keeps only the low-frequency band of its 2D spectrum.

The band is `spectral.compression.static_mask`, the same one band-limited convolutions use.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ..spectral.compression import static_mask
from .base import Channel


class FFTCompression(Channel):
    """Zero the high-frequency coefficients of each H x W channel; rate = fraction of them discarded.

    A linear projection, so gradient='exact' is its true (masked) gradient.
    """

    name: ClassVar[str] = "fft"
    bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    open_high: ClassVar[bool] = True
    sweep: ClassVar[tuple[float, float]] = (0.0, 0.9)
    identity_strength: ClassVar[float | None] = 0.0

    def __init__(self, rate: float, *, seed: int | None = None, gradient: str = "exact") -> None:
        super().__init__(rate, seed=seed, gradient=gradient)

    def _lossy(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        size = tuple(x.shape[-2:])
        mask = static_mask(size, self.strength, device=x.device)
        return torch.fft.irfft2(torch.fft.rfft2(x) * mask, s=size)
