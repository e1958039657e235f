"""FastNet and its recipe: whitening against numpy's eigen-decomposition, the schedule in closed
form, band-limiting every layer, and a resumed run equal to an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_bl import data, models
from robustbench_bl.spectral import BandLimitedConv2d, bandlimit
from robustbench_bl.training.fast import FastRecipe, init_whitening, lr_factor, train_fast

#: Narrow widths keep the recipe tests fast; the architecture is the same at any width.
SMALL = (16, 32, 32)


def test_fastnet_maps_images_to_logits_with_plain_convolutions() -> None:
    model = models.FastNet(widths=SMALL).eval()
    assert model(torch.rand(3, 3, 32, 32)).shape == (3, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 7 and all(type(m) is nn.Conv2d for m in convs)


def test_bandlimit_converts_every_fastnet_conv_and_equals_it_at_rate_zero() -> None:
    torch.manual_seed(0)
    plain = models.FastNet(widths=SMALL).eval()
    limited = bandlimit(models.FastNet(widths=SMALL), compress_rate=0.0)
    limited.load_state_dict(plain.state_dict())
    limited.eval()
    assert sum(isinstance(m, BandLimitedConv2d) for m in limited.modules()) == 7
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(limited(x), plain(x), rtol=1e-4, atol=1e-5)


def test_whitening_decorrelates_two_by_two_patches() -> None:
    """Filters v / sqrt(l + eps) give outputs with second moments l / (l + eps), l from numpy."""
    x = data.packaged_sample("train").x[:300]
    model = models.FastNet(widths=SMALL)
    eps = 5e-4
    init_whitening(model, x, eps)
    z = model.normalize(x).double()
    out = F.conv2d(z, model.whiten.weight.double())
    moments = torch.einsum("nchw,ndhw->cd", out, out) / (out.shape[0] * out.shape[2] * out.shape[3])
    patches = z.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).numpy()
    eigenvalues = np.sort(np.linalg.eigvalsh(patches.T @ patches / len(patches)))[::-1].copy()
    expected = torch.from_numpy(eigenvalues / (eigenvalues + eps))
    torch.testing.assert_close(moments[:12, :12], torch.diag(expected), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out[:, 12:], -out[:, :12])


def test_learning_rate_schedule_is_the_triangle() -> None:
    recipe = FastRecipe()
    total = 1000
    assert lr_factor(0, total, recipe) == pytest.approx(0.2)
    assert lr_factor(230, total, recipe) == pytest.approx(1.0)
    assert lr_factor(115, total, recipe) == pytest.approx(0.6)  # halfway up: (0.2 + 1) / 2
    assert lr_factor(total, total, recipe) == pytest.approx(0.07)
    assert lr_factor(615, total, recipe) == pytest.approx((1 + 0.07) / 2)  # halfway down


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    train = data.packaged_sample("train").at_most(512)
    recipe = FastRecipe(epochs=2, batch_size=256, whiten_images=100, whiten_bias_epochs=1, lookahead_every=1)

    def fresh() -> models.FastNet:
        torch.manual_seed(0)
        return bandlimit(models.FastNet(widths=SMALL), compress_rate=0.5)

    whole = fresh()
    history = train_fast(whole, train, recipe, device="cpu", progress=False)
    assert [h["epoch"] for h in history] == [0, 1]
    first = fresh()
    train_fast(
        first, train, recipe, device="cpu", resume=tmp_path / "run.pt", progress=False, max_steps=2
    )  # "killed" after epoch 0
    resumed = fresh()
    rest = train_fast(resumed, train, recipe, device="cpu", resume=tmp_path / "run.pt", progress=False)
    assert [h["epoch"] for h in rest] == [0, 1]
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0, msg=key)
    other = FastRecipe(epochs=3, batch_size=256, whiten_images=100)
    with pytest.raises(ValueError, match="belongs to another recipe"):
        train_fast(fresh(), train, other, device="cpu", resume=tmp_path / "run.pt", progress=False)


def test_on_epoch_sees_the_initialized_model_then_each_epochs_weights() -> None:
    """Epoch -1 is the model as training starts (whitening already set from the data, not random),
    then one call per epoch with the weights being trained."""
    train = data.packaged_sample("train").at_most(512)
    recipe = FastRecipe(epochs=2, batch_size=256, whiten_images=100)
    torch.manual_seed(0)
    model = models.FastNet(widths=SMALL)
    expected = models.FastNet(widths=SMALL)
    init_whitening(expected, train.x[:100], recipe.whiten_eps)
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def record(epoch: int, net: nn.Module) -> None:
        state = net.state_dict()
        seen.append((epoch, state["whiten.weight"].clone(), state["head.weight"].clone()))

    train_fast(model, train, recipe, device="cpu", progress=False, on_epoch=record)
    assert [e for e, _, _ in seen] == [-1, 0, 1]
    torch.testing.assert_close(seen[0][1], expected.whiten.weight)
    assert not torch.equal(seen[0][2], seen[1][2]) and not torch.equal(seen[1][2], seen[2][2])


def test_recipe_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="epochs"):
        FastRecipe(epochs=0)
    with pytest.raises(ValueError, match="momentum"):
        FastRecipe(momentum=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        train_fast(
            models.FastNet(widths=SMALL), data.packaged_sample("test").at_most(100), FastRecipe(), progress=False
        )


def test_the_learned_stem_trains_its_first_layer_from_a_random_init() -> None:
    """The whitening-free control: the first convolution is not set from data and is trained."""
    torch.manual_seed(0)
    model = models.FastNet(widths=(8, 8, 8), stem="learned")
    start = model.whiten.weight.detach().clone()
    recipe = FastRecipe(epochs=1, batch_size=16, whiten_images=16, whiten_bias_epochs=0, lookahead_every=1)
    train_fast(model, data.packaged_sample("train").at_most(32), recipe, device="cpu", progress=False)
    assert model.whiten.bias is not None and model.whiten.weight.requires_grad and model.whiten.bias.requires_grad
    assert not torch.equal(model.whiten.weight, start)
    with pytest.raises(ValueError, match="stem"):
        models.FastNet(stem="pca")
