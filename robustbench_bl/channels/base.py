"""The lossy-channel contract: an nn.Module from [0, 1] images to [0, 1] images of the same shape.

Every channel has one knob (`strength`), says whether it is random (`stochastic`), measures its own
distortion, and chooses how attackers differentiate through it (`gradient='exact' | 'bpda'`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..validation import check_choice, check_images, check_positive_int, check_range

GRADIENTS = ("exact", "bpda")


def check_channel_input(x: object, name: str = "x") -> tuple[Tensor, bool]:
    """Check an N x C x H x W batch or a single C x H x W image in [0, 1]; return (batch, was_single)."""
    if isinstance(x, Tensor) and x.dim() not in (3, 4):
        raise ValueError(
            f"{name} must be N x C x H x W (rank 4) or one C x H x W image (rank 3), got shape {tuple(x.shape)}"
        )
    single = isinstance(x, Tensor) and x.dim() == 3
    batch = check_images(x.unsqueeze(0) if isinstance(x, Tensor) and single else x, name)
    return batch, single


def straight_through(x: Tensor, y: Tensor) -> Tensor:
    """Return y's values with the identity as gradient w.r.t. x (BPDA with g(x) = x).

    x - x.detach() is exactly zero, so the values are y's bit for bit and stay in [0, 1].
    """
    return y.detach() + (x - x.detach())


class SeededGenerators:
    """One torch.Generator per device, each seeded with `seed` once; None (torch's global RNG) without a seed.

    Draws stay on the tensor's device, and two owners with the same seed draw the same values.
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = None if seed is None else check_positive_int(seed, "seed", minimum=0)
        self._generators: dict[torch.device, torch.Generator] = {}

    def __call__(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def state(self) -> dict[str, Tensor]:
        """Each generator's state by device name: where the draws stand, to resume them (`restore`)."""
        return {str(device): generator.get_state() for device, generator in self._generators.items()}

    def restore(self, state: dict[str, Tensor]) -> None:
        """Set the generators to a `state()`, so the next draws are those that followed it."""
        for name, value in state.items():
            generator = self(torch.device(name))
            if generator is not None:
                generator.set_state(value)


class Channel(nn.Module, ABC):
    """A lossy input channel C: x -> C(x), images in [0, 1] to images in [0, 1], clipped at the end.

    Subclasses declare `name` (registry key), the accepted strengths `bounds` (`open_high` makes the
    upper end exclusive), `sweep` = (least lossy, most lossy) strength for studies, the
    `identity_strength` at which C is the identity on 8-bit images (None if no strength is
    lossless), and whether the strength is an `integer`; they implement `_lossy`.

    gradient='exact' lets autograd differentiate the channel as computed (zero through rounding);
    gradient='bpda' makes the whole channel the identity in backward, Athalye et al.'s
    straight-through approximation and ART's default preprocessor gradient.
    """

    name: ClassVar[str]
    bounds: ClassVar[tuple[float, float]]
    open_high: ClassVar[bool] = False
    sweep: ClassVar[tuple[float, float]]
    identity_strength: ClassVar[float | None]
    integer: ClassVar[bool] = False
    stochastic: bool = False

    def __init__(self, strength: Any, *, seed: int | None = None, gradient: str = "exact") -> None:
        super().__init__()
        self.strength = self.check_strength(strength)
        self.generator = SeededGenerators(seed)
        self.seed = self.generator.seed
        self.gradient = check_choice(gradient, "gradient", GRADIENTS)

    @classmethod
    def check_strength(cls, value: object) -> Any:
        """Return `value` if it is an accepted strength for this channel, else raise naming the range."""
        name = f"{cls.__name__} strength"
        if cls.integer:
            value = check_positive_int(value, name, minimum=int(cls.bounds[0]))
        low, high = cls.bounds
        checked = check_range(value, name, low, high, high_inclusive=not cls.open_high)
        return value if cls.integer else checked

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Apply the channel to an N x C x H x W batch or one C x H x W image in [0, 1]."""
        batch, single = check_channel_input(x)
        y = self.transform(batch, generator)
        return y.squeeze(0) if single else y

    def transform(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Apply the channel to an already checked batch (callers that repeat a batch check it once).

        `generator` overrides the channel's own draws (Defended passes its seeded one).
        """
        if len(x) == 0:
            return x  # an empty batch: nothing to transform (and FFT/JPEG kernels reject it)
        generator = generator if generator is not None else self.generator(x.device)
        if x.dtype in (torch.float16, torch.bfloat16):
            # Computed in float32, returned in x's dtype: torch has no half FFT/eigh on CPU, and
            # x * 255 in half precision can round to the wrong 8-bit level.
            y = self._lossy(x.float(), generator).to(x.dtype)
        else:
            y = self._lossy(x, generator)
        if y is x:
            return x  # a lossless step on a checked [0, 1] batch: nothing to clip or to straighten
        # Clip in place where no graph records y (voting): it saves a pass over the repeated batch.
        y = y.clamp(0, 1) if y.requires_grad else y.clamp_(0, 1)
        return straight_through(x, y) if self.gradient == "bpda" else y

    @abstractmethod
    def _lossy(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """The channel itself on a checked N x C x H x W batch, before the final clip.

        It returns x itself or a new tensor that it owns (the clip may then write into it).
        """

    @torch.no_grad()
    def distortion(self, x: Tensor, draws: int = 16) -> Tensor:
        """Per-example L2 distortion ||C(x) - x||_2 (N,), averaged over `draws` draws if stochastic."""
        batch, _ = check_channel_input(x)
        draws = check_positive_int(draws, "draws") if self.stochastic else 1
        repeated = batch.repeat(draws, 1, 1, 1)
        errors = (self.transform(repeated) - repeated).flatten(1).norm(dim=1)
        return errors.view(draws, len(batch)).mean(0)

    def extra_repr(self) -> str:
        seed = "" if self.seed is None else f", seed={self.seed}"
        return f"{self.strength!r}, gradient={self.gradient!r}{seed}"
