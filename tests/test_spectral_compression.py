"""Masks of spectral.compression against independent numpy frequency grids and Parseval."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from robustbench_bl.spectral import compression

SHAPES = [(11,), (12,), (7, 7), (8, 8), (6, 9), (9, 6), (34, 34)]
RATES = [0.0, 0.1, 0.3, 0.5, 0.85, 0.95]


def radius_grid(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Per-axis |f| / (n/2) on the one-sided grid, from numpy's frequency helpers."""
    axes = [np.abs(np.fft.fftfreq(n)) * 2 for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1]) * 2]
    return list(np.meshgrid(*axes, indexing="ij"))


def full_mask(mask: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Extend a one-sided mask to the full spectrum by conjugate symmetry M[f] = M[-f]."""
    full = torch.zeros(shape, dtype=torch.bool)
    index = np.indices(shape).reshape(len(shape), -1)
    last = index[-1]
    mirrored = np.where(last <= shape[-1] // 2, 0, 1).astype(bool)
    src = index.copy()
    src[:, mirrored] = (-index[:, mirrored]) % np.array(shape)[:, None]
    full.view(-1)[:] = mask[tuple(torch.from_numpy(s) for s in src)]
    return full


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("make", [compression.static_mask, compression.disk_mask])
def test_mask_shape_and_rate(make, shape, rate):
    mask = make(shape, rate)
    assert mask.dtype == torch.bool
    assert tuple(mask.shape) == tuple(torch.fft.rfftn(torch.zeros(shape)).shape)
    kept = compression.fraction_kept(mask)
    assert kept == pytest.approx(mask.sum().item() / mask.numel())
    assert mask.view(-1)[0]  # always keeps DC ...
    if mask.sum() > 1:  # ... and otherwise discards at least compress_rate (the paper's rounding) ...
        assert kept <= 1 - rate + 1e-12
    # ... with the widest such band: the next shell of the same family would keep more than 1 - rate
    radius = (
        np.maximum.reduce(radius_grid(shape))
        if make is compression.static_mask
        else np.sqrt(sum(g**2 for g in radius_grid(shape)))
    )
    outside = radius[~mask.numpy()]
    if outside.size:
        assert (radius <= outside.min() + 1e-12).sum() > (1 - rate) * mask.numel() + 1e-9
    if rate == 0:
        assert mask.all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("make", [compression.static_mask, compression.disk_mask])
def test_masks_are_nested_in_rate(make, shape):
    masks = [make(shape, r) for r in RATES]
    for wider, narrower in itertools.pairwise(masks):
        assert not (narrower & ~wider).any()
    assert compression.fraction_kept(masks[-1]) < 1


@pytest.mark.parametrize("shape", [s for s in SHAPES if len(s) == 2])
@pytest.mark.parametrize("rate", [0.3, 0.5, 0.85])
def test_static_mask_is_low_frequency_corner_blocks(shape, rate):
    mask = compression.static_mask(shape, rate).numpy()
    rows, cols = mask.any(1), mask.any(0)
    assert (mask == np.outer(rows, cols)).all()  # a product of a row band and a column band
    fy, fx = radius_grid(shape)
    assert fy[:, 0][rows].max() < fy[:, 0][~rows].min() if (~rows).any() else True
    assert fx[0][cols].max() < fx[0][~cols].min() if (~cols).any() else True
    # a square band in normalized frequency: the two cutoffs differ by at most one bin
    step = max(2 / shape[0], 2 / shape[1])
    if (~rows).any() and (~cols).any():
        assert abs(fy[:, 0][rows].max() - fx[0][cols].max()) <= step + 1e-12


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rate", [0.3, 0.5, 0.85])
def test_disk_mask_is_exact_disk(shape, rate):
    mask = compression.disk_mask(shape, rate).numpy()
    radius = np.sqrt(sum(r**2 for r in radius_grid(shape)))
    assert radius[mask].max() < radius[~mask].min()


@pytest.mark.parametrize("shape", [(12,), (11,), (8, 8), (7, 10), (9, 6)])
@pytest.mark.parametrize("make", [compression.static_mask, compression.disk_mask])
def test_masks_are_conjugate_symmetric(make, shape):
    """Masking the one-sided spectrum equals masking the full spectrum: the result is real."""
    x = torch.randn(3, *shape, dtype=torch.float64)
    dims = tuple(range(1, len(shape) + 1))
    mask = make(shape, 0.5)
    one_sided = torch.fft.irfftn(torch.fft.rfftn(x, dim=dims) * mask, s=shape, dim=dims)
    full = torch.fft.ifftn(torch.fft.fftn(x, dim=dims) * full_mask(mask, shape), dim=dims)
    assert full.imag.abs().max() < 1e-12  # the real-valued coefficients stay real
    torch.testing.assert_close(one_sided, full.real)


def band_energy(x: torch.Tensor, mask: torch.Tensor, ndim: int) -> float:
    """Energy of x band-limited by mask, in the signal domain (Parseval), summed over the batch."""
    dims = tuple(range(x.dim() - ndim, x.dim()))
    shape = x.shape[-ndim:]
    return float(torch.fft.irfftn(torch.fft.rfftn(x, dim=dims) * mask, s=shape, dim=dims).pow(2).sum())


def smooth_signal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Zero-mean random signals with a decaying spectrum: energy bands are neither DC nor full."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 2, *shape, generator=g, dtype=torch.float64)
    for axis in range(-len(shape), 0):
        x = x.cumsum(axis)
    return x - x.mean(dim=tuple(range(-len(shape), 0)), keepdim=True)


@pytest.mark.parametrize("shape", [(16,), (15,), (12, 12), (9, 14)])
@pytest.mark.parametrize("energy", [0.5, 0.9, 0.99])
def test_energy_mask_is_the_smallest_band_keeping_the_energy(shape, energy):
    x = smooth_signal(shape, seed=len(shape) + int(100 * energy))
    ndim = len(shape)
    spectrum = torch.fft.rfftn(x, dim=tuple(range(-ndim, 0)))
    mask = compression.energy_mask(spectrum, energy, ndim, signal_shape=shape)
    total = float(x.pow(2).sum())
    assert band_energy(x, mask, ndim) >= energy * total * (1 - 1e-9)
    # the next smaller band of the static family (one rate step narrower) falls short
    smaller = [m for m in (compression.static_mask(shape, r / 100) for r in range(100)) if m.sum() < mask.sum()]
    assert smaller, "the energy band should not be DC only for these signals"
    assert band_energy(x, smaller[0], ndim) < energy * total
    assert any(torch.equal(mask, compression.static_mask(shape, r / 100)) for r in range(100))


def test_energy_mask_extremes():
    x = torch.randn(8, 16, 16, dtype=torch.float64)
    spectrum = torch.fft.rfftn(x, dim=(-2, -1))
    assert compression.energy_mask(spectrum, 1.0, 2).all()
    constant = torch.fft.rfftn(torch.ones(2, 16, 16), dim=(-2, -1))
    assert compression.energy_mask(constant, 0.999, 2).sum() == 1  # DC holds all the energy


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: compression.static_mask((8, 8), 1.0), "compress_rate must be in"),
        (lambda: compression.static_mask((8, 8), -0.1), "compress_rate must be in"),
        (lambda: compression.disk_mask((8, 8), 1.5), "compress_rate must be in"),
        (lambda: compression.static_mask((8, 0), 0.5), "signal_shape must be >= 1"),
        (lambda: compression.static_mask((2, 2, 2, 2), 0.5), "signal_shape must be a tuple of 1 to 3"),
        (lambda: compression.energy_mask(torch.ones(4, 3, dtype=torch.cfloat), 0.0, 1), r"energy must be in \(0"),
        (lambda: compression.energy_mask(torch.ones(4, 3, dtype=torch.cfloat), 1.2, 1), r"energy must be in \(0"),
        (lambda: compression.energy_mask(torch.ones(4, 3, dtype=torch.cfloat), 0.5, 3), "ndim must be in"),
        (
            lambda: compression.energy_mask(torch.ones(4, 3, dtype=torch.cfloat), 0.5, 1, signal_shape=(8,)),
            "signal_shape",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="compress_rate must be a number"):
        compression.static_mask((8,), "0.5")
    with pytest.raises(TypeError, match="spectrum must be a complex"):
        compression.energy_mask(torch.ones(4, 3), 0.5, 1)
    with pytest.raises(TypeError, match="mask must be a bool"):
        compression.fraction_kept(torch.ones(3))
