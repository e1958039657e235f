"""The bfloat16 attacker and trainer: 'auto' follows the hardware, band-limited layers run under
autocast and match float32, and the judge of every attack stays float32."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_bl import attacks, data, models, precision
from robustbench_bl.spectral import BandLimitedConv1d, BandLimitedConv2d, BandLimitedConv3d
from robustbench_bl.training.fast import FastRecipe, train_fast

LAYERS = {1: BandLimitedConv1d, 2: BandLimitedConv2d, 3: BandLimitedConv3d}
SIZES = {1: (23,), 2: (15, 13), 3: (7, 6, 5)}


@pytest.mark.parametrize(
    "flags, expected",
    [({"avx2", "fma"}, "float32"), ({"avx512f", "avx512_bf16"}, "bfloat16"), ({"amx_bf16"}, "bfloat16")],
)
def test_auto_is_bfloat16_only_with_native_bf16_on_the_cpu(monkeypatch, flags, expected) -> None:
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset(flags))
    assert precision.resolve("auto", "cpu") == expected
    assert precision.resolve("float32", "cpu") == "float32"
    assert precision.resolve("bfloat16", "cpu") == "bfloat16"


def test_unknown_precision_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="precision"):
        precision.resolve("fp8", "cpu")


def test_the_attacker_view_runs_the_model_in_bfloat16_and_returns_float32() -> None:
    seen = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((torch.is_autocast_enabled("cpu"), x.is_contiguous(memory_format=torch.channels_last)))
            return x.flatten(1) @ torch.ones(x[0].numel(), 3, dtype=x.dtype)

    out = precision.for_attacker(Probe(), "bfloat16", "cpu")(torch.rand(2, 3, 4, 4))
    assert out.dtype == torch.float32
    plain = precision.for_attacker(Probe(), "float32", "cpu")(torch.rand(2, 3, 4, 4, dtype=torch.float64))
    assert plain.dtype == torch.float64  # float32 mode changes nothing but the layout
    assert seen == [(True, True), (False, True)]


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.float() - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("transform", ["dft", "fft"])
@pytest.mark.parametrize(
    "band", [{"compress_rate": 0.0}, {"compress_rate": 0.5}, {"compress_rate": 0.85}, {"energy": 0.9}]
)
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_band_limited_layer_under_autocast_matches_float32(d, groups, band, transform) -> None:
    """Under bf16 autocast the layer takes a bf16 input, returns bf16, and its output and gradients
    (input and filters) equal the float32 layer's on the same (bf16-rounded) input within 1%:
    the rounding of one bf16 input and output, nothing more."""
    torch.manual_seed(d * 10 + groups)
    layer = LAYERS[d](4, 8, 3, padding=1, groups=groups, transform=transform, **band)
    x = torch.randn(2, 4, *SIZES[d]).bfloat16().float()
    reference = layer(x.requires_grad_())
    upstream = torch.randn_like(reference)
    ref_gx, ref_gw = torch.autograd.grad(reference, (x, layer.weight), upstream)

    low = x.detach().bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(low)
    assert y.dtype == torch.bfloat16
    gx, gw = torch.autograd.grad(y, (low, layer.weight), upstream.bfloat16())
    assert gx.dtype == torch.bfloat16 and gw.dtype == torch.float32  # the weights stay float32 masters
    assert _relative(y, reference) < 1e-2
    assert _relative(gx, ref_gx) < 2e-2
    assert _relative(gw, ref_gw) < 2e-2


def test_bfloat16_input_outside_autocast_is_refused_naming_autocast() -> None:
    layer = BandLimitedConv2d(3, 4, 3, compress_rate=0.5)
    with pytest.raises(TypeError, match="autocast"):
        layer(torch.rand(1, 3, 8, 8, dtype=torch.bfloat16))


class _Split(nn.Module):
    """Two logits of a white 1 x 10 x 10 image: 100 pixels times 1.0038 against a bias of 100.3.
    float32 says class 0 (100.38 > 100.3); bfloat16 rounds 1.0038 down to 1 and 100.3 up to 100.5
    and says class 1."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(100, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.stack([torch.full((100,), 1.0038), torch.zeros(100)]))
            self.linear.bias.copy_(torch.tensor([0.0, 100.3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def test_the_judge_is_float32_whatever_the_attacker_runs_in() -> None:
    model = _Split().eval()
    x, y = torch.ones(3, 1, 10, 10), torch.zeros(3, dtype=torch.long)
    assert model(x).argmax(1).tolist() == [0, 0, 0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).argmax(1).tolist() == [1, 1, 1]  # the attacker's model gets every example wrong
    out = attacks.run(model, "pgd-linf", x, y, epsilons=[0.0], options={"steps": 2}, precision="bfloat16")
    assert out.precision == "bfloat16"
    assert out.clean_correct.tolist() == [True, True, True]  # the float32 vote
    assert out.robust.tolist() == [[True, True, True]]  # eps 0: nothing moves, and the judge still says right
    rows = attacks.evaluate(model, "pgd-linf", x, y, epsilons=[0.0], options={"steps": 2}, precision="bfloat16")
    assert set(rows.attacker_precision) == {"bfloat16"}
    assert rows.query("metric == 'clean_accuracy'").value.item() == 1.0


def test_minimization_attacks_stay_float32() -> None:
    model = _Split().eval()
    x, y = torch.ones(2, 1, 10, 10), torch.zeros(2, dtype=torch.long)
    options = {"steps": 2, "binary_search_steps": 1}
    assert (
        attacks.run(model, "cw-l2", x, y, epsilons=[0.1], options=options, precision="bfloat16").precision == "float32"
    )


def test_training_in_bfloat16_keeps_float32_weights_and_records_the_precision() -> None:
    train = data.packaged_sample("train").at_most(32)
    model = models.FastNet(widths=(8, 8, 8))
    recipe = FastRecipe(epochs=1, batch_size=16, whiten_images=16)
    history = train_fast(model, train, recipe, device="cpu", progress=False, precision="bfloat16")
    assert [h["precision"] for h in history] == ["bfloat16"]
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rounded_model_is_the_closed_form_of_rounded_weights_and_inputs(dtype: torch.dtype) -> None:
    """Linear -> ReLU -> Linear in emulated reduced precision equals the float32 computation on
    dtype-rounded weights, biases and layer inputs, and differs from the plain float32 model."""
    torch.manual_seed(0)
    first, second = nn.Linear(7, 5), nn.Linear(5, 3)
    model = nn.Sequential(first, nn.ReLU(), second)
    x = torch.randn(4, 7)

    def r(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype).float()

    hidden = torch.relu(F.linear(r(x), r(first.weight), r(first.bias)))
    expected = F.linear(r(r(hidden)), r(second.weight), r(second.bias))
    low = precision.rounded(model, dtype)
    assert torch.equal(low(x), expected)
    assert not torch.equal(low(x), model(x))
    copied = next(low.children())
    assert isinstance(copied, nn.Linear) and not torch.equal(copied.weight, first.weight)  # a copy; the model is kept


def test_rounded_refuses_a_dtype_that_is_not_narrower() -> None:
    with pytest.raises(ValueError, match="dtype must be a floating type narrower than float32"):
        precision.rounded(nn.Linear(2, 2), torch.float64)


def test_commands_count_denormals_as_zero_in_every_thread() -> None:
    """As the process's command, `command_line` makes float32 denormals count as zero, also in the
    worker threads torch starts afterwards (importing the package has not started them); called
    in-process with arguments it keeps them (else hypothesis and other tests would inherit the flag)."""
    script = (
        "import torch\n"
        "torch.set_num_threads(2)\n"
        "import robustbench_bl, robustbench_bl.attacks, robustbench_bl.studies, robustbench_bl.zoo\n"
        "from robustbench_bl.cli import command_line\n"
        # in-process, given its arguments, it leaves denormals alone (too few to start the threads) ...
        "command_line(lambda argv: print(int((torch.full((10,), 1e-40) * 1.0).count_nonzero())), [])\n"
        # ... and as the process's command it flushes them, in both threads of a parallel product
        "command_line(lambda argv: print(int((torch.full((1_000_000,), 1e-40) * 1.0).count_nonzero())))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["10", "0"]
