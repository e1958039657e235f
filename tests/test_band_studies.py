"""Helpers of the band-limited studies: training recipes, test-time bands, fractions kept, costs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_bl import models
from robustbench_bl.runtime.profiling import epoch_cost, saved_bytes
from robustbench_bl.spectral import BandLimitedConv2d
from robustbench_bl.studies.bands import discarded, layer_fractions, layer_sizes, with_band


def test_with_band_copies_and_layer_fractions() -> None:
    torch.manual_seed(0)
    model = models.make("lenet")
    x = torch.rand(4, 3, 32, 32)
    assert layer_fractions(model, x) == {} and discarded({}) == 0.0
    banded = with_band(model, compress_rate=0.5)
    assert not any(isinstance(m, BandLimitedConv2d) for m in model.modules())  # the original is untouched
    fractions = layer_fractions(banded, x)
    assert list(fractions) == ["1", "4"] and all(0.3 < f < 0.7 for f in fractions.values())
    assert discarded(fractions) == pytest.approx(1 - sum(fractions.values()) / 2)
    torch.testing.assert_close(with_band(model, compress_rate=0.0)(x), model(x), atol=1e-5, rtol=1e-4)
    energy = with_band(model, energy=0.9)
    energy.train()
    assert discarded(layer_fractions(energy, x)) > 0 and energy.training  # mode restored


@pytest.mark.parametrize(
    ("size", "kernel", "padding", "channels"), [(32, 5, 0, 3), (15, 3, 1, 8), (7, 3, 1, 4), (10, 2, 0, 1)]
)
def test_layer_sizes_count_the_one_sided_spectrum_of_the_padded_map(
    size: int, kernel: int, padding: int, channels: int
) -> None:
    """What torch.fft.rfft2 returns for the padded input map, per image, over every input channel."""
    model = nn.Sequential(nn.Conv2d(channels, 2, kernel, padding=padding), nn.ReLU(), nn.Conv2d(2, 3, 1))
    x = torch.rand(3, channels, size, size)
    expected = torch.fft.rfft2(nn.functional.pad(x[0], (padding,) * 4)).numel()
    sizes = layer_sizes(with_band(model, energy=0.9), x)
    assert sizes == {
        "0": expected,
        "2": torch.fft.rfft2(torch.zeros(2, size + 2 * padding - kernel + 1, size + 2 * padding - kernel + 1)).numel(),
    }


def test_saved_bytes_and_epoch_cost_on_cpu() -> None:
    w = torch.randn(8, 8, requires_grad=True)
    x = torch.randn(16, 8)
    assert saved_bytes(lambda: (x @ w).sum()) == x.numel() * 4  # matmul saves its other operand
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    cost = epoch_cost(model, torch.rand(10, 3, 2, 2), torch.randint(0, 3, (10,)), batch_size=4)
    assert cost["epoch_seconds"] > 0 and cost["memory_bytes"] > 0 and cost["memory_kind"] == "saved_for_backward"
    with pytest.raises(ValueError, match="fp16"):
        epoch_cost(model, torch.rand(4, 12), torch.zeros(4, dtype=torch.long), fp16=True)
