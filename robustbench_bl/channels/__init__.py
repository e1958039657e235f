"""Lossy input channels: nn.Modules from [0, 1] images to [0, 1] images, placed in front of a model.

Use them in nn.Sequential(channel, model), in torchvision transform pipelines, or through Defended.
"""

from .base import Channel
from .color_depth import ColorDepth
from .compose import Compose, Identity
from .fft import FFTCompression
from .jpeg import JPEG
from .noise import GaussianNoise, LaplaceNoise, UniformNoise
from .registry import channel_class, make, names
from .svd import SVDCompression

__all__ = [
    "JPEG",
    "Channel",
    "ColorDepth",
    "Compose",
    "FFTCompression",
    "GaussianNoise",
    "Identity",
    "LaplaceNoise",
    "SVDCompression",
    "UniformNoise",
    "channel_class",
    "make",
    "names",
]
