"""Color-depth reduction: every pixel value rounded to one of 2^bits evenly spaced levels."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from .base import Channel


class ColorDepth(Channel):
    """C(v, b) = round((2^b - 1) v) / (2^b - 1), b in 1..8; the identity on 8-bit images at b = 8.

    Rounding is piecewise constant, so gradient='exact' gives zero; use 'bpda' to attack through it.
    """

    name: ClassVar[str] = "cd"
    bounds: ClassVar[tuple[float, float]] = (1, 8)
    sweep: ClassVar[tuple[float, float]] = (8, 1)
    identity_strength: ClassVar[float | None] = 8
    integer: ClassVar[bool] = True

    def __init__(self, bits: int, *, seed: int | None = None, gradient: str = "exact") -> None:
        super().__init__(bits, seed=seed, gradient=gradient)

    def _lossy(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        levels = 2**self.strength - 1
        return torch.round(x * levels) / levels
