"""band_limited_conv1d / conv2d: linear convolution through a band of low Fourier frequencies.

Input and filter spectra are computed only on the kept band, saved compressed in forward and
reused in backward, so gradients are band-limited by the same mask (Dziedzic et al., 2019).
"""

from __future__ import annotations

import functools
import math

import torch

from robustbench_bl.spectral import compression
from robustbench_bl.spectral.backends import SpectralBackend, get_backend
from robustbench_bl.spectral.transforms import (
    AxisDFT,
    AxisGeometry,
    analysis,
    analysis_batch_last,
    axis_dft,
    synthesis,
    synthesis_batch_last,
)
from robustbench_bl.validation import check_positive_int, check_range

Size = int | tuple[int, ...]


def _per_axis(value: object, name: str, d: int, minimum: int) -> tuple[int, ...]:
    values = (value,) * d if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (tuple, list)) or len(values) != d:
        raise ValueError(f"{name} must be an int or a tuple of {d} ints, got {value!r}")
    return tuple(check_positive_int(v, name, minimum) for v in values)


def _padding(padding: object, d: int, kernel: tuple[int, ...], dilation: tuple[int, ...], stride: tuple[int, ...]):
    """Per-axis (left, right) zero padding for an int, a tuple, 'valid' or 'same' (as F.conv)."""
    if padding == "valid":
        return ((0, 0),) * d
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError("padding='same' needs stride=1 (as in torch.nn.functional.conv), got stride " f"{stride}")
        totals = [dil * (k - 1) for k, dil in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int, a tuple of {d} ints, 'same' or 'valid', got {padding!r}")
    return tuple((p, p) for p in _per_axis(padding, "padding", d, 0))


def check_band(compress_rate: float | None, energy: float | None) -> tuple[float, float | None]:
    """Validate the exclusive pair (compress_rate, energy); return (rate, energy)."""
    if energy is not None:
        if compress_rate not in (None, 0, 0.0):
            raise ValueError(
                f"give either compress_rate or energy, not both (got compress_rate={compress_rate!r}, energy={energy!r})"
            )
        return 0.0, check_range(energy, "energy", 0.0, 1.0, low_inclusive=False)
    rate = 0.0 if compress_rate is None else compress_rate
    return check_range(rate, "compress_rate", 0.0, 1.0, high_inclusive=False), None


@functools.lru_cache(maxsize=256)
def _static_band(signal_shape: tuple[int, ...], compress_rate: float) -> tuple[tuple[int, ...], ...]:
    mask = compression.static_mask(signal_shape, compress_rate)
    return tuple(tuple(i.tolist()) for i in compression.band_indices(mask))


def _band(x: torch.Tensor, geoms: list[AxisGeometry], compress_rate: float, energy: float | None):
    """Kept bins per axis (indices into the one-sided spectrum's axes) for this input."""
    signal_shape = tuple(g.n for g in geoms)
    if energy is None:
        return _static_band(signal_shape, compress_rate)
    with torch.no_grad():
        spectrum = torch.fft.rfftn(x.detach(), s=signal_shape, dim=tuple(range(2, x.dim())))
    mask = compression.energy_mask(spectrum, energy, len(geoms), signal_shape=signal_shape)
    return tuple(tuple(i.tolist()) for i in compression.band_indices(mask))


class _BandLimitedConv(torch.autograd.Function):
    """Cross-correlation restricted to a band; saves only the compressed spectra X and W."""

    @staticmethod
    def forward(ctx, x, weight, axes: list[AxisDFT], backend: SpectralBackend, groups: int):
        n, c, *_ = x.shape
        o, cg, *_ = weight.shape
        kept = [a.input_analysis.shape[0] for a in axes]
        x_spec = analysis(x.reshape(n * c, *x.shape[2:]), [a.input_analysis for a in axes]).view(-1, n, c)
        w_spec = analysis_batch_last(_filters_last(weight), [a.weight_analysis for a in axes]).view(-1, cg, o)
        y_spec = backend.forward_product(x_spec, w_spec, groups).reshape(*kept, n * o)
        y = synthesis(y_spec, [a.output_synthesis for a in axes])
        ctx.save_for_backward(x_spec, w_spec)
        ctx.meta = (axes, backend, groups, x.shape, weight.shape)
        return y.view(n, o, *y.shape[1:])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        x_spec, w_spec = ctx.saved_tensors
        axes, backend, groups, x_shape, w_shape = ctx.meta
        n, o = grad_y.shape[:2]
        # The conjugate gradient spectrum costs the same to compute; as a lazy conj view it lets
        # the backend's GEMMs run on plain and transposed operands only.
        g_conj = analysis(grad_y.reshape(n * o, *grad_y.shape[2:]), [a.grad_analysis_conj for a in axes])
        kept = g_conj.shape[:-1]
        g_spec = g_conj.view(-1, n, o).conj()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            gx_spec = backend.grad_input_product(g_spec, w_spec, groups).reshape(*kept, -1)
            grad_x = synthesis(gx_spec, [a.input_adjoint for a in axes]).view(x_shape)
        if ctx.needs_input_grad[1]:
            gw_spec = backend.grad_weight_product(x_spec, g_spec, groups).reshape(*kept, -1)
            grad_w = synthesis_batch_last(gw_spec, [a.weight_adjoint for a in axes])
            grad_w = grad_w.view(*w_shape[2:], w_shape[1], w_shape[0]).permute(-1, -2, *range(len(axes)))
        return grad_x, grad_w.contiguous() if grad_w is not None else None, None, None, None


def _filters_last(weight: torch.Tensor) -> torch.Tensor:
    """(O, C/g, k_1, ..., k_d) -> (k_1, ..., k_d, C/g * O): taps first, as analysis_batch_last wants."""
    d = weight.dim() - 2
    return weight.permute(*range(2, d + 2), 1, 0).reshape(*weight.shape[2:], -1)


def _check_inputs(x: object, weight: object, bias: object, d: int, groups: int) -> None:
    layout = {1: "N x C x L", 2: "N x C x H x W"}[d]
    for name, t in (("input", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
        if t.dim() != d + 2:
            what = layout if name == "input" else f"out_channels x in_channels/groups x kernel ({d + 2} dims)"
            raise ValueError(f"{name} must be {what} (rank {d + 2}), got shape {tuple(t.shape)}")
    if weight.dtype != x.dtype or weight.device != x.device:
        raise TypeError(f"input and weight must share dtype and device, got {x.dtype}/{x.device} and {weight.dtype}/{weight.device}")
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(
            f"input must have in_channels={weight.shape[1] * groups} channels (weight.shape[1] * groups), "
            f"got {x.shape[1]} in shape {tuple(x.shape)}"
        )
    if weight.shape[0] % groups:
        raise ValueError(f"groups must divide out_channels={weight.shape[0]}, got groups={groups}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (weight.shape[0],)):
        raise ValueError(f"bias must be None or a tensor of shape ({weight.shape[0]},), got {bias!r:.80}")


def band_limited_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Size = 1,
    padding: Size | str = 0,
    dilation: Size = 1,
    groups: int = 1,
    compress_rate: float | None = 0.0,
    energy: float | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, float]:
    """Band-limited conv of any supported rank (1 or 2 spatial dims); returns (output, fraction kept)."""
    d = weight.dim() - 2 if isinstance(weight, torch.Tensor) else 0
    if d not in (1, 2):
        raise ValueError(f"weight must have rank 3 (conv1d) or 4 (conv2d), got {getattr(weight, 'shape', weight)!r}")
    groups = check_positive_int(groups, "groups")
    _check_inputs(x, weight, bias, d, groups)
    rate, energy = check_band(compress_rate, energy)
    stride_, dilation_ = _per_axis(stride, "stride", d, 1), _per_axis(dilation, "dilation", d, 1)
    kernel = tuple(weight.shape[2:])
    pads = _padding(padding, d, kernel, dilation_, stride_)
    geoms = [
        AxisGeometry(length, k, s, dil, *pad)
        for length, k, s, dil, pad in zip(x.shape[2:], kernel, stride_, dilation_, pads)
    ]
    if any(g.out < 1 for g in geoms):
        raise ValueError(
            f"input spatial size {tuple(x.shape[2:])} with padding {pads} is smaller than the dilated kernel "
            f"{tuple(dil * (k - 1) + 1 for k, dil in zip(kernel, dilation_))}"
        )
    if len(x) == 0:
        # An empty batch has no spectrum to band-limit: the static band's (empty) output, still in the graph.
        bands = _static_band(tuple(g.n for g in geoms), rate)
        y = x.new_zeros(0, weight.shape[0], *(g.out for g in geoms)) + 0 * (x.sum() + weight.sum())
    else:
        bands = _band(x, geoms, rate, energy)
        device = str(x.device)
        axes = [axis_dft(g, band, a == d - 1, x.dtype, device) for a, (g, band) in enumerate(zip(geoms, bands))]
        y = _BandLimitedConv.apply(x, weight, axes, get_backend(backend, x.device), groups)
    if bias is not None:
        y = y + bias.view(-1, *([1] * d))
    kept = math.prod(len(b) for b in bands) / math.prod(compression.spectrum_shape(tuple(g.n for g in geoms)))
    return y, kept


def band_limited_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Size = 1,
    padding: Size | str = 0,
    dilation: Size = 1,
    groups: int = 1,
    compress_rate: float | None = 0.0,
    energy: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Drop-in for F.conv2d computed on a low-frequency band; equals F.conv2d at compress_rate=0."""
    if isinstance(weight, torch.Tensor) and weight.dim() != 4:
        raise ValueError(f"weight must be out x in/groups x kH x kW (rank 4), got shape {tuple(weight.shape)}")
    return band_limited_conv(x, weight, bias, stride, padding, dilation, groups, compress_rate, energy, backend)[0]


def band_limited_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Size = 1,
    padding: Size | str = 0,
    dilation: Size = 1,
    groups: int = 1,
    compress_rate: float | None = 0.0,
    energy: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Drop-in for F.conv1d computed on a low-frequency band; equals F.conv1d at compress_rate=0."""
    if isinstance(weight, torch.Tensor) and weight.dim() != 3:
        raise ValueError(f"weight must be out x in/groups x kL (rank 3), got shape {tuple(weight.shape)}")
    return band_limited_conv(x, weight, bias, stride, padding, dilation, groups, compress_rate, energy, backend)[0]

