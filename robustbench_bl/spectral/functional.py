"""band_limited_conv1d / conv2d / conv3d: linear convolution through a band of low Fourier frequencies.

Input and filter spectra are computed only on the kept band; the input's is saved compressed for
backward, the filter's recomputed there, so gradients are band-limited by the same mask
(Dziedzic et al., 2019). Shapes are checked once per distinct call and their transforms cached.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence

import torch

from robustbench_bl.spectral import compression, transforms
from robustbench_bl.spectral.backends import SpectralBackend, get_backend
from robustbench_bl.spectral.transforms import AxisGeometry, Plan
from robustbench_bl.validation import check_choice, check_positive_int, check_range

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
            raise ValueError(f"padding='same' needs stride=1 (as in torch.nn.functional.conv), got stride {stride}")
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


def _band(x: torch.Tensor, geoms: Sequence[AxisGeometry], compress_rate: float, energy: float | None):
    """Kept bins per axis (indices into the one-sided spectrum's axes) for this input."""
    signal_shape = tuple(g.n for g in geoms)
    if energy is None:
        return _static_band(signal_shape, compress_rate)
    with torch.no_grad():
        spectrum = torch.fft.rfftn(x.detach(), s=signal_shape, dim=tuple(range(2, x.dim())))
    mask = compression.energy_mask(spectrum, energy, len(geoms), signal_shape=signal_shape)
    return tuple(tuple(i.tolist()) for i in compression.band_indices(mask))


def _full_precision(backward):
    """A Function's backward with autocast off: its DFT GEMMs run in the dtype forward used, even
    when a caller runs backward inside an autocast region."""

    @functools.wraps(backward)
    def wrapped(ctx, grad):
        with torch.autocast(grad.device.type, enabled=False):
            return backward(ctx, grad)

    return wrapped


class _InputSpectrum(torch.autograd.Function):
    """X: the kept band of the input's spectrum, frequency-first (K_1, B, N*C). Linear; its backward
    (the transform's adjoint) is made of torch ops, so it is differentiable again. Saves nothing."""

    @staticmethod
    def forward(ctx, x, plan: Plan):
        n, c = x.shape[:2]
        ctx.meta = (plan, x.shape)
        return plan.input_spectrum(x.reshape(n * c, *x.shape[2:])).view(plan.kept[0], -1, n * c)

    @staticmethod
    @_full_precision
    def backward(ctx, grad_spec):
        plan, shape = ctx.meta
        return plan.input_grad(grad_spec.reshape(*plan.kept, shape[0] * shape[1])).view(shape), None


class _BandLimitedConv(torch.autograd.Function):
    """Cross-correlation of an input spectrum X with real filters, restricted to the band. Saves X
    and the filters; the filter spectrum W (K x C x O, which grows with the map) is formed a chunk
    of frequencies at a time, in forward and again in backward, and never stored whole.

    The backward is itself a band-limited product of torch ops (no once_differentiable), and X
    comes from `_InputSpectrum` inside the graph, so second derivatives (input Hessians, gradient
    penalties) are exact: `torch.autograd.grad(..., create_graph=True)` works through the layer.
    """

    @staticmethod
    def forward(ctx, x_spec, weight, plan: Plan, backend: SpectralBackend, groups: int, x_shape: torch.Size):
        n, c = x_shape[:2]
        o, cg = weight.shape[:2]
        y_spec = _stitched(
            backend.forward_product(x_spec[rows].view(-1, n, c), w_rows.view(-1, cg, o), groups)
            for rows, w_rows in plan.filter_chunks(_filters_last(weight))
        )
        y = plan.output(y_spec.reshape(*plan.kept, n * o))
        ctx.save_for_backward(x_spec if ctx.needs_input_grad[1] else None, weight if ctx.needs_input_grad[0] else None)
        ctx.meta = (plan, backend, groups, x_shape, weight.shape)
        return y.view(n, o, *y.shape[1:])

    @staticmethod
    @_full_precision
    def backward(ctx, grad_y):
        x_spec, weight = ctx.saved_tensors
        plan, backend, groups, x_shape, w_shape = ctx.meta
        if torch.is_grad_enabled() and backend.name != "torch":
            raise RuntimeError(
                f"second derivatives through band-limited convolutions need backend='torch', got {backend.name!r}"
            )
        (n, c), (o, cg) = x_shape[:2], w_shape[:2]
        g_spec = plan.grad_spectrum(grad_y.reshape(n * o, *grad_y.shape[2:])).view(plan.kept[0], -1, n * o)
        grad_x_spec = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x_spec = _stitched(
                backend.grad_input_product(g_spec[rows].view(-1, n, o), w_rows.view(-1, cg, o), groups)
                for rows, w_rows in plan.filter_chunks(_filters_last(weight))
            ).reshape(plan.kept[0], -1, n * c)  # grouped products come back strided (one channel per group)
        if ctx.needs_input_grad[1]:
            for rows in plan.row_chunks(cg * o):
                gw_rows = backend.grad_weight_product(x_spec[rows].view(-1, n, c), g_spec[rows].view(-1, n, o), groups)
                share = plan.filter_grad_rows(gw_rows.reshape(-1, *plan.kept[1:], cg * o), rows)
                grad_w = share if grad_w is None else grad_w + share
            grad_w = grad_w.view(*w_shape[2:], cg, o).permute(-1, -2, *range(len(plan.kept))).contiguous()
        return grad_x_spec, grad_w, None, None, None, None


def _stitched(chunks: Iterator[torch.Tensor]) -> torch.Tensor:
    """Per-chunk products stitched along the (frequency-first) rows; one chunk is returned as it is."""
    parts = list(chunks)
    return parts[0] if len(parts) == 1 else torch.cat([part.resolve_conj() for part in parts])


def _filters_last(weight: torch.Tensor) -> torch.Tensor:
    """(O, C/g, k_1, ..., k_d) -> (k_1, ..., k_d, C/g * O): taps first, as analysis_batch_last wants."""
    d = weight.dim() - 2
    return weight.permute(*range(2, d + 2), 1, 0).reshape(*weight.shape[2:], -1)


LAYOUTS = {1: "N x C x L", 2: "N x C x H x W", 3: "N x C x D x H x W"}


def _check_inputs(x: object, weight: object, bias: object, d: int, groups: int) -> None:
    for name, t in (("input", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"{name} must be float32 or float64 (bfloat16 and float16 only inside torch.autocast), got {t.dtype}"
            )
        if t.dim() != d + 2:
            what = LAYOUTS[d] if name == "input" else f"out_channels x in_channels/groups x kernel ({d + 2} dims)"
            raise ValueError(f"{name} must be {what} (rank {d + 2}), got shape {tuple(t.shape)}")
    assert isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor)  # checked just above
    if weight.dtype != x.dtype or weight.device != x.device:
        raise TypeError(
            f"input and weight must share dtype and device, got {x.dtype}/{x.device} and {weight.dtype}/{weight.device}"
        )
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(
            f"input must have in_channels={weight.shape[1] * groups} channels (weight.shape[1] * groups), "
            f"got {x.shape[1]} in shape {tuple(x.shape)}"
        )
    if weight.shape[0] % groups:
        raise ValueError(f"groups must divide out_channels={weight.shape[0]}, got groups={groups}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (weight.shape[0],)):
        raise ValueError(f"bias must be None or a tensor of shape ({weight.shape[0]},), got {bias!r:.80}")


def _geometry(
    spatial: tuple[int, ...], kernel: tuple[int, ...], stride: object, padding: object, dilation: object
) -> tuple[AxisGeometry, ...]:
    """Per-axis geometry of one call's shapes and hyperparameters, checked once per distinct call."""
    key = tuple(tuple(v) if isinstance(v, list) else v for v in (stride, padding, dilation))
    try:
        return _cached_geometry(spatial, kernel, *key)
    except TypeError as err:
        if "unhashable" not in str(err):
            raise
        return _cached_geometry.__wrapped__(spatial, kernel, *key)


@functools.lru_cache(maxsize=1024)
def _cached_geometry(
    spatial: tuple[int, ...], kernel: tuple[int, ...], stride: object, padding: object, dilation: object
) -> tuple[AxisGeometry, ...]:
    d = len(kernel)
    stride_, dilation_ = _per_axis(stride, "stride", d, 1), _per_axis(dilation, "dilation", d, 1)
    pads = _padding(padding, d, kernel, dilation_, stride_)
    geoms = tuple(
        AxisGeometry(length, k, s, dil, *pad)
        for length, k, s, dil, pad in zip(spatial, kernel, stride_, dilation_, pads)
    )
    if any(g.out < 1 for g in geoms):
        raise ValueError(
            f"input spatial size {spatial} with padding {pads} is smaller than the dilated kernel "
            f"{tuple(dil * (k - 1) + 1 for k, dil in zip(kernel, dilation_))}"
        )
    return geoms


@functools.lru_cache(maxsize=1024)
def _kept_fraction(geoms: tuple[AxisGeometry, ...], bands: tuple[tuple[int, ...], ...]) -> float:
    return math.prod(len(b) for b in bands) / math.prod(compression.spectrum_shape(tuple(g.n for g in geoms)))


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
    transform: str = "auto",
) -> tuple[torch.Tensor, float]:
    """Band-limited conv of any supported rank (1, 2 or 3 spatial dims); returns (output, fraction kept).

    transform: 'dft' (partial DFT matrices), 'fft' (pruned FFTs) or 'auto' (the cheaper for the
    shape, see transforms.choose_route); all give the same result up to rounding.
    """
    lowered = _autocast_dtype(x)
    if lowered is not None:
        # Under autocast the spectra stay float32/complex64 (torch has no bf16 FFT or complex bf16 GEMM on
        # CPUs); inputs are widened, the output takes the autocast dtype as F.conv's would.
        assert isinstance(x, torch.Tensor)  # _autocast_dtype is None for anything else
        with torch.autocast(x.device.type, enabled=False):
            y, kept = band_limited_conv(
                x.float(),
                weight.float() if isinstance(weight, torch.Tensor) else weight,
                bias.float() if isinstance(bias, torch.Tensor) else bias,
                stride,
                padding,
                dilation,
                groups,
                compress_rate,
                energy,
                backend,
                transform,
            )
        return y.to(lowered), kept
    d = weight.dim() - 2 if isinstance(weight, torch.Tensor) else 0
    if d not in (1, 2, 3):
        raise ValueError(
            f"weight must have rank 3 (conv1d), 4 (conv2d) or 5 (conv3d), got {getattr(weight, 'shape', weight)!r}"
        )
    groups = check_positive_int(groups, "groups")
    _check_inputs(x, weight, bias, d, groups)
    rate, energy = check_band(compress_rate, energy)
    check_choice(transform, "transform", transforms.ROUTES)
    geoms = _geometry(tuple(x.shape[2:]), tuple(weight.shape[2:]), stride, padding, dilation)
    if len(x) == 0:
        # An empty batch has no spectrum to band-limit: the static band's (empty) output, still in the graph.
        bands = _static_band(tuple(g.n for g in geoms), rate)
        y = x.new_zeros(0, weight.shape[0], *(g.out for g in geoms)) + 0 * (x.sum() + weight.sum())
    else:
        bands = _band(x, geoms, rate, energy)
        layout = transforms.plan(geoms, bands, x.dtype, str(x.device), transform)
        x_spec = _InputSpectrum.apply(x, layout)
        y = _BandLimitedConv.apply(x_spec, weight, layout, get_backend(backend, x.device), groups, x.shape)
    if bias is not None:
        y = y + bias.view(-1, *([1] * d))
    return y, _kept_fraction(geoms, bands)


def _autocast_dtype(x: object) -> torch.dtype | None:
    """The autocast dtype when `x` is a tensor of a device where autocast is on (else None)."""
    if not isinstance(x, torch.Tensor) or not torch.is_autocast_enabled(x.device.type):
        return None
    return torch.get_autocast_dtype(x.device.type)


def kept_fraction(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    stride: Size = 1,
    padding: Size | str = 0,
    dilation: Size = 1,
    compress_rate: float | None = 0.0,
    energy: float | None = None,
) -> float:
    """The fraction of the one-sided spectrum a band-limited convolution with these settings keeps on
    input `x` (static bands: from the shapes alone; energy bands: from x's spectrum), without convolving."""
    rate, energy = check_band(compress_rate, energy)
    geoms = _geometry(tuple(x.shape[2:]), tuple(kernel), stride, padding, dilation)
    bands = _static_band(tuple(g.n for g in geoms), rate) if energy is None else _band(x.float(), geoms, rate, energy)
    return _kept_fraction(geoms, bands)


def spectrum_size(
    x: torch.Tensor, kernel: tuple[int, ...], stride: Size = 1, padding: Size | str = 0, dilation: Size = 1
) -> int:
    """Coefficients of the one-sided spectrum of one input map (per image and channel) that a
    band-limited convolution with these settings transforms: the size of its FFT-domain intermediate."""
    geoms = _geometry(tuple(x.shape[2:]), tuple(kernel), stride, padding, dilation)
    return math.prod(compression.spectrum_shape(tuple(g.n for g in geoms)))


_TAPS = {1: "kL", 2: "kH x kW", 3: "kD x kH x kW"}


def _drop_in(d: int):
    """band_limited_conv{d}d: F.conv{d}d's signature plus the band, checking the weight's rank."""

    def conv(
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
        transform: str = "auto",
    ) -> torch.Tensor:
        if isinstance(weight, torch.Tensor) and weight.dim() != d + 2:
            raise ValueError(
                f"weight must be out x in/groups x {_TAPS[d]} (rank {d + 2}), got shape {tuple(weight.shape)}"
            )
        args = (stride, padding, dilation, groups, compress_rate, energy, backend, transform)
        return band_limited_conv(x, weight, bias, *args)[0]

    conv.__name__ = conv.__qualname__ = f"band_limited_conv{d}d"
    conv.__doc__ = f"Drop-in for F.conv{d}d computed on a low-frequency band; equals F.conv{d}d at compress_rate=0."
    return conv


band_limited_conv1d = _drop_in(1)
band_limited_conv2d = _drop_in(2)
band_limited_conv3d = _drop_in(3)
