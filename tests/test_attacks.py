"""Attacks under threat models on a small trained model: every registered attack runs, robust <=
clean, epsilon 0 changes nothing, larger epsilons never help the defense, bpda >= nonadaptive on
color depth, eot draws the channel eot_samples times per step in one batch, flags, bad input."""

from __future__ import annotations

import copy
import math
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from robustbench_bl import Defended, attacks, data
from robustbench_bl.channels import Channel, ColorDepth, FFTCompression, GaussianNoise
from robustbench_bl.training import TrainConfig, build_model, train

#: Few steps with large relative step sizes: every attack runs in well under a second.
FAST: dict[str, dict[str, object]] = {
    "fgsm": {},
    "pgd-linf": {"steps": 8},
    "pgd-l2": {"steps": 8},
    "pgd-linf-minimal": {"steps": 5, "tries": 3},
    "apgd-ce-linf": {"steps": 5},
    "apgd-dlr-linf": {"steps": 5},
    "apgd-ce-l2": {"steps": 5},
    "apgd-dlr-l2": {"steps": 5},
    "square-linf": {"n_queries": 20},
    "square-l2": {"n_queries": 20},
    "cw-l2": {"steps": 10, "binary_search_steps": 2, "initial_const": 1.0, "stepsize": 0.05},
    "deepfool-linf": {"steps": 10},
    "boundary": {"steps": 10},
    "hopskipjump": {"steps": 2, "initial_gradient_eval_steps": 10, "max_gradient_eval_steps": 20},
    "additive-uniform": {"steps": 20},
    "additive-gaussian": {"steps": 20},
    "blended-uniform": {"directions": 20, "steps": 10},
    "salt-and-pepper": {"steps": 20},
    "gaussian-blur": {"steps": 10},
}
#: An epsilon no [0, 1] image pair exceeds in each norm (sqrt(3 * 32 * 32) < 56).
UNBOUNDED = {"Linf": 1.0, "L2": 56.0}


@lru_cache(maxsize=1)
def trained_lenet() -> tuple[nn.Module, Tensor, Tensor]:
    """LeNet fitted to 200 packaged CIFAR-10 training images (it classifies nearly all of them right)."""
    train_set = data.cifar10("train", limit=200)
    config = TrainConfig(
        model="lenet", epochs=30, batch_size=32, optimizer="adam", lr=3e-3, weight_decay=0.0, limit=200
    )
    model = build_model(config, train_set)  # seeded initialization, whatever ran before in this process
    train(model, train_set, config, device="cpu", progress=False)
    return model.eval(), train_set.x, train_set.y


@pytest.fixture(scope="module")
def lenet() -> tuple[nn.Module, Tensor, Tensor]:
    return trained_lenet()


def metric(frame: pd.DataFrame, name: str) -> pd.Series:
    rows = frame[frame.metric == name]
    return rows.set_index("epsilon").value if rows.epsilon.notna().any() else rows.value


@pytest.mark.parametrize("name", attacks.names())
def test_every_attack_runs_and_robust_never_exceeds_clean(lenet: tuple[nn.Module, Tensor, Tensor], name: str) -> None:
    model, x, y = lenet
    defended = Defended(model, GaussianNoise(0.02), votes=3)
    norm = attacks.make(name).norm
    frame = attacks.evaluate(
        defended, name, x[:6], y[:6], "eot", [0.01, UNBOUNDED[norm]], eot_samples=2, options=FAST[name]
    )
    clean = metric(frame, "clean_accuracy").item()
    robust = metric(frame, "robust_accuracy")
    assert (robust <= clean).all()
    assert frame.norm.eq(norm).all() and frame.attack.eq(name).all()
    expected_path = "majority vote" if attacks.spec(name).kind == attacks.DECISION else "2 draw(s) per step"
    assert expected_path in frame.gradient_path.iloc[0]
    assert {"version_torch", "version_foolbox", "options", "seed", "votes", "channel"} <= set(frame.columns)


def test_unbounded_attacks_fool_the_bare_model(lenet: tuple[nn.Module, Tensor, Tensor]) -> None:
    """With no budget to speak of, a working attack pipeline must report some successes."""
    model, x, y = lenet
    for name in ("fgsm", "pgd-linf", "cw-l2", "hopskipjump", "gaussian-blur", "additive-uniform"):
        norm = attacks.make(name).norm
        out = attacks.run(model, name, x[:8], y[:8], epsilons=UNBOUNDED[norm], options=FAST[name])
        assert out.fooled.any(), name
        assert (out.l2[out.fooled] > 0).all() and (out.linf[out.fooled] <= UNBOUNDED["Linf"]).all()


def test_pgd_at_epsilon_zero_changes_no_prediction(lenet: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = lenet
    frame = attacks.evaluate(model, "pgd-linf", x[:16], y[:16], epsilons=[0.0], options=FAST["pgd-linf"])
    assert metric(frame, "robust_accuracy").item() == metric(frame, "clean_accuracy").item()
    assert metric(frame, "success_rate").item() == 0.0
    assert math.isnan(metric(frame, "l2_median").item())


@pytest.mark.parametrize("name", ["pgd-linf", "deepfool-linf"])
def test_larger_epsilon_never_lowers_success(lenet: tuple[nn.Module, Tensor, Tensor], name: str) -> None:
    model, x, y = lenet
    out = attacks.run(
        model, name, x[:16], y[:16], epsilons=[8 / 255, 0.0, 1 / 255, 2 / 255, 4 / 255], options=FAST[name]
    )
    assert out.epsilons == (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)
    assert (out.fooled[:-1] <= out.fooled[1:]).all()  # per example, not just in the mean
    assert out.fooled[-1].sum() > out.fooled[0].sum()
    assert (out.linf[out.fooled] <= torch.tensor(out.epsilons)[:, None].expand_as(out.fooled)[out.fooled] + 1e-6).all()


def test_bpda_succeeds_at_least_as_often_as_nonadaptive_on_color_depth(lenet: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = lenet
    defended = Defended(model, ColorDepth(3))
    # Small budgets, where rounding to 8 levels decides, and enough steps for the attacks to converge.
    options = {"steps": 20}
    runs = {
        threat: attacks.run(defended, "pgd-linf", x[:64], y[:64], threat, [2 / 255, 4 / 255], options=options)
        for threat in ("nonadaptive", "bpda", "whitebox")
    }
    fooled = {threat: out.fooled.sum(1) for threat, out in runs.items()}
    assert (fooled["bpda"] >= fooled["nonadaptive"]).all()
    assert fooled["bpda"][-1] > fooled["whitebox"][-1]  # exact gradients through rounding are zero
    assert runs["nonadaptive"].masked_fraction == 1.0


class CountingNoise(GaussianNoise):
    """Gaussian noise that records the batch size of every draw."""

    sizes: ClassVar[list[int]] = []

    def _lossy(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        CountingNoise.sizes.append(len(x))
        return super()._lossy(x, generator)


def test_eot_draws_the_channel_eot_samples_times_per_step_in_one_batch(lenet: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = lenet
    n, k, steps = 4, 3, 5
    CountingNoise.sizes.clear()
    attacks.run(
        Defended(model, CountingNoise(0.02), votes=2),
        "pgd-linf",
        x[:n],
        y[:n],
        "eot",
        8 / 255,
        eot_samples=k,
        options={"steps": steps, "losses": ("ce",)},
    )
    # Each attack step is one channel call on the batch repeated k times (plus the check of the
    # clean input and of the last iterate); the judge votes on batches of 2 * n and the gradient
    # probe and distortion use other sizes.
    assert CountingNoise.sizes.count(k * n) == steps + 2
    assert all(size in (n, 2 * n, 16 * n, k * n) for size in CountingNoise.sizes)


def test_flags(lenet: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = lenet
    run = lambda d, threat: attacks.evaluate(d, "fgsm", x[:8], y[:8], threat, 2 / 255).iloc[0]
    cd = Defended(model, ColorDepth(3))
    assert run(cd, "nonadaptive").flag_gradient_masking and "bpda" in run(cd, "nonadaptive")["warnings"]
    assert not run(cd, "bpda").flag_gradient_masking
    noisy = Defended(model, GaussianNoise(0.02), votes=2)
    assert run(noisy, "whitebox").flag_stochastic_without_eot
    assert not run(noisy, "eot").flag_stochastic_without_eot


def test_flag_obfuscation_compares_decision_with_gradient_attacks() -> None:
    def rows(decision_robust: float) -> pd.DataFrame:
        base = {
            "channel": "cd:3",
            "votes": 1,
            "norm": "Linf",
            "epsilon": 0.03,
            "metric": "robust_accuracy",
            "warnings": "",
        }
        return pd.DataFrame(
            [
                {**base, "attack": "pgd-linf", "attack_kind": "gradient", "value": 0.5},
                {**base, "attack": "boundary", "attack_kind": "decision", "value": decision_robust},
            ]
        )

    assert attacks.flag_obfuscation(rows(0.3)).flag_decision_beats_gradient.all()
    assert "obfuscated" in attacks.flag_obfuscation(rows(0.3))["warnings"].iloc[0]
    assert not attacks.flag_obfuscation(rows(0.5)).flag_decision_beats_gradient.any()


def test_transfer_from_laplace(lenet: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = lenet
    frame = attacks.evaluate(
        Defended(model, ColorDepth(4)),
        "pgd-linf",
        x[:8],
        y[:8],
        "bpda+eot",
        [8 / 255],
        eot_samples=2,
        transfer="laplace:0.03",
        options=FAST["pgd-linf"],
    )
    assert frame.transfer_from.eq("laplace:0.03").all() and frame.channel.eq("cd:4").all()
    assert "laplace:0.03" in frame.gradient_path.iloc[0]
    assert metric(frame, "robust_accuracy").item() <= metric(frame, "clean_accuracy").item()
    assert metric(frame, "success_rate").item() > 0


def test_same_seed_same_rows(lenet: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = lenet
    defended = Defended(model, GaussianNoise(0.05), votes=3)
    frames = [
        attacks.evaluate(
            defended,
            "pgd-linf",
            x[:8],
            y[:8],
            "eot",
            [2 / 255, 8 / 255],
            eot_samples=2,
            seed=3,
            options=FAST["pgd-linf"],
        )
        for _ in range(2)
    ]
    values = [f[f.metric != "attack_seconds"].value.fillna(-1).tolist() for f in frames]
    assert values[0] == values[1]


def test_vote_scores_give_the_defended_majority_label(lenet: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, _ = lenet
    defended = Defended(model, GaussianNoise(0.1), votes=5)
    vote = attacks.Vote(defended, seed=7)
    labels, _ = Defended(model, GaussianNoise(0.1), votes=5, seed=7).predict(x[:10])
    assert torch.equal(vote(x[:10]).argmax(1), labels)
    assert torch.equal(vote(x[:10]), vote(x[:10]))  # common random numbers: the same draws every query


def test_bad_input(lenet: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = lenet
    x, y = x[:4], y[:4]
    with pytest.raises(ValueError, match=r"attack must be one of .*pgd-linf"):
        attacks.evaluate(model, "pgd", x, y)
    with pytest.raises(ValueError, match=r"threat must be one of .*bpda"):
        attacks.evaluate(model, "fgsm", x, y, threat="adaptive")
    with pytest.raises(ValueError, match="epsilons must be in"):
        attacks.evaluate(model, "fgsm", x, y, epsilons=[0.1, -0.01])
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 9\]"):
        attacks.evaluate(model, "fgsm", x, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="one label per example of x"):
        attacks.evaluate(model, "fgsm", x, y[:3])
    with pytest.raises(ValueError, match="transfer needs an adaptive threat"):
        attacks.evaluate(model, "fgsm", x, y, transfer="laplace:0.03")
    with pytest.raises(ValueError, match="options for attack 'pgd-linf'"):
        attacks.evaluate(model, "pgd-linf", x, y, options={"stepz": 3})


@pytest.mark.parametrize(
    "name,options",
    [
        ("pgd-linf", {"steps": 0}),
        ("pgd-linf", {"steps": -1}),
        ("apgd-ce-linf", {"steps": 0}),
        ("square-linf", {"n_queries": 0}),
        ("additive-uniform", {"steps": 0}),
        ("cw-l2", {"stepsize": 0.0}),
        ("pgd-l2", {"step_size": -0.1}),
        ("pgd-l2", {"rel_stepsize": 0.1}),
    ],
)
def test_a_budget_that_runs_no_attack_is_an_error(name: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="options"):
        attacks.make(name, **options)


def test_attacker_draws_never_replay_the_judges(lenet: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, _ = lenet
    defended = Defended(model, GaussianNoise(0.1), votes=1)
    attacker = attacks.threat_model(defended, False, attacks.Threat.parse("eot"), 1, seed=3).module
    judge = Defended(model, GaussianNoise(0.1), votes=1, seed=3).eval()
    same_stream = Defended(model, GaussianNoise(0.1), votes=1, seed=3 + attacks.ATTACKER_STREAM).eval()
    with torch.no_grad():
        assert torch.equal(attacker(x[:4]), same_stream(x[:4]))  # the attacker's stream, reproducibly
        assert not torch.allclose(attacker(x[:4]), judge(x[:4]))  # never the judge's draws


@pytest.mark.parametrize(("channel", "draws"), [(GaussianNoise(0.1), 4), (FFTCompression(0.5), 1)])
def test_eot_draws_a_stochastic_channel_eot_samples_times_and_a_deterministic_one_once(
    lenet: tuple[nn.Module, Tensor, Tensor], channel: Channel, draws: int
) -> None:
    model, x, _ = lenet
    seen = []
    hook = model.register_forward_hook(lambda module, inputs, output: seen.append(len(inputs[0])))
    attacker = attacks.threat_model(Defended(model, channel), False, attacks.Threat.parse("eot"), 4, seed=0)
    with torch.no_grad():
        attacker.module(x[:3])
    hook.remove()
    assert sum(seen) == 3 * draws and f"{draws} draw(s) per step" in attacker.gradient_path


def test_adversarials_crafted_before_are_judged_as_if_crafted_in_the_run(
    lenet: tuple[nn.Module, Tensor, Tensor],
) -> None:
    model, x, y = lenet
    x, y = x[:12], y[:12]
    defended = Defended(model, FFTCompression(0.3))  # deterministic: the judge's vote does not depend on its draws
    budgets, options = (1 / 255, 4 / 255), {"steps": 10}
    crafted = [attacks.craft_nonadaptive(model, "pgd-linf", x, y, e, seed=2, options=options) for e in budgets]
    given = attacks.run(defended, "pgd-linf", x, y, epsilons=budgets, seed=2, options=options, crafted_before=crafted)
    expected = attacks.judge(defended, x, y, crafted)
    assert given.fooled.any() and torch.equal(given.fooled, expected.fooled) and given.seconds == 0
    assert torch.equal(given.linf.nan_to_num(-1), expected.linf.nan_to_num(-1))
    clean = attacks.run(defended, "pgd-linf", x, y, epsilons=budgets, options=options, crafted_before=[x, x])
    assert not clean.fooled.any()  # the clean images it was given, not an attack of its own


def test_stored_adversarials_are_read_back_and_one_attack_runs_once(
    lenet: tuple[nn.Module, Tensor, Tensor], tmp_path: Path
) -> None:
    """`run(store=...)` judges what it saved instead of attacking again, bit for bit, and only where
    the attack is the same one: a transfer attack against any defense, BPDA+EOT on a deterministic
    channel (= BPDA); never BPDA+EOT on a random channel for its BPDA, nor another seed."""
    model, x, y = lenet
    x, y = x[:12], y[:12]
    crafting = []
    model.register_forward_pre_hook(lambda module, args: crafting.append(torch.is_grad_enabled()))
    options, budgets = {"steps": 4}, (4 / 255, 32 / 255)

    def run(channel: Channel, threat: str, seed: int = 0, **kwargs: Any) -> tuple[attacks.Outcome, bool]:
        crafting.clear()
        out = attacks.run(Defended(model, channel), "pgd-linf", x, y, threat, budgets, 2, seed, options=options,
                          batch_size=5, **kwargs)  # fmt: skip
        return out, sum(crafting) > 2  # gradients beyond gradient_masking's two forwards: the attack ran

    def same(a: attacks.Outcome, b: attacks.Outcome) -> bool:
        return torch.equal(a.fooled, b.fooled) and torch.equal(a.linf.nan_to_num(-1), b.linf.nan_to_num(-1))

    fft, gauss = FFTCompression(0.3), GaussianNoise(0.1)
    reference, attacked = run(fft, "bpda")
    first, attacked_first = run(fft, "bpda", store=tmp_path)
    again, attacked_again = run(fft, "bpda", store=tmp_path)
    assert reference.fooled.any() and attacked and attacked_first and not attacked_again
    assert same(first, reference) and same(again, reference) and again.seconds == first.seconds > 0
    assert not run(fft, "bpda+eot", store=tmp_path)[1]  # deterministic: BPDA+EOT is BPDA
    assert run(fft, "bpda", seed=1, store=tmp_path)[1]  # another seed is another attack
    assert run(gauss, "bpda+eot", store=tmp_path)[1] and run(gauss, "bpda", store=tmp_path)[1]  # random: two attacks
    proxy = GaussianNoise(0.05)
    _, attacked = run(fft, "eot", transfer=proxy, store=tmp_path)
    judged, attacked_again = run(ColorDepth(4), "eot", transfer=proxy, store=tmp_path)
    assert attacked and not attacked_again  # one transfer attack, judged on every defense
    assert same(judged, run(ColorDepth(4), "eot", transfer=proxy)[0])
    assert len(list(tmp_path.glob("pgd-linf-run-*.pt"))) == 5


def test_a_stopped_run_goes_on_from_its_last_stored_batch_bit_for_bit(
    lenet: tuple[nn.Module, Tensor, Tensor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PGD's random starts and EOT's channel draws run on across batches; a run stopped in its
    second batch and started again reads the first back and crafts the rest as one run would have."""
    model, x, y = lenet
    x, y = x[:12], y[:12]
    defended = Defended(model, GaussianNoise(0.05))
    run = partial(attacks.run, defended, "pgd-linf", x, y, "eot", (4 / 255,), 2, 5, options={"steps": 3}, batch_size=5)
    run(store=tmp_path / "whole")
    (whole,) = (tmp_path / "whole").glob("*.pt")  # batches are dropped once the run is saved whole
    calls = []
    attack = attacks.Attack.__call__

    def stops(self: attacks.Attack, *args: Any, **kwargs: Any) -> list[Tensor]:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("stopped")  # while crafting the second batch of the first try
        return attack(self, *args, **kwargs)

    monkeypatch.setattr(attacks.Attack, "__call__", stops)
    with pytest.raises(RuntimeError, match="stopped"):
        run(store=tmp_path / "stopped")
    assert [p.name.rsplit("-", 1)[1] for p in (tmp_path / "stopped").glob("*.pt")] == ["0.pt"]
    run(store=tmp_path / "stopped")
    (resumed,) = (tmp_path / "stopped").glob("*.pt")
    assert len(calls) == 4 and resumed.name == whole.name  # then the second and third batches only
    assert torch.equal(torch.load(resumed)["adversarials"], torch.load(whole)["adversarials"])


@pytest.mark.parametrize(
    ("threat", "given", "message"),
    [
        ("eot", 2, "needs the 'nonadaptive' threat"),
        ("nonadaptive", 1, "one adversarial batch shaped like x"),
    ],
)
def test_adversarials_crafted_before_must_fit_the_run(
    lenet: tuple[nn.Module, Tensor, Tensor], threat: str, given: int, message: str
) -> None:
    model, x, y = lenet
    with pytest.raises(ValueError, match=message):
        attacks.run(model, "pgd-linf", x[:4], y[:4], threat, epsilons=(0.01, 0.02), crafted_before=[x[:4]] * given)


def test_foolbox_model_is_in_eval_mode(lenet: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, _, _ = lenet
    defended = Defended(model).train()
    defended.foolbox()
    assert not defended.training and not model.training


def test_boundary_under_an_adaptive_threat_with_examples_the_vote_gets_wrong(
    lenet: tuple[nn.Module, Tensor, Tensor],
) -> None:
    """Foolbox's boundary attack divides by the distance to its starting point, zero for an example
    already misclassified: such examples are left alone (and never counted as fooled)."""
    model, x, y = lenet
    wrong = (y[:8] + 1) % 10  # labels the vote gets wrong on every example
    labels = torch.cat([wrong[:3], y[3:8]])
    out = attacks.run(
        Defended(model, GaussianNoise(0.02), votes=3), "boundary", x[:8], labels, "eot", [0.5], options={"steps": 20}
    )
    assert not out.clean_correct[:3].any() and not out.fooled[0][:3].any()
    assert torch.isfinite(out.l2[0][out.fooled[0]]).all()


@pytest.mark.parametrize("name", ["cw-l2", "deepfool-linf", "pgd-linf", "pgd-linf-minimal", "apgd-ce-linf"])
def test_attacks_leave_the_weights_untouched_and_their_gradient_flags_as_they_were(
    lenet: tuple[nn.Module, Tensor, Tensor], name: str
) -> None:
    """An attack runs with the weights frozen (Foolbox's backward would compute and accumulate their
    gradients): afterwards no weight has a `.grad`, every flag is restored (a weight frozen before
    stays frozen), and the adversarials equal those crafted without freezing."""
    model, x, y = lenet
    model = copy.deepcopy(model)
    first = next(model.parameters())
    first.requires_grad_(False)
    attack = attacks.make(name, **FAST[name])
    torch.manual_seed(0)
    adversarial = attack(model, x[:8], y[:8], [8 / 255])[0]
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == [False] + [True] * (len(list(model.parameters())) - 1)
    torch.manual_seed(0)
    unfrozen = attack.craft(model, x[:8], y[:8], [8 / 255], 0)[0]
    torch.testing.assert_close(adversarial, unfrozen)
