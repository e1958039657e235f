"""The benchmark protocol: the threat model it picks, worst case over the suite, intervals, flags."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from scipy.stats import binomtest
from test_attacks import FAST, trained_lenet
from torch import nn

import robustbench_bl
from robustbench_bl import Defended, attacks
from robustbench_bl.channels import ColorDepth, Compose, GaussianNoise, Identity
from robustbench_bl.evaluation.benchmark import SUITES, threat_for
from robustbench_bl.evaluation.stats import binomial_interval
from robustbench_bl.versions import versions

OPTIONS = {name: FAST[name] for suite in SUITES.values() for name, _ in suite}


@pytest.mark.parametrize(
    ("channel", "threat"),
    [
        (Identity(), "whitebox"),
        (ColorDepth(3), "bpda"),
        (GaussianNoise(0.03), "eot"),
        (Compose(GaussianNoise(0.03), ColorDepth(3)), "bpda+eot"),
    ],
)
def test_threat_follows_the_channel(channel: object, threat: str) -> None:
    model, x, y = trained_lenet()
    assert threat_for(Defended(model, channel), x[:8], y[:8]).name == threat  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [0, 3, 17, 20])
def test_clopper_pearson_matches_scipy(k: int) -> None:
    expected = binomtest(k, 20).proportion_ci(0.95, method="exact")
    assert binomial_interval(k, 20)[1:] == pytest.approx((expected.low, expected.high), abs=1e-9)
    assert binomial_interval(k + 0.5, 21)[1] < binomial_interval(k + 1, 21)[1]  # fractional successes (repeats)


def test_stochastic_benchmark_takes_the_worst_case_over_the_suite() -> None:
    model, _, _ = trained_lenet()
    result = robustbench_bl.benchmark(model, "gauss:0.03", votes=3, n=20, repeats=2, eot_samples=2, options=OPTIONS)
    row = result.row
    assert row["threat"] == "eot" and row["repeats"] == 2 and row["flag_stochastic"]
    assert "pgd-linf[eot, eot_samples=2]" in row["suite"] and "hopskipjump[vote]" in row["suite"]
    assert row["robust_ci_low"] <= row["robust_accuracy"] <= row["robust_ci_high"]
    assert row["clean_ci_low"] <= row["clean_accuracy"] <= row["clean_ci_high"]
    assert row["robust_accuracy_every_repeat"] <= row["robust_accuracy"] <= row["clean_accuracy"]
    robust = result.attacks[result.attacks.metric == "robust_accuracy"].groupby("attack").value.mean()
    assert row["robust_accuracy"] <= robust.min() + 1e-9
    assert set(result.attacks.repeat) == {0, 1} and set(result.attacks.attack) == {name for name, _ in SUITES["Linf"]}
    assert row["version_torch"] == versions()["torch"] and row["version_foolbox"] != "absent"


def test_deterministic_l2_benchmark_runs_once_with_bpda() -> None:
    model, _, _ = trained_lenet()
    result = robustbench_bl.benchmark(model, ColorDepth(3), norm="L2", eps=0.5, n=10, repeats=3, options=OPTIONS)
    assert result.row["repeats"] == 1 and result.row["threat"] == "bpda" and result.row["flag_gradient_masking"]
    assert set(result.attacks.attack) == {name for name, _ in SUITES["L2"]}


def test_the_suite_breaks_a_deterministic_channel_under_bpda() -> None:
    """Color depth (64 levels, finer than 2 eps) masks gradients; through BPDA the suite must take a LeNet right on most of
    its training images to (almost) nothing at 16/255 (a no-op suite would leave clean accuracy)."""
    model, x, y = trained_lenet()
    outcome = attacks.run(Defended(model, ColorDepth(6)), "apgd-ce-linf", x[:40], y[:40], "bpda", 16 / 255)
    assert outcome.clean_correct.float().mean() >= 0.8
    assert outcome.robust.float().mean() <= 0.05  # the bare model keeps 0% at 16/255 (10% at 8/255)
    result = robustbench_bl.benchmark(model, ColorDepth(6), eps=16 / 255, n=20, options=OPTIONS)
    assert result.row["threat"] == "bpda" and result.robust_accuracy <= 0.5 * result.clean_accuracy


def test_bad_input() -> None:
    model, _, _ = trained_lenet()
    with pytest.raises(ValueError, match="norm must be one of"):
        robustbench_bl.benchmark(model, norm="L1")
    with pytest.raises(ValueError, match="eps must be in"):
        robustbench_bl.benchmark(model, eps=-0.1)
    with pytest.raises(ValueError, match="channel must be one of"):
        robustbench_bl.benchmark(model, "blur:3")


def test_a_no_op_suite_fails_the_break_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: with every attack returning the clean input, the test above must fail."""
    monkeypatch.setattr(
        attacks.Attack, "__call__", lambda self, module, x, y, epsilons, seed=0: [x.clone() for _ in epsilons]
    )
    with pytest.raises(AssertionError):
        test_the_suite_breaks_a_deterministic_channel_under_bpda()


def test_the_rand_protocol_is_autoattacks_rand_version_and_keeps_each_repeat() -> None:
    model, _, _ = trained_lenet()
    result = robustbench_bl.benchmark(
        model, "gauss:0.03", votes=3, n=12, repeats=3, options=OPTIONS, protocol="rand", checks=("iterative",)
    )
    row = result.row
    assert set(result.attacks.attack) == {"apgd-ce-linf", "apgd-dlr-linf"} and row["eot_samples"] == 20
    assert row["protocol"] == "robustbench_bl.benchmark/rand" and row["threat"] == "eot"
    per_repeat = json.loads(row["robust_accuracy_per_repeat"])
    # the per-repeat record keeps 6 decimals, so its mean agrees to 1e-6 (1/12 is 0.083333 there)
    assert len(per_repeat) == 3 and sum(per_repeat) / 3 == pytest.approx(row["robust_accuracy"], abs=1e-6)
    assert len(json.loads(row["clean_accuracy_per_repeat"])) == 3
    assert [c["name"] for c in json.loads(row["checks"])] == ["iterative"]  # the rand suite has no PGD: FGSM vs APGD
    with pytest.raises(ValueError, match="protocol must be one of"):
        robustbench_bl.benchmark(model, protocol="autoattack")
    with pytest.raises(ValueError, match="eot_samples must be >= 1"):
        robustbench_bl.benchmark(model, "gauss:0.03", eot_samples=0)


def own_robust(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One attack's own per-example robustness at 8/255 on every example (the cascade's reference)."""
    return attacks.run(model, name, x, y, "whitebox", 8 / 255, options=FAST[name]).robust[0]


def record_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, object]]:
    """Every `attacks.run` from here on, as (attack, images attacked, the steps option)."""
    seen: list[tuple[str, int, object]] = []
    run = attacks.run

    def recorded(model: nn.Module, name: str, x: torch.Tensor, *args: Any, **kwargs: Any) -> attacks.Outcome:
        seen.append((name, len(x), (kwargs.get("options") or {}).get("steps")))
        return run(model, name, x, *args, **kwargs)

    monkeypatch.setattr(attacks, "run", recorded)
    return seen


@pytest.mark.parametrize("cascade", [True, False])
def test_the_cascade_attacks_what_is_left_and_keeps_the_worst_case(
    monkeypatch: pytest.MonkeyPatch, cascade: bool
) -> None:
    """With two attacks that treat each example alone (FGSM, DeepFool), the cascade's worst case is
    exactly that of running both on every example; the second attacks only what the first left
    robust; its row is the accuracy after both (cumulative) where the plain suite keeps its own."""
    model, x, y = trained_lenet()
    x, y = x[:24], y[:24]
    suite: tuple[tuple[str, dict[str, Any]], ...] = (("fgsm", {}), ("deepfool-linf", {}))
    monkeypatch.setitem(SUITES, "Linf", suite)
    seen = record_runs(monkeypatch)
    result = robustbench_bl.benchmark(model, data=(x, y), n=24, options=FAST, checks=(), cascade=cascade)
    last = seen[-1][:2]  # the suite's second attack
    first, second = own_robust(model, "fgsm", x, y), own_robust(model, "deepfool-linf", x, y)
    assert 0 < first.sum() < 24 and (first & ~second).any()  # FGSM leaves some that DeepFool fools
    assert result.robust_accuracy == pytest.approx((first & second).float().mean().item())
    rows = result.attacks[result.attacks.metric == "robust_accuracy"].set_index("attack").value
    attacked = result.attacks.groupby("attack").examples_attacked.first()
    assert rows["fgsm"] == pytest.approx(first.float().mean().item()) and attacked["fgsm"] == 24
    if cascade:
        assert last == ("deepfool-linf", int(first.sum())) and attacked["deepfool-linf"] == first.sum()
        assert rows["deepfool-linf"] == pytest.approx(result.robust_accuracy)
    else:
        assert last == ("deepfool-linf", 24) and rows["deepfool-linf"] == pytest.approx(second.float().mean().item())
    assert result.row["cascade"] is cascade


def test_an_attack_with_nothing_left_to_fool_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, y = trained_lenet()
    monkeypatch.setitem(SUITES, "Linf", (("fgsm", {}), ("deepfool-linf", {})))
    result = robustbench_bl.benchmark(model, data=(x[:8], y[:8]), n=8, eps=1.0, options=FAST, checks=())
    left = result.attacks[result.attacks.attack == "deepfool-linf"]
    assert result.robust_accuracy == 0 and (left.examples_attacked == 0).all()
    assert left.gradient_path.str.startswith("not run").all()


def test_the_checks_run_on_the_first_check_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """`check_images` bounds what every check attacks; convergence attacks only what the suite left robust."""
    model, x, y = trained_lenet()
    seen = record_runs(monkeypatch)
    result = robustbench_bl.benchmark(model, "cd:6", data=(x[:20], y[:20]), n=20, eps=5 / 255, options=OPTIONS,
                                      checks=("monotone", "convergence"), check_images=8)  # fmt: skip
    assert result.row["check_images"] == 8
    checks = {c["name"]: c for c in json.loads(result.row["checks"])}
    assert all(c["detail"].endswith("of 8 images (allowed 1)") for c in checks.values())
    after_suite = seen[len(SUITES["Linf"]) :]
    assert [n for _, n, _ in after_suite[:3]] == [8, 8, 8]  # monotone: eps/2, eps, 2 eps on the checked images
    _, attacked, steps = after_suite[3]
    assert steps == 2 * 8 and FAST["pgd-linf"] == {"steps": 8} and 0 < attacked < 8  # convergence: the robust ones
