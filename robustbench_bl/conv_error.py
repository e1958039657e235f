"""Error of a compressed convolution against F.conv2d (first seed, Fig. 24) under two schemes:
'lead' keeps the low-frequency corner blocks (the library's static band), 'top' keeps the
coefficients of largest input energy wherever they lie, with the same number of coefficients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustbench_bl.spectral import band_limited_conv2d, compression

SCHEMES = ("lead", "top")


def masked_conv2d(x: torch.Tensor, weight: torch.Tensor, padding: int, mask: torch.Tensor) -> torch.Tensor:
    """F.conv2d (stride 1, no bias) through the FFT of the zero-padded input with `mask` on both spectra.

    `mask` has the one-sided spectrum's shape of the padded input; it may be any set of
    coefficients (irfft2 keeps the real part when it breaks conjugate pairs in the first column).
    """
    xp = F.pad(x, (padding,) * 4)
    n = tuple(xp.shape[-2:])
    xs = torch.fft.rfft2(xp, s=n) * mask
    ws = torch.fft.rfft2(weight, s=n) * mask
    y = torch.fft.irfft2(torch.einsum("nchw,ochw->nohw", xs, ws.conj()), s=n)
    k = weight.shape[-2:]
    return y[..., : n[0] - k[0] + 1, : n[1] - k[1] + 1]


def top_mask(x: torch.Tensor, padding: int, keep: int) -> torch.Tensor:
    """The `keep` one-sided coefficients of the padded input's spectrum with the most energy (summed over N, C)."""
    xp = F.pad(x, (padding,) * 4)
    power = torch.fft.rfft2(xp).abs().pow(2).sum((0, 1))
    mask = torch.zeros(power.numel(), dtype=torch.bool, device=x.device)
    mask[power.flatten().topk(keep).indices] = True
    return mask.view_as(power)


def relative_error(y: torch.Tensor, reference: torch.Tensor) -> float:
    """||y - reference||_2 / ||reference||_2."""
    return float((y - reference).norm() / reference.norm())


def conv_errors(x: torch.Tensor, weight: torch.Tensor, padding: int, compress_rate: float) -> dict[str, tuple[float, float]]:
    """Per scheme, (relative error against F.conv2d, fraction of coefficients discarded) at `compress_rate`."""
    reference = F.conv2d(x, weight, padding=padding)
    lead = compression.static_mask((x.shape[-2] + 2 * padding, x.shape[-1] + 2 * padding), compress_rate, device=x.device)
    keep = int(lead.sum())
    discarded = 1.0 - compression.fraction_kept(lead)
    return {
        "lead": (relative_error(band_limited_conv2d(x, weight, padding=padding, compress_rate=compress_rate), reference), discarded),
        "top": (relative_error(masked_conv2d(x, weight, padding, top_mask(x, padding, keep)), reference), discarded),
    }
