"""Which Fourier coefficients survive band-limiting: static, disk and energy-preserving masks.

Every mask has the shape of ``torch.fft.rfftn``'s output for a real signal (True keeps a
coefficient) and depends only on |frequency| per axis, so it is conjugate-symmetric.
"""

from __future__ import annotations

import math

import torch

from robustbench_bl.validation import check_positive_int, check_range


def _check_signal_shape(signal_shape: object) -> tuple[int, ...]:
    if not isinstance(signal_shape, (tuple, list, torch.Size)) or not 1 <= len(signal_shape) <= 3:
        raise ValueError(f"signal_shape must be a tuple of 1 to 3 positive ints, got {signal_shape!r}")
    return tuple(check_positive_int(n, "signal_shape") for n in signal_shape)


def spectrum_shape(signal_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the one-sided spectrum (``rfftn`` over all axes) of a real signal."""
    *lead, last = _check_signal_shape(signal_shape)
    return (*lead, last // 2 + 1)


def axis_radius(n: int, one_sided: bool, device: torch.device | str | None = None) -> torch.Tensor:
    """|frequency| / (n / 2) of each DFT bin of a length-n axis: 0 at DC, 1 at Nyquist."""
    freqs = torch.fft.rfftfreq(n, device=device) if one_sided else torch.fft.fftfreq(n, device=device)
    return (2 * freqs.abs()).double()


def _radii(signal_shape: tuple[int, ...], device) -> list[torch.Tensor]:
    """Per-axis normalized radii, shaped to broadcast over the one-sided spectrum."""
    shape = _check_signal_shape(signal_shape)
    d = len(shape)
    radii = []
    for axis, n in enumerate(shape):
        view = [1] * d
        view[axis] = -1
        radii.append(axis_radius(n, one_sided=axis == d - 1, device=device).view(view))
    return radii


def conjugate_multiplicity(signal_shape: tuple[int, ...], device=None) -> torch.Tensor:
    """How often each one-sided coefficient occurs in the full spectrum (1 or 2); Parseval weights."""
    shape = _check_signal_shape(signal_shape)
    n = shape[-1]
    mult = torch.full((n // 2 + 1,), 2.0, dtype=torch.float64, device=device)
    mult[0] = 1.0
    if n % 2 == 0:
        mult[-1] = 1.0
    return mult.expand(spectrum_shape(shape))


def _smallest_band(radius: torch.Tensor, score: torch.Tensor, target: float) -> torch.Tensor:
    """Mask {radius <= t} for the smallest t whose kept score reaches `target`.

    Ties in radius are kept or dropped together, so the mask stays symmetric.
    """
    r = radius.reshape(-1)
    order = torch.argsort(r, stable=True)
    cum = torch.cumsum(score.reshape(-1)[order], 0)
    first = int(torch.searchsorted(cum, torch.tensor(target, dtype=cum.dtype, device=cum.device)))
    first = min(first, r.numel() - 1)
    return radius <= r[order[first]]


def _rate_band(radius: torch.Tensor, compress_rate: float) -> torch.Tensor:
    """Mask {radius <= t} for the largest t that discards *at least* `compress_rate` of the bins.

    As in the paper, a layer asked for rate r never keeps more than (1 - r) of its spectrum; DC
    (radius 0, the only bin there) is always kept, so tiny maps may discard more than asked.
    """
    rate = check_range(compress_rate, "compress_rate", 0.0, 1.0, high_inclusive=False)
    keep_max = max(1, math.floor((1.0 - rate) * radius.numel() + 1e-9))
    r = radius.reshape(-1).sort().values
    kept_at = torch.searchsorted(r, r, right=True)  # bins with radius <= r[i]
    return radius <= r[kept_at <= keep_max].max()


def static_mask(signal_shape: tuple[int, ...], compress_rate: float, device=None) -> torch.Tensor:
    """Low-frequency corner blocks of the one-sided spectrum (the paper's L-shape).

    Keeps max over axes of |f|/(n/2) <= t for the largest t that discards at least
    `compress_rate` of the one-sided coefficients; compress_rate=0 keeps everything.
    """
    radii = _radii(signal_shape, device)
    radius = torch.stack(torch.broadcast_tensors(*radii)).amax(0)
    return _rate_band(radius, compress_rate)


def disk_mask(signal_shape: tuple[int, ...], compress_rate: float, device=None) -> torch.Tensor:
    """Exact disk of radial frequency sqrt(sum (|f|/(n/2))^2) <= t; same rate rule as static_mask."""
    radius = torch.stack(torch.broadcast_tensors(*(r**2 for r in _radii(signal_shape, device)))).sum(0).sqrt()
    return _rate_band(radius.expand(spectrum_shape(tuple(signal_shape))), compress_rate)


def energy_mask(
    spectrum: torch.Tensor, energy: float, ndim: int, signal_shape: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Smallest static-family band keeping `energy` of the spectral energy of `spectrum`.

    `spectrum` is a one-sided spectrum whose last `ndim` dims are frequencies; the energy is
    summed over the leading (batch, channel) dims and counted with conjugate multiplicity.
    `signal_shape` (default: even last axis) tells an odd-length signal's spectrum apart.
    """
    if not isinstance(spectrum, torch.Tensor) or not spectrum.is_complex():
        raise TypeError("spectrum must be a complex torch.Tensor (an rfftn output)")
    fraction = check_range(energy, "energy", 0.0, 1.0, low_inclusive=False)
    ndim = check_positive_int(ndim, "ndim")
    if ndim > 3 or spectrum.dim() < ndim:
        raise ValueError(f"ndim must be in [1, 3] and <= spectrum.dim()={spectrum.dim()}, got {ndim}")
    freq_shape = tuple(spectrum.shape[-ndim:])
    if signal_shape is None:
        signal_shape = (*freq_shape[:-1], max(2 * (freq_shape[-1] - 1), 1))
    elif spectrum_shape(tuple(signal_shape)) != freq_shape:
        raise ValueError(f"signal_shape {tuple(signal_shape)} does not give a spectrum of shape {freq_shape}")
    power = spectrum.detach().abs().double().pow(2).sum(tuple(range(spectrum.dim() - ndim)))
    power = power * conjugate_multiplicity(signal_shape, device=spectrum.device)
    radii = _radii(signal_shape, spectrum.device)
    radius = torch.stack(torch.broadcast_tensors(*radii)).amax(0)
    return _smallest_band(radius, power, fraction * float(power.sum()) * (1 - 1e-12))


def fraction_kept(mask: torch.Tensor) -> float:
    """Fraction of one-sided coefficients a mask keeps."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError("mask must be a bool torch.Tensor")
    return float(mask.sum()) / max(mask.numel(), 1)


def band_indices(mask: torch.Tensor) -> list[torch.Tensor]:
    """Per axis, the indices of the bins the mask touches: the smallest box holding the band."""
    d = mask.dim()
    return [
        mask.any(dim=tuple(a for a in range(d) if a != axis)).nonzero().flatten() if d > 1 else mask.nonzero().flatten()
        for axis in range(d)
    ]
