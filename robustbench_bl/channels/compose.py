"""The neutral channel and the composition of channels, so defenses stack without new classes."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from .base import Channel


class Identity(Channel):
    """The lossless channel: Defended(model, Identity()) is the bare model."""

    name: ClassVar[str] = "identity"
    bounds: ClassVar[tuple[float, float]] = (0.0, 0.0)
    sweep: ClassVar[tuple[float, float]] = (0.0, 0.0)
    identity_strength: ClassVar[float | None] = 0.0

    def __init__(self, strength: float = 0.0, *, seed: int | None = None, gradient: str = "exact") -> None:
        super().__init__(strength, seed=seed, gradient=gradient)

    def _lossy(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return x


class Compose(Channel):
    """Channels applied left to right; each keeps its own gradient mode and seed.

    Its strength is the tuple of its parts' strengths; it is stochastic if any part is.
    A generator passed in (e.g. Defended's) drives every stochastic part.
    """

    name: ClassVar[str] = "compose"

    def __init__(self, *channels: Channel) -> None:
        if not channels or not all(isinstance(c, Channel) for c in channels):
            raise TypeError(f"Compose takes one or more Channel instances, got {[type(c).__name__ for c in channels]}")
        super().__init__(tuple(c.strength for c in channels))
        self.parts = nn.ModuleList(channels)
        self.stochastic = any(c.stochastic for c in channels)

    @classmethod
    def check_strength(cls, value: object) -> Any:
        return value

    def _lossy(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        for part in cast("list[Channel]", self.parts):
            x = part.transform(x, generator)
        return x

    def extra_repr(self) -> str:
        return ""
