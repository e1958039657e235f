"""Every registered channel against the same contract, plus each channel against an independent reference."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from robustbench_bl import channels
from robustbench_bl.channels import JPEG, ColorDepth, Compose, FFTCompression, GaussianNoise, SVDCompression
from robustbench_bl.spectral.compression import static_mask

NAMES = channels.names()
STOCHASTIC = [n for n in NAMES if channels.channel_class(n).stochastic]
DETERMINISTIC = [n for n in NAMES if n not in STOCHASTIC]
LOSSY = [n for n in NAMES if n != "identity"]
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def lossy(name: str, **kwargs) -> channels.Channel:
    """The channel at the lossy end of its sweep (identity has only one strength)."""
    cls = channels.channel_class(name)
    return channels.make(name, None if name == "identity" else cls.sweep[1], **kwargs)


def images(*shape: int, dtype=torch.float64, seed: int = 0, low: int = 1, high: int = 255) -> torch.Tensor:
    """8-bit images (values k/255) strictly inside (0, 1), so finite differences stay in range."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, shape, generator=g).to(dtype) / 255


# --- the contract, over the registry ---------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 1, 9, 7)])
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_device_range(name, shape, dtype, device):
    x = torch.rand(shape, dtype=dtype, device=device)
    y = lossy(name, seed=0)(x)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_single_image_in_a_torchvision_pipeline(name):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    pipeline = transforms.Compose([transforms.ToTensor(), lossy(name, seed=1)])
    y = pipeline(Image.fromarray(pixels))
    expected = lossy(name, seed=1)(transforms.functional.to_tensor(pixels)[None])[0]
    assert y.shape == (3, 8, 8)
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("name", NAMES)
def test_inside_sequential_with_a_model(name):
    model = nn.Sequential(lossy(name, seed=0, gradient="bpda"), nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    x = images(2, 3, 8, 8, dtype=torch.float32).requires_grad_()
    model(x).sum().backward()
    torch.testing.assert_close(x.grad, model[2].weight.sum(0).view(3, 8, 8).expand(2, -1, -1, -1))


@pytest.mark.parametrize("name", STOCHASTIC)
def test_same_seed_same_draws_different_seed_different_draws(name):
    x = images(2, 3, 8, 8)
    first, again, other = lossy(name, seed=5), lossy(name, seed=5), lossy(name, seed=6)
    a = first(x)
    torch.testing.assert_close(a, again(x), rtol=0, atol=0)
    assert not torch.equal(a, other(x))
    assert not torch.equal(a, first(x)), "a channel's stream must advance between calls"


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_channels_ignore_the_seed(name):
    x = images(2, 3, 8, 8)
    torch.testing.assert_close(lossy(name, seed=1)(x), lossy(name, seed=2)(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in NAMES if channels.channel_class(n).identity_strength is not None])
def test_zero_distortion_at_the_identity_strength(name):
    cls = channels.channel_class(name)
    x = images(3, 3, 8, 8, low=0, high=256)
    channel = channels.make(name, cls.identity_strength, seed=0)
    torch.testing.assert_close(channel.distortion(x), torch.zeros(3, dtype=x.dtype), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", LOSSY)
def test_distortion_grows_along_the_sweep(name):
    cls = channels.channel_class(name)
    strengths = np.linspace(*cls.sweep, 4)
    strengths = [round(s) for s in strengths] if cls.integer else [float(s) for s in strengths]
    x = images(4, 3, 16, 16)
    mean = [channels.make(name, s, seed=0).distortion(x, draws=8).mean().item() for s in strengths]
    assert all(a <= b + 1e-9 for a, b in itertools.pairwise(mean)), mean
    assert mean[-1] > mean[0] + 0.1, mean


@pytest.mark.parametrize("name", NAMES)
def test_bpda_gradient_is_the_identity(name):
    x = images(2, 3, 8, 8).requires_grad_()
    weights = torch.randn_like(x)
    (lossy(name, seed=0, gradient="bpda")(x) * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_exact_gradient_matches_finite_differences(name):
    # A fresh channel per call gives the same draws each time, so the channel is a fixed function.
    # On the 8-bit grid, rounding steps are far from x, where ColorDepth and JPEG have zero derivative.
    x = images(1, 3, 6, 6).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: lossy(name, seed=0)(t), (x,), eps=1e-6, atol=1e-5)


def test_exact_gradient_of_a_composition_matches_finite_differences():
    x = images(1, 3, 6, 6).requires_grad_()
    make = lambda: Compose(FFTCompression(0.5), GaussianNoise(0.05, seed=1), SVDCompression(0.5))
    assert torch.autograd.gradcheck(lambda t: make()(t), (x,), eps=1e-6, atol=1e-5)


# --- each channel against an independent reference --------------------------------------------


@pytest.mark.parametrize("bits", range(1, 9))
def test_color_depth_is_the_rounding_formula(bits):
    x = images(2, 3, 8, 8, low=0, high=256)
    levels = 2**bits - 1
    expected = np.round(levels * x.numpy()) / levels
    np.testing.assert_allclose(ColorDepth(bits)(x).numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 10, 6), (1, 2, 6, 10)])
@pytest.mark.parametrize("rate", [0.25, 0.5, 0.9])
def test_svd_matches_numpy_truncated_svd(shape, rate):
    x = images(*shape)
    channel = SVDCompression(rate)
    k = channel.rank_kept(*shape[-2:])
    assert k == int(np.ceil((1 - rate) * min(shape[-2:]) - 1e-9))
    u, s, vh = np.linalg.svd(x.numpy(), full_matrices=False)
    expected = np.clip((u[..., :k] * s[..., None, :k]) @ vh[..., :k, :], 0, 1)
    np.testing.assert_allclose(channel(x).numpy(), expected, rtol=0, atol=1e-10)


def test_svd_exact_gradient_is_finite_on_rank_deficient_images():
    x = torch.full((1, 1, 8, 8), 0.5, dtype=torch.float64)
    x[..., :2, :] = 0.25  # rank 2: six repeated zero singular values
    x.requires_grad_()
    SVDCompression(0.5)(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("rate", [0.3, 0.7])
def test_fft_keeps_exactly_the_masked_band(rate):
    # Values near 0.5 keep the low-pass inside [0, 1], so the final clip does not act.
    x = 0.4 + 0.2 * images(2, 3, 8, 10)
    y = FFTCompression(rate)(x).numpy()
    full = np.fft.fft2(x.numpy())
    one_sided = static_mask((8, 10), rate).numpy()
    # Expand the one-sided mask to the full spectrum through conjugate symmetry: (i, j) ~ (-i, -j).
    mask = np.zeros((8, 10), dtype=bool)
    mask[:, : one_sided.shape[1]] = one_sided
    rows, cols = np.nonzero(one_sided)
    mask[(-rows) % 8, (-cols) % 10] = True
    np.testing.assert_allclose(np.fft.fft2(y), np.where(mask, full, 0), atol=1e-9)


@pytest.mark.parametrize("quality", [20, 75, 95])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpeg_matches_pil(quality, mode):
    rng = np.random.default_rng(quality)
    smooth = np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((8, 8, 1))) + rng.integers(-20, 21, (32, 32, 3))
    pixels = np.clip(smooth, 0, 255).astype(np.uint8)
    if mode == "L":
        pixels = pixels[..., :1]
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(buffer, format="JPEG", quality=quality)
    reference = np.asarray(Image.open(buffer), dtype=np.float64).reshape(32, 32, -1) / 255
    y = JPEG(quality)(torch.from_numpy(pixels).permute(2, 0, 1)[None].double() / 255)[0].permute(1, 2, 0).numpy()
    assert np.abs(y - reference).mean() < 0.5 / 255
    assert np.abs(y - reference).max() <= 4 / 255


@pytest.mark.parametrize(
    ("name", "std", "mean_abs"),
    [("gauss", 1.0, np.sqrt(2 / np.pi)), ("uniform", 1 / np.sqrt(3), 0.5), ("laplace", np.sqrt(2), 1.0)],
)
def test_noise_statistics(name, std, mean_abs):
    strength = 0.01  # small enough that clipping around 0.5 never acts
    x = torch.full((16, 3, 32, 32), 0.5, dtype=torch.float64)
    noise = (channels.make(name, strength, seed=3)(x) - x) / strength
    assert abs(noise.mean().item()) < 4 * std / np.sqrt(noise.numel())  # four standard errors
    assert noise.std().item() == pytest.approx(std, rel=0.02)
    assert noise.abs().mean().item() == pytest.approx(mean_abs, rel=0.02)
    if name == "uniform":
        assert noise.abs().max() <= 1 + 1e-12


def test_distortion_of_gaussian_noise_is_sigma_sqrt_d():
    sigma, d = 0.01, 3 * 16 * 16
    x = torch.full((4, 3, 16, 16), 0.5, dtype=torch.float64)
    assert GaussianNoise(sigma, seed=0).distortion(x, draws=64).numpy() == pytest.approx(sigma * np.sqrt(d), rel=0.01)


def test_compose_applies_parts_in_order():
    x = images(2, 3, 8, 8)
    parts = ColorDepth(3), FFTCompression(0.5)
    composed = Compose(*parts)
    torch.testing.assert_close(composed(x), parts[1](parts[0](x)), rtol=0, atol=0)
    assert composed.strength == (3, 0.5) and not composed.stochastic
    assert Compose(ColorDepth(3), GaussianNoise(0.1)).stochastic


# --- the registry -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOSSY)
def test_make_from_spec_equals_the_class(name):
    cls = channels.channel_class(name)
    strength = cls.sweep[1]
    from_spec = channels.make(f"{name}:{strength}")
    assert type(from_spec) is cls and from_spec.strength == strength
    assert channels.make(name, strength, gradient="bpda").gradient == "bpda"


def test_names_lists_every_channel():
    assert channels.names() == sorted(["fft", "cd", "svd", "gauss", "uniform", "laplace", "jpeg", "identity"])
    assert isinstance(channels.make("identity"), channels.Identity)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("x", "error", "words"),
    [
        (torch.full((1, 3, 4, 4), 1.5), ValueError, "[0, 1]"),
        (torch.full((1, 3, 4, 4), -0.1), ValueError, "[0, 1]"),
        (torch.rand(4, 4), ValueError, "rank"),
        (torch.rand(1, 1, 3, 4, 4), ValueError, "rank"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), TypeError, "floating"),
        (np.zeros((1, 3, 4, 4)), TypeError, "torch.Tensor"),
    ],
)
def test_bad_images_are_rejected(name, x, error, words):
    with pytest.raises(error, match=f"x .*{words}".replace("[", r"\[").replace("]", r"\]")):
        lossy(name)(x)


@pytest.mark.parametrize("name", NAMES)
def test_strength_outside_the_range_is_rejected(name):
    cls = channels.channel_class(name)
    low, high = cls.bounds
    with pytest.raises(ValueError, match=f"{cls.__name__} strength must be in"):
        cls(high + 1)
    with pytest.raises((ValueError, TypeError), match=f"{cls.__name__} strength"):
        cls(low - 1)
    if cls.open_high:
        with pytest.raises(ValueError, match=r"\)"):
            cls(high)


def test_integer_strength_rejects_floats():
    with pytest.raises(TypeError, match="ColorDepth strength must be an int"):
        ColorDepth(4.0)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"channel must be one of .*'fft'.*'gauss'.*got 'gaus'"):
        channels.make("gaus:0.1")


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        (("gauss",), ValueError, "needs a strength"),
        (("gauss:abc",), ValueError, "must be a number"),
        (("cd:2.5",), ValueError, "must be an int"),
        (("gauss:0.1", 0.1), ValueError, "not both"),
        ((3,), TypeError, "spec must be a str"),
    ],
)
def test_bad_specs_are_rejected(args, error, words):
    with pytest.raises(error, match=words):
        channels.make(*args)


def test_bad_keywords_are_rejected():
    with pytest.raises(ValueError, match="gradient must be one of"):
        GaussianNoise(0.1, gradient="eot")
    with pytest.raises(ValueError, match="seed must be >= 0"):
        GaussianNoise(0.1, seed=-1)
    with pytest.raises(TypeError, match="Compose takes one or more Channel"):
        Compose(nn.Identity())
