"""BandLimitedConv1d / 2d / 3d: drop-in nn.Conv1d / 2d / 3d computed on a band.

They subclass the torch layers, so arguments, parameters, initialization, state_dict keys and
`forward` are nn.Conv's; only `_conv_forward` (the convolution itself, as in torch) changes.
`kept_fraction(x)` says how much of the spectrum the layer keeps on an input; `recording_bands`
records it for every forward of a model's band-limited layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_bl.spectral.backends import get_backend
from robustbench_bl.spectral.functional import band_limited_conv, check_band, kept_fraction, spectrum_size
from robustbench_bl.spectral.transforms import ROUTES
from robustbench_bl.validation import check_choice


class _BandLimited(nn.modules.conv._ConvNd):
    """Shared forward of the band-limited layers; mixed in before nn.ConvNd (next in the MRO)."""

    compress_rate: float
    energy: float | None
    backend: str
    transform: str

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
        self.set_band(compress_rate, energy)

    def set_band(self, compress_rate: float | None = 0.0, energy: float | None = None) -> None:
        """Change the band (e.g. test at another compression than trained at); same rules as __init__."""
        self.compress_rate, self.energy = check_band(compress_rate, energy)

    def _padded(self, input: torch.Tensor) -> tuple[torch.Tensor, str | tuple[int, ...]]:
        """(input, padding) as torch's conv layers pass them on: explicitly padded for a padding_mode
        other than 'zeros' (then no further padding), else as given."""
        if self.padding_mode != "zeros":
            return F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode), 0  # type: ignore[return-value]
        return input, self.padding

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        input, padding = self._padded(input)
        return band_limited_conv(
            input,
            weight,
            bias,
            self.stride,
            padding,
            self.dilation,
            self.groups,
            self.compress_rate,
            self.energy,
            self.backend,
            self.transform,
        )[0]

    @torch.no_grad()
    def kept_fraction(self, input: torch.Tensor) -> float:
        """The fraction of the one-sided spectrum this layer keeps on `input` (static: fixed by the
        shapes; energy: chosen from the input's spectrum)."""
        input, padding = self._padded(input)
        return kept_fraction(
            input, self.kernel_size, self.stride, padding, self.dilation, self.compress_rate, self.energy
        )

    def spectrum_size(self, input: torch.Tensor) -> int:
        """Coefficients of the one-sided spectra this layer transforms per image of `input` (every
        input channel): what its kept fraction is a fraction of."""
        input, padding = self._padded(input)
        return self.in_channels * spectrum_size(input, self.kernel_size, self.stride, padding, self.dilation)

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


@contextlib.contextmanager
def recording_bands(model: nn.Module) -> Iterator[dict[str, list[float]]]:
    """Within the block, every forward of a band-limited layer of `model` appends the fraction of the
    spectrum it keeps to the yielded {layer name: [fractions]} (plain convolutions are not listed)."""
    record: dict[str, list[float]] = {}
    handles = []
    for name, layer in model.named_modules():
        if isinstance(layer, BAND_LIMITED):
            record[name] = []
            hook = lambda module, inputs, out=record[name]: out.append(module.kept_fraction(inputs[0]))
            handles.append(layer.register_forward_pre_hook(hook))
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()
