"""Additive i.i.d. noise channels (Gaussian, uniform, Laplace), clipped to [0, 1] afterwards.

Strengths are in pixel units of [0, 1] images; draws come from the channel's (or a caller's) generator.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from .base import Channel


class AdditiveNoise(Channel):
    """x + noise, i.i.d. per pixel; subclasses draw the noise scaled to their strength."""

    bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    identity_strength: ClassVar[float | None] = 0.0
    stochastic = True

    def _lossy(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.noise(x, generator).add_(x)  # in place on the fresh draw: one less T x N buffer

    @abstractmethod
    def noise(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        """One noise draw with the shape, dtype and device of `like`."""


class GaussianNoise(AdditiveNoise):
    """Gaussian noise N(0, sigma^2); with a majority vote, the smoothed classifier of Cohen et al."""

    name: ClassVar[str] = "gauss"
    sweep: ClassVar[tuple[float, float]] = (0.0, 0.1)

    def __init__(self, sigma: float, *, seed: int | None = None, gradient: str = "exact") -> None:
        super().__init__(sigma, seed=seed, gradient=gradient)

    def noise(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        draw = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        return draw.mul_(self.strength)


class UniformNoise(AdditiveNoise):
    """Uniform noise on [-bound, bound]."""

    name: ClassVar[str] = "uniform"
    sweep: ClassVar[tuple[float, float]] = (0.0, 0.1)

    def __init__(self, bound: float, *, seed: int | None = None, gradient: str = "exact") -> None:
        super().__init__(bound, seed=seed, gradient=gradient)

    def noise(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        draw = torch.rand(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        return draw.mul_(2 * self.strength).sub_(self.strength)


class LaplaceNoise(AdditiveNoise):
    """Laplace noise with the given scale (standard deviation sqrt(2) * scale)."""

    name: ClassVar[str] = "laplace"
    sweep: ClassVar[tuple[float, float]] = (0.0, 0.07)

    def __init__(self, scale: float, *, seed: int | None = None, gradient: str = "exact") -> None:
        super().__init__(scale, seed=seed, gradient=gradient)

    def noise(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        # The difference of two Exp(1) draws is Laplace(0, 1); torch.distributions takes no generator.
        pair = torch.empty((2, *like.shape), dtype=like.dtype, device=like.device).exponential_(generator=generator)
        return (pair[0] - pair[1]).mul_(self.strength)
