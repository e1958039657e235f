"""The Fig. 24 helpers: the masked FFT convolution equals F.conv2d and the library's static band."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustbench_bl.spectral import band_limited_conv2d, compression
from robustbench_bl.studies.conv_error import conv_errors, masked_conv2d, top_mask


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 12, 10, generator=g, dtype=torch.float64), torch.randn(
        2, 3, 5, 5, generator=g, dtype=torch.float64
    )


def test_full_mask_is_conv2d_and_static_mask_is_the_lead_scheme() -> None:
    x, w = inputs()
    full = torch.ones(16, 8, dtype=torch.bool)  # one-sided spectrum of the 16 x 14 padded input
    torch.testing.assert_close(masked_conv2d(x, w, 2, full), F.conv2d(x, w, padding=2))
    for rate in (0.3, 0.7):
        lead = compression.static_mask((16, 14), rate)
        torch.testing.assert_close(
            masked_conv2d(x, w, 2, lead), band_limited_conv2d(x, w, padding=2, compress_rate=rate)
        )


def test_top_mask_keeps_the_largest_coefficients() -> None:
    x, _ = inputs()
    mask = top_mask(x, 2, 10)
    power = torch.fft.rfft2(F.pad(x, (2,) * 4)).abs().pow(2).sum((0, 1))
    assert mask.shape == power.shape and int(mask.sum()) == 10
    assert power[mask].min() >= power[~mask].max()


def test_errors_zero_at_rate_zero_and_same_count_per_scheme() -> None:
    x, w = inputs()
    exact = conv_errors(x, w, 2, 0.0)
    assert all(exact[s][0] < 1e-12 and exact[s][1] == 0 for s in ("lead", "top"))
    # the paper's finest point: one coefficient (of the 16 x 8 one-sided spectrum) discarded, a small error,
    # below top's at the smallest static compression
    one, fraction = exact["top-one"]
    smallest = conv_errors(x, w, 2, 0.01)
    assert fraction == 1 / (16 * 8) and 0 < one < smallest["top"][0] < smallest["lead"][0]
    assert "top-one" not in smallest
    errors = conv_errors(x, w, 2, 0.6)
    assert errors["lead"][1] == errors["top"][1] > 0.5
    assert all(e > 0 for e, _ in errors.values())
