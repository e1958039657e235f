"""BandLimitedConv1d/2d/3d as drop-ins for nn.Conv, and bandlimit(model) on the model zoo."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_bl import data, models
from robustbench_bl.spectral import BandLimitedConv1d, BandLimitedConv2d, BandLimitedConv3d, bandlimit
from robustbench_bl.spectral.layers import recording_bands

TWINS = [
    (nn.Conv1d, BandLimitedConv1d, (2, 4, 13)),
    (nn.Conv2d, BandLimitedConv2d, (2, 4, 9, 8)),
    (nn.Conv3d, BandLimitedConv3d, (2, 4, 5, 6, 7)),
]


@pytest.mark.parametrize("conv_cls, bl_cls, shape", TWINS)
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, "same"])
def test_layer_equals_conv_and_shares_state_dict(conv_cls, bl_cls, shape, padding_mode, padding):
    torch.manual_seed(0)
    conv = conv_cls(4, 6, 3, padding=padding, groups=2, padding_mode=padding_mode)
    layer = bl_cls(4, 6, 3, padding=padding, groups=2, padding_mode=padding_mode)
    layer.load_state_dict(conv.state_dict())  # nn.Conv -> band-limited
    x = torch.randn(shape)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-4, atol=1e-5)
    assert layer.kept_fraction(x) == 1.0
    back = conv_cls(4, 6, 3, padding=padding, groups=2, padding_mode=padding_mode)
    back.load_state_dict(layer.state_dict())  # band-limited -> nn.Conv
    assert layer.state_dict().keys() == conv.state_dict().keys() == {"weight", "bias"}
    torch.testing.assert_close(back(x), conv(x))


@pytest.mark.parametrize("conv_cls, bl_cls, shape", TWINS)
def test_from_conv_keeps_hyperparameters_and_weights(conv_cls, bl_cls, shape):
    conv = conv_cls(4, 6, 3, stride=2, padding=1, dilation=2, bias=False).double().eval()
    layer = bl_cls.from_conv(conv, compress_rate=0.5)
    assert (layer.stride, layer.padding, layer.dilation, layer.bias) == (conv.stride, conv.padding, conv.dilation, None)
    assert layer.weight.dtype == torch.float64 and not layer.training
    torch.testing.assert_close(layer.weight, conv.weight)
    assert "compress_rate=0.5" in repr(layer)
    assert "transform='fft'" in repr(bl_cls.from_conv(conv, transform="fft"))


def test_layer_reports_its_kept_fraction_without_state_and_changes_band():
    layer = BandLimitedConv2d(3, 4, 3, padding=1, compress_rate=0.5)
    x = torch.rand(2, 3, 32, 32)
    before = dict(vars(layer))
    y_half = layer(x)
    assert dict(vars(layer)).keys() == before.keys()  # forward writes no module state
    assert 0.45 <= layer.kept_fraction(x) <= 0.6
    layer.set_band(compress_rate=0.85)
    y_low = layer(x)
    assert layer.kept_fraction(x) < 0.2
    layer.set_band(energy=1.0)
    assert layer(x).shape == y_half.shape == y_low.shape
    assert layer.kept_fraction(x) == 1.0 and "energy=1.0" in repr(layer)
    layer.set_band(energy=0.9)
    smooth = torch.linspace(0, 1, 32).expand(2, 3, 32, 32)  # a ramp: its energy sits at low frequencies
    assert layer.kept_fraction(smooth) < layer.kept_fraction(torch.randn(2, 3, 32, 32))


def test_recording_bands_sees_every_forward_of_every_band_limited_layer():
    model = nn.Sequential(BandLimitedConv2d(3, 4, 3, padding=1, compress_rate=0.5), nn.Conv2d(4, 4, 1))
    x = torch.rand(2, 3, 16, 16)
    with recording_bands(model) as record:
        model(x)
        model(x)
    assert record == {"0": [model[0].kept_fraction(x)] * 2}
    model(x)
    assert len(record["0"]) == 2  # the hooks are gone after the block


def test_the_layer_is_nn_conv_forward_so_weight_parametrizations_apply():
    """torch's forward passes self.weight to _conv_forward: a parametrization (here a zeroing one) takes effect."""
    from torch.nn.utils import parametrize

    layer = BandLimitedConv2d(3, 4, 3, padding=1, compress_rate=0.5, bias=False)

    class Zero(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(w)

    parametrize.register_parametrization(layer, "weight", Zero())
    assert layer(torch.rand(1, 3, 8, 8)).abs().max() == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(compress_rate=1.0), r"compress_rate must be in \[0.0, 1.0\)"),
        (dict(compress_rate=0.3, energy=0.9), "either compress_rate or energy, not both"),
        (dict(energy=0.0), r"energy must be in \(0.0, 1.0\]"),
        (dict(padding_mode="mirror"), "padding_mode"),
        (dict(backend="jax"), "backend must be one of"),
        (dict(transform="fftw"), "transform must be one of"),
    ],
)
def test_layer_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BandLimitedConv2d(3, 4, 3, **kwargs)


@pytest.mark.parametrize(
    "x, match",
    [(torch.rand(3, 8, 8), r"input must be N x C x H x W \(rank 4\)"), (torch.rand(2, 5, 8, 8), "in_channels=3")],
)
def test_layer_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        BandLimitedConv2d(3, 4, 3)(x)


def test_bandlimit_swaps_every_conv_and_rejects_bad_arguments():
    model = models.make("fcn1d", num_classes=3, in_channels=1)
    n_conv = sum(isinstance(m, nn.Conv1d) for m in model.modules())
    assert bandlimit(model, energy=0.99) is model
    assert sum(isinstance(m, BandLimitedConv1d) for m in model.modules()) == n_conv > 0
    bandlimit(model, compress_rate=0.5)  # already band-limited layers get the new band
    assert {m.compress_rate for m in model.modules() if isinstance(m, BandLimitedConv1d)} == {0.5}
    with pytest.raises(ValueError, match="not both"):
        bandlimit(model, compress_rate=0.5, energy=0.9)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        bandlimit("resnet18")


def test_bandlimit_converts_conv3d_and_keeps_its_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 3, (1, 3, 3), stride=(1, 2, 2)))
    x = torch.randn(2, 2, 4, 8, 8)
    with torch.no_grad():
        expected = model(x)
        actual = bandlimit(model).eval()(x)
    assert [type(m) for m in model if not isinstance(m, nn.ReLU)] == [BandLimitedConv3d] * 2
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_bandlimit_resnet18_rate_zero_gives_the_same_logits():
    torch.manual_seed(0)
    model = models.make("resnet18").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        n_conv = sum(isinstance(m, nn.Conv2d) for m in model.modules())
        actual = bandlimit(model, compress_rate=0).eval()(x)
    assert sum(isinstance(m, BandLimitedConv2d) for m in model.modules()) == n_conv
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def loss_after_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_bandlimit_resnet18_trains_at_half_rate():
    torch.manual_seed(0)
    cifar = data.cifar10("train", limit=200, seed=0)
    x, y = cifar.x[:8], cifar.y[:8]
    model = bandlimit(models.make("resnet18"), compress_rate=0.5).train()
    losses = loss_after_steps(model, x, y, steps=4, lr=1e-3)
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.85])
def test_band_limited_lenet_trains_on_cifar10(rate):
    torch.manual_seed(0)
    cifar = data.cifar10("train", limit=200, seed=0)
    x, y = cifar.x[:64], cifar.y[:64]
    model = bandlimit(models.make("lenet"), compress_rate=rate)
    losses = loss_after_steps(model, x, y, steps=40, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0], losses
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.3  # well above chance (0.1) on the batch it fitted


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_layer_on_cuda_matches_conv():
    conv = nn.Conv2d(4, 6, 3, padding=1).cuda()
    layer = BandLimitedConv2d.from_conv(conv)
    x = torch.randn(2, 4, 9, 8, device="cuda")
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-4, atol=1e-5)
