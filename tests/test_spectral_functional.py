"""band_limited_conv1d/2d/3d against F.conv (rate 0), gradcheck, and an explicitly masked FFT reference,
for both transforms (partial DFT and pruned FFT)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from robustbench_bl.runtime.profiling import saved_bytes
from robustbench_bl.spectral import (
    band_limited_conv1d,
    band_limited_conv2d,
    band_limited_conv3d,
    compression,
    transforms,
)
from robustbench_bl.spectral.backends import TorchBackend, get_backend
from robustbench_bl.spectral.transforms import AxisGeometry, choose_route

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")

CONV = {1: (F.conv1d, band_limited_conv1d), 2: (F.conv2d, band_limited_conv2d), 3: (F.conv3d, band_limited_conv3d)}
SIZES = {1: [(11,), (12,)], 2: [(13, 13), (12, 12), (11, 14)], 3: [(7, 6, 5)]}  # odd, even, non-square
ROUTES = ("dft", "fft")


def extent(k: int, dilation: int) -> int:
    return dilation * (k - 1) + 1


def valid(size, k, stride, padding, dilation) -> bool:
    if padding == "same":
        return stride == 1
    return all(n + 2 * padding >= extent(k, dilation) for n in size)


def grid(sizes, kernels, strides, paddings, dilations, groups, biases):
    """Every valid combination, with readable ids."""
    cases = []
    for d in sizes:
        for size, k, s, p, dil, g, b in itertools.product(
            sizes[d], kernels, strides, paddings, dilations, groups, biases
        ):
            if valid(size, k, s, p, dil):
                cases.append(
                    pytest.param(d, size, k, s, p, dil, g, b, id=f"{d}d-{size}-k{k}-s{s}-p{p}-d{dil}-g{g}-b{int(b)}")
                )
    return cases


def make_inputs(d, size, k, groups, bias, dtype, seed=0, batch=2, cin=4, cout=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, *size, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(cout, cin // groups, *(k,) * d, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(cout, generator=g, dtype=dtype, requires_grad=True) if bias else None
    return x, w, b


def grads(y, inputs, seed=1):
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    present = [t for t in inputs if t is not None]
    return torch.autograd.grad(y, present, gy)


def assert_rel_close(actual, expected, rtol):
    scale = expected.abs().max().clamp_min(1e-30)
    err = (actual - expected).abs().max() / scale
    assert err <= rtol, f"relative error {err:.3g} > {rtol}"


def pads(d, size, k, padding, dilation):
    """(left, right) per axis as F.conv pads: 'same' puts the odd extra tap on the right."""
    if padding == "same":
        total = dilation * (k - 1)
        return [(total // 2, total - total // 2)] * d
    return [(padding, padding)] * d


def masked_reference(x, w, b, stride, padding, dilation, groups, mask_of):
    """Band-limited correlation the slow, obvious way: full rfftn of the padded input and the
    zero-dilated, zero-padded filter, one explicit mask on both, einsum over channels, irfftn,
    crop the valid part, subsample by the stride."""
    d = x.dim() - 2
    k = w.shape[-1]
    p = pads(d, x.shape[2:], k, padding, dilation)
    xp = F.pad(x, [v for lr in reversed(p) for v in lr])
    n = tuple(xp.shape[2:])
    wd = torch.zeros(*w.shape[:2], *(extent(k, dilation),) * d, dtype=w.dtype)
    wd[(slice(None), slice(None)) + (slice(None, None, dilation),) * d] = w  # differentiable in w
    dims = tuple(range(2, 2 + d))
    mask = mask_of(n, xp)
    xs = torch.fft.rfftn(xp, s=n, dim=dims) * mask
    ws = torch.fft.rfftn(wd, s=n, dim=dims) * mask
    nb, cin = x.shape[:2]
    cout = w.shape[0]
    xs = xs.reshape(nb, groups, cin // groups, *xs.shape[2:])
    ws = ws.reshape(groups, cout // groups, cin // groups, *ws.shape[2:])
    ys = torch.einsum("ngc...,goc...->ngo...", xs, ws.conj()).reshape(nb, cout, *xs.shape[3:])
    y = torch.fft.irfftn(ys, s=n, dim=dims)
    crop = (slice(None), slice(None), *tuple(slice(0, m - extent(k, dilation) + 1, stride) for m in n))
    y = y[crop]
    return y if b is None else y + b.view(-1, *(1,) * d)


def static(rate):
    return lambda n, xp: compression.static_mask(n, rate)


GRID0 = grid({d: SIZES[d] for d in (1, 2)}, range(1, 8), (1, 2), (0, 1, "same"), (1, 2), (1, 2), (True, False)) + grid(
    {3: SIZES[3]}, (1, 2, 3), (1, 2), (0, 1, "same"), (1, 2), (1, 2), (True,)
)
# Depthwise: groups = in_channels = 4, one input channel per group (the grouped products then come
# back strided; a backward once failed there for batch >= 2).
GRID_DEPTHWISE = grid(SIZES, (1, 2, 3), (1, 2), (0, 1, "same"), (1, 2), (4,), (True,))


@pytest.mark.parametrize("transform", ROUTES)
@pytest.mark.parametrize("d, size, k, stride, padding, dilation, groups, bias", GRID0 + GRID_DEPTHWISE)
def test_rate_zero_equals_conv_float32(d, size, k, stride, padding, dilation, groups, bias, transform):
    conv, blconv = CONV[d]
    x, w, b = make_inputs(d, size, k, groups, bias, torch.float32)
    expected = conv(x, w, b, stride, padding, dilation, groups)
    actual = blconv(x, w, b, stride, padding, dilation, groups, compress_rate=0.0, transform=transform)
    assert actual.shape == expected.shape
    assert_rel_close(actual, expected, 1e-4)
    for ga, ge in zip(grads(actual, (x, w, b)), grads(expected, (x, w, b))):
        assert_rel_close(ga, ge, 1e-4)


GRID_SMALL = grid({1: [(7,)], 2: [(5, 6)]}, (1, 2, 3), (1, 2), (0, 1, "same"), (1, 2), (1, 2), (True,)) + grid(
    {3: [(4, 5, 3)]}, (2,), (1, 2), (1,), (1,), (1,), (True,)
)


@pytest.mark.parametrize("transform", ROUTES)
@pytest.mark.parametrize("rate", [0.0, 0.5])
@pytest.mark.parametrize("d, size, k, stride, padding, dilation, groups, bias", GRID_SMALL)
def test_gradcheck_float64(d, size, k, stride, padding, dilation, groups, bias, rate, transform):
    _, blconv = CONV[d]
    x, w, b = make_inputs(d, size, k, groups, bias, torch.float64, batch=1, cin=2, cout=2)
    fn = lambda x, w, b: blconv(x, w, b, stride, padding, dilation, groups, compress_rate=rate, transform=transform)
    assert torch.autograd.gradcheck(fn, (x, w, b))


@pytest.mark.parametrize("transform", ROUTES)
@pytest.mark.parametrize("d, size, k, stride, padding, dilation, groups, bias", GRID_SMALL)
def test_gradgradcheck_float64(d, size, k, stride, padding, dilation, groups, bias, transform):
    """Second derivatives (all of them: input, filter, bias and mixed) against finite differences."""
    _, blconv = CONV[d]
    x, w, b = make_inputs(d, size, k, groups, bias, torch.float64, batch=1, cin=2, cout=2)
    fn = lambda x, w, b: blconv(x, w, b, stride, padding, dilation, groups, compress_rate=0.5, transform=transform)
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("transform", ROUTES)
@pytest.mark.parametrize(
    "d, size, k, stride, padding, groups, band",
    [
        (2, (6, 7), 3, 1, 1, 1, 0.5),
        (2, (6, 6), 3, 2, 1, 1, 0.3),
        (2, (5, 6), 2, 1, 0, 2, 0.85),
        (1, (12,), 5, 1, 2, 1, 0.5),
        (2, (6, 6), 3, 1, 1, 1, "energy"),
    ],
)
def test_input_hessian_of_a_tiny_model_equals_the_masked_reference(
    d, size, k, stride, padding, groups, band, transform
):
    """torch.autograd.functional.hessian of f(x) = v . tanh(conv(x)) through the band-limited
    convolution equals the Hessian through the explicitly masked FFT reference."""
    _, blconv = CONV[d]
    x, w, b = make_inputs(d, size, k, groups, True, torch.float64, batch=1, cin=2, cout=2)
    x, w, b = x.detach(), w.detach(), b.detach()
    if band == "energy":
        kwargs = dict(energy=0.9)
        n = tuple(s + 2 for s in size)  # padding 1 on both sides
        spectrum = torch.fft.rfftn(F.pad(x, [1, 1] * d), s=n, dim=tuple(range(2, 2 + d)))
        mask_of = lambda n, xp: compression.energy_mask(spectrum, 0.9, d, signal_shape=n)
    else:
        kwargs = dict(compress_rate=band)
        mask_of = static(band)
    v = torch.randn_like(blconv(x, w, b, stride, padding, 1, groups, **kwargs))
    ours = lambda z: (v * torch.tanh(blconv(z, w, b, stride, padding, 1, groups, transform=transform, **kwargs))).sum()
    ref = lambda z: (v * torch.tanh(masked_reference(z, w, b, stride, padding, 1, groups, mask_of))).sum()
    h = torch.autograd.functional.hessian(ours, x)
    assert h.abs().max() > 1e-3  # a real, non-zero curvature to compare
    torch.testing.assert_close(h, torch.autograd.functional.hessian(ref, x), rtol=1e-9, atol=1e-10)


def test_reference_itself_equals_conv_at_rate_zero():
    for d, k, s, p, dil, g in [
        (2, 3, 2, 1, 2, 2),
        (1, 4, 1, "same", 2, 1),
        (2, 2, 1, "same", 1, 2),
        (3, 3, 2, 1, 1, 2),
    ]:
        conv, _ = CONV[d]
        x, w, b = make_inputs(d, SIZES[d][-1], k, g, True, torch.float64)
        torch.testing.assert_close(masked_reference(x, w, b, s, p, dil, g, static(0.0)), conv(x, w, b, s, p, dil, g))


GRID_MASKED = grid({d: SIZES[d] for d in (1, 2)}, (1, 2, 3, 5), (1, 2), (0, 1, "same"), (1, 2), (1, 2), (True,)) + grid(
    {3: SIZES[3]}, (1, 3), (1, 2), (0, "same"), (1, 2), (2,), (True,)
)


@pytest.mark.parametrize("transform", ROUTES)
@pytest.mark.parametrize("rate", [0.3, 0.5, 0.85])
@pytest.mark.parametrize("d, size, k, stride, padding, dilation, groups, bias", GRID_MASKED)
def test_compressed_equals_masked_reference(d, size, k, stride, padding, dilation, groups, bias, rate, transform):
    _, blconv = CONV[d]
    x, w, b = make_inputs(d, size, k, groups, bias, torch.float64)
    expected = masked_reference(x, w, b, stride, padding, dilation, groups, static(rate))
    actual = blconv(x, w, b, stride, padding, dilation, groups, compress_rate=rate, transform=transform)
    torch.testing.assert_close(actual, expected)
    for ga, ge in zip(grads(actual, (x, w, b)), grads(expected, (x, w, b))):
        torch.testing.assert_close(ga, ge)


@pytest.mark.parametrize("transform", ROUTES)
@pytest.mark.parametrize("energy", [0.5, 0.9, 0.99])
@pytest.mark.parametrize(
    "d, size, padding", [(1, (12,), 1), (1, (11,), "same"), (2, (12, 12), 1), (2, (11, 14), 0), (3, (6, 7, 8), 1)]
)
def test_energy_band_equals_masked_reference(d, size, padding, energy, transform):
    _, blconv = CONV[d]
    x, w, b = make_inputs(d, size, 3, 1, True, torch.float64)
    x = x.detach().cumsum(-1).requires_grad_()  # a decaying spectrum, so the band is partial

    def mask_of(n, xp):
        spectrum = torch.fft.rfftn(xp.detach(), s=n, dim=tuple(range(2, 2 + d)))
        return compression.energy_mask(spectrum, energy, d, signal_shape=n)

    expected = masked_reference(x, w, b, 1, padding, 1, 1, mask_of)
    actual = blconv(x, w, b, 1, padding, 1, 1, compress_rate=None, energy=energy, transform=transform)
    torch.testing.assert_close(actual, expected)
    for ga, ge in zip(grads(actual, (x, w, b)), grads(expected, (x, w, b))):
        torch.testing.assert_close(ga, ge)


@pytest.mark.parametrize("d, size, k", [(1, (64,), 5), (2, (24, 24), 3), (2, (16, 20), 5)])
def test_error_against_conv_grows_with_rate(d, size, k):
    """The paper's Fig. 24 trend: relative error of output and input gradient rise with the rate."""
    conv, blconv = CONV[d]
    x, w, b = make_inputs(d, size, k, 1, True, torch.float64, batch=4, cin=3, cout=5)
    expected = conv(x, w, b, 1, k // 2)
    g_expected = grads(expected, (x,))[0]
    errors = []
    for rate in (0.0, 0.2, 0.4, 0.6, 0.8, 0.95):
        y = blconv(x, w, b, 1, k // 2, compress_rate=rate)
        gx = grads(y, (x,))[0]
        errors.append(
            ((y - expected).norm() / expected.norm()).item() + ((gx - g_expected).norm() / g_expected.norm()).item()
        )
    assert errors[0] < 1e-10
    assert all(a < b for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] > 0.3


@pytest.mark.parametrize("transform", ROUTES)
def test_saves_only_the_compressed_input_spectrum_and_the_filters(transform):
    x, w, _ = make_inputs(2, (32, 32), 3, 1, False, torch.float32, batch=4, cin=8, cout=8)
    kept = {}
    for rate in (0.0, 0.5, 0.85):
        kept[rate] = saved_bytes(lambda: band_limited_conv2d(x, w, padding=1, compress_rate=rate, transform=transform))
        band = compression.static_mask((34, 34), rate).sum().item()
        assert kept[rate] == band * 4 * 8 * 8 + w.numel() * 4  # X (K, N, C) complex64, filters float32
    assert kept[0.5] <= 0.6 * kept[0.0]
    # What a gradient needs: d/dx only the filters, d/dw only the input spectrum.
    assert saved_bytes(lambda: band_limited_conv2d(x.detach(), w, padding=1)) == kept[0.0] - w.numel() * 4
    assert saved_bytes(lambda: band_limited_conv2d(x, w.detach(), padding=1)) == w.numel() * 4


def test_saved_bytes_stay_below_fconv_at_half_rate_on_every_size():
    """The memory contract: X (compressed) and the filters, never the filter spectrum (K x C x O)."""
    for size in (32, 64):
        x, w, _ = make_inputs(2, (size, size), 3, 1, False, torch.float32, batch=4, cin=8, cout=32)
        conv = saved_bytes(lambda: F.conv2d(x, w, padding=1))
        assert saved_bytes(lambda: band_limited_conv2d(x, w, padding=1, compress_rate=0.5)) <= conv
        assert saved_bytes(lambda: band_limited_conv2d(x, w, padding=1)) <= 2 * conv


@pytest.mark.parametrize("transform", ROUTES)
@pytest.mark.parametrize(
    "d, size, k, stride, groups",
    [(1, (23,), 3, 1, 2), (2, (13, 11), 3, 2, 1), (2, (12, 12), 5, 1, 2), (3, (5, 6, 7), 3, 1, 1)],
)
def test_filter_spectrum_in_many_chunks_equals_one(monkeypatch, d, size, k, stride, groups, transform):
    """Large maps form W a few first-axis bins at a time; a one-row chunk must give the same result."""
    _, blconv = CONV[d]
    x, w, b = make_inputs(d, size, k, groups, True, torch.float64)
    args = (x, w, b, stride, k // 2, 1, groups)
    whole = [blconv(*args, compress_rate=rate, transform=transform) for rate in (0.0, 0.5)]
    monkeypatch.setattr(transforms, "CHUNK_BYTES", 1)  # one row of W per chunk
    transforms.plan.cache_clear()
    try:
        for rate, expected in zip((0.0, 0.5), whole):
            actual = blconv(*args, compress_rate=rate, transform=transform)
            torch.testing.assert_close(actual, expected)
            for ga, ge in zip(grads(actual, (x, w, b)), grads(expected, (x, w, b))):
                torch.testing.assert_close(ga, ge)
    finally:
        transforms.plan.cache_clear()  # plans remember their chunks


def test_auto_transform_takes_the_fft_on_large_maps_only():
    def geometry(size, d=2, stride=1):
        return tuple(AxisGeometry(size, 3, stride, pad_left=1, pad_right=1) for _ in range(d))

    def full(geoms):
        return (*tuple(tuple(range(g.n)) for g in geoms[:-1]), tuple(range(geoms[-1].n // 2 + 1)))

    assert choose_route(geometry(32), full(geometry(32))) == "dft"
    assert choose_route(geometry(270, d=1), full(geometry(270, d=1))) == "dft"
    assert choose_route(geometry(512), full(geometry(512))) == "fft"
    assert choose_route(geometry(4096, d=1), full(geometry(4096, d=1))) == "fft"
    assert choose_route(geometry(512, stride=2), full(geometry(512, stride=2))) == "dft"  # strided: DFT


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("lazy", [False, True])
def test_torch_backend_products_match_einsum(groups, lazy):
    g = torch.Generator().manual_seed(groups)
    k, n, c, o = 5, 3, 4, 8

    def rand(*shape):
        return torch.complex(
            torch.randn(*shape, generator=g, dtype=torch.float64), torch.randn(*shape, generator=g, dtype=torch.float64)
        )

    x, w, grad = rand(k, n, c), rand(k, c // groups, o), rand(k, n, o)
    grad_arg = grad.conj().resolve_conj().conj() if lazy else grad  # the caller may hand G as a lazy conj view
    xg, gg = x.view(k, n, groups, -1), grad.view(k, n, groups, -1)
    wg = w.view(k, c // groups, groups, -1)
    backend = TorchBackend()
    torch.testing.assert_close(
        backend.forward_product(x, w, groups), torch.einsum("kngc,kcgo->kngo", xg, wg).reshape(k, n, o)
    )
    torch.testing.assert_close(
        backend.grad_input_product(grad_arg, w, groups).resolve_conj(),
        torch.einsum("kngo,kcgo->kngc", gg, wg.conj()).reshape(k, n, c),
    )
    torch.testing.assert_close(
        backend.grad_weight_product(x, grad_arg, groups).resolve_conj(),
        torch.einsum("kngc,kngo->kcgo", xg.conj(), gg).reshape(k, c // groups, o),
    )


def test_backend_choice():
    assert get_backend("auto").name == "torch"
    assert get_backend("torch").name == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        get_backend("numpy")


def test_cupy_backend_without_cupy_or_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="backend='cupy'"):
        get_backend("cupy")


X2, W2 = torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(compress_rate=1.0), ValueError, r"compress_rate must be in \[0.0, 1.0\)"),
        (dict(compress_rate=-0.2), ValueError, r"compress_rate must be in \[0.0, 1.0\)"),
        (dict(compress_rate=0.5, energy=0.9), ValueError, "either compress_rate or energy, not both"),
        (dict(energy=0.0), ValueError, r"energy must be in \(0.0, 1.0\]"),
        (dict(energy=1.01), ValueError, r"energy must be in \(0.0, 1.0\]"),
        (dict(x=torch.randn(4, 8, 8)), ValueError, r"input must be N x C x H x W \(rank 4\)"),
        (dict(x=torch.randn(2, 3, 8, 8)), ValueError, "input must have in_channels=4 channels"),
        (dict(x=X2.half()), TypeError, "input must be float32 or float64"),
        (dict(padding="full"), ValueError, "padding must be an int, a tuple of 2 ints, 'same' or 'valid'"),
        (dict(padding="same", stride=2), ValueError, "padding='same' needs stride=1"),
        (dict(stride=0), ValueError, "stride must be >= 1"),
        (dict(groups=3), ValueError, "in_channels"),
        (dict(x=torch.randn(2, 4, 2, 2)), ValueError, "smaller than the dilated kernel"),
        (dict(backend="cuda"), ValueError, "backend must be one of"),
        (dict(transform="fftw"), ValueError, "transform must be one of"),
        (dict(padding={1: 2}), ValueError, "padding must be an int"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    x = kwargs.pop("x", X2)
    with pytest.raises(error, match=match):
        band_limited_conv2d(x, W2, **kwargs)


def test_weight_rank_is_checked_per_function():
    with pytest.raises(ValueError, match=r"weight must be out x in/groups x kL \(rank 3\)"):
        band_limited_conv1d(torch.randn(2, 4, 8), W2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("d", [1, 2, 3])
def test_cuda_matches_conv(d):
    conv, blconv = CONV[d]
    x, w, b = (t.detach().cuda().requires_grad_() for t in make_inputs(d, SIZES[d][0], 3, 2, True, torch.float64))
    torch.testing.assert_close(blconv(x, w, b, 2, 1, 1, 2), conv(x, w, b, 2, 1, 1, 2))
    y = blconv(x, w, b, 1, "same", 2, 2, compress_rate=0.5)
    expected = masked_reference(*(t.detach().cpu().requires_grad_() for t in (x, w, b)), 1, "same", 2, 2, static(0.5))
    torch.testing.assert_close(y.cpu(), expected)
