"""BandLimitedConv1d / 2d / 3d: drop-in nn.Conv1d / 2d / 3d computed on a band.

They subclass the torch layers, so arguments, parameters, initialization and state_dict keys
are nn.Conv's; only forward changes. `fraction_kept` reports the band of the last forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_bl.spectral.backends import get_backend
from robustbench_bl.spectral.functional import band_limited_conv, check_band
from robustbench_bl.spectral.transforms import ROUTES
from robustbench_bl.validation import check_choice


class _BandLimited(nn.modules.conv._ConvNd):
    """Shared forward of the band-limited layers; mixed in before nn.ConvNd (next in the MRO)."""

    compress_rate: float
    energy: float | None
    backend: str
    transform: str
    fraction_kept: float | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        compress_rate: float | None = 0.0,
        energy: float | None = None,
        backend: str = "auto",
        transform: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(  # type: ignore[call-arg]  # nn.Conv1d/2d/3d (next in the MRO), not _ConvNd
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,  # type: ignore[arg-type]  # torch checks it: 'zeros', 'reflect', ...
            device=device,
            dtype=dtype,
        )
        get_backend(backend)  # fail at construction, not at the first forward
        self.backend = backend
        self.transform = check_choice(transform, "transform", ROUTES)
        self.fraction_kept = None
        self.set_band(compress_rate, energy)

    def set_band(self, compress_rate: float | None = 0.0, energy: float | None = None) -> None:
        """Change the band (e.g. test at another compression than trained at); same rules as __init__."""
        self.compress_rate, self.energy = check_band(compress_rate, energy)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        padding: str | tuple[int, ...] | int = self.padding
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        y, self.fraction_kept = band_limited_conv(
            input,
            self.weight,
            self.bias,
            self.stride,
            padding,
            self.dilation,
            self.groups,
            self.compress_rate,
            self.energy,
            self.backend,
            self.transform,
        )
        return y

    def extra_repr(self) -> str:
        band = f"energy={self.energy}" if self.energy is not None else f"compress_rate={self.compress_rate}"
        route = "" if self.transform == "auto" else f", transform={self.transform!r}"
        return f"{super().extra_repr()}, {band}, backend={self.backend!r}{route}"

    @classmethod
    def from_conv(
        cls,
        conv: nn.modules.conv._ConvNd,
        compress_rate: float | None = 0.0,
        energy: float | None = None,
        backend: str = "auto",
        transform: str = "auto",
    ) -> _BandLimited:
        """A band-limited copy of `conv` (same hyperparameters, device, dtype and weights)."""
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            compress_rate,
            energy,
            backend,
            transform,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        layer.load_state_dict(conv.state_dict())
        layer.train(conv.training)
        return layer


class BandLimitedConv2d(_BandLimited, nn.Conv2d):
    """nn.Conv2d whose input and filter spectra keep only a low-frequency band (forward and backward).

    compress_rate in [0, 1) discards that fraction of the one-sided spectrum (static scheme);
    energy in (0, 1] keeps the smallest band preserving that energy of the input (dynamic scheme).
    transform picks partial DFTs ('dft'), pruned FFTs ('fft') or the cheaper per shape ('auto').
    """


class BandLimitedConv1d(_BandLimited, nn.Conv1d):
    """nn.Conv1d whose input and filter spectra keep only a low-frequency band; see BandLimitedConv2d."""


class BandLimitedConv3d(_BandLimited, nn.Conv3d):
    """nn.Conv3d whose input and filter spectra keep only a low-frequency band; see BandLimitedConv2d."""


#: Every band-limited layer class, for isinstance checks.
BAND_LIMITED = (BandLimitedConv1d, BandLimitedConv2d, BandLimitedConv3d)
