"""JPEG compression at a given quality, the transform defense users try first (libjpeg via Pillow).

The codec works on 8-bit images on the CPU, so this is the one channel with a host round trip.
"""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .base import Channel


def jpeg_roundtrip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode one H x W x 3 (RGB) or H x W (grayscale) uint8 image with Pillow's JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


class JPEG(Channel):
    """Encode and decode each image with JPEG at `quality` (1..100, Pillow's default 4:2:0 chroma).

    Three-channel images are coded as RGB, any other channel count one channel at a time as
    grayscale. No quality is lossless. JPEG is piecewise constant in x (it quantizes to 8 bits
    first), so gradient='exact' gives zero; use 'bpda' to attack through it.
    """

    name: ClassVar[str] = "jpeg"
    bounds: ClassVar[tuple[float, float]] = (1, 100)
    sweep: ClassVar[tuple[float, float]] = (100, 10)
    identity_strength: ClassVar[float | None] = None
    integer: ClassVar[bool] = True

    def __init__(self, quality: int, *, seed: int | None = None, gradient: str = "exact") -> None:
        super().__init__(quality, seed=seed, gradient=gradient)

    def _lossy(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        n, c, h, w = x.shape
        # Pillow wants H x W x 3 for RGB and H x W for grayscale planes.
        planes = x.detach().permute(0, 2, 3, 1) if c == 3 else x.detach().reshape(n * c, h, w)
        pixels = planes.mul(255).round_().to(device="cpu", dtype=torch.uint8).numpy()
        decoded = torch.from_numpy(np.stack([jpeg_roundtrip(p, self.strength) for p in pixels]))
        decoded = decoded.permute(0, 3, 1, 2) if c == 3 else decoded.reshape(n, c, h, w)
        y = decoded.to(device=x.device, dtype=x.dtype) / 255
        # The exact derivative is zero almost everywhere; attaching x with weight zero lets
        # autograd return that zero instead of failing on an output with no path to x.
        return y + 0 * x
