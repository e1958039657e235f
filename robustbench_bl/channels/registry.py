"""Channels by name, for sweeps and command lines: make("gauss:0.03"), make("fft", 0.5), names()."""

from __future__ import annotations

from typing import Any

from .base import Channel
from .color_depth import ColorDepth
from .compose import Identity
from .fft import FFTCompression
from .jpeg import JPEG
from .noise import GaussianNoise, LaplaceNoise, UniformNoise
from .svd import SVDCompression

CHANNELS: dict[str, type[Channel]] = {
    cls.name: cls
    for cls in (FFTCompression, ColorDepth, SVDCompression, GaussianNoise, UniformNoise, LaplaceNoise, JPEG, Identity)
}


def names() -> list[str]:
    """Registered channel names, sorted."""
    return sorted(CHANNELS)


def channel_class(name: str) -> type[Channel]:
    """The class registered as `name` (its bounds, sweep and identity strength)."""
    if name not in CHANNELS:
        raise ValueError(f"channel must be one of {names()}, got {name!r}")
    return CHANNELS[name]


def make(spec: str, strength: Any = None, **kwargs: Any) -> Channel:
    """Build a channel from "name" plus `strength`, or "name:strength"; kwargs go to the class (seed, gradient).

    A class with a single accepted strength (identity) needs none.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str such as 'gauss:0.03', got {type(spec).__name__}")
    name, sep, text = spec.partition(":")
    cls = channel_class(name)
    if sep:
        if strength is not None:
            raise ValueError(f"give the strength in spec or as strength, not both: {spec!r}, strength={strength!r}")
        strength = _parse_strength(cls, text)
    if strength is None:
        low, high = cls.bounds
        if low != high:
            raise ValueError(f"channel {name!r} needs a strength in [{low}, {high}], e.g. '{name}:{cls.sweep[1]}'")
        strength = low
    return cls(strength, **kwargs)


def _parse_strength(cls: type[Channel], text: str) -> Any:
    try:
        return int(text) if cls.integer else float(text)
    except ValueError:
        kind = "an int" if cls.integer else "a number"
        raise ValueError(f"strength of {cls.name!r} must be {kind}, got {text!r}") from None
