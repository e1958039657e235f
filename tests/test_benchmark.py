"""The benchmark protocol: the threat model it picks, worst case over the suite, intervals, flags."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest
from test_attacks import FAST, trained_lenet

import robustbench_bl
from robustbench_bl import Defended
from robustbench_bl.benchmark import clopper_pearson, threat_for
from robustbench_bl.channels import ColorDepth, Compose, GaussianNoise, Identity
from robustbench_bl.versions import versions

OPTIONS = {name: FAST[name] for name in ("pgd-linf", "pgd-l2", "cw-l2", "hopskipjump")}


@pytest.mark.parametrize(
    ("channel", "threat"),
    [(Identity(), "whitebox"), (ColorDepth(3), "bpda"), (GaussianNoise(0.03), "eot"),
     (Compose(GaussianNoise(0.03), ColorDepth(3)), "bpda+eot")],
)  # fmt: skip
def test_threat_follows_the_channel(channel: object, threat: str) -> None:
    model, x, y = trained_lenet()
    assert threat_for(Defended(model, channel), x[:8], y[:8]) == threat  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [0, 3, 17, 20])
def test_clopper_pearson_matches_scipy(k: int) -> None:
    expected = binomtest(k, 20).proportion_ci(0.95, method="exact")
    assert clopper_pearson(k, 20) == pytest.approx((expected.low, expected.high), abs=1e-9)


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
    assert set(result.attacks.repeat) == {0, 1} and set(result.attacks.attack) == {"pgd-linf", "hopskipjump"}
    assert row["version_torch"] == versions()["torch"] and row["version_foolbox"] != "absent"


def test_deterministic_l2_benchmark_runs_once_with_bpda() -> None:
    model, _, _ = trained_lenet()
    result = robustbench_bl.benchmark(model, ColorDepth(3), norm="L2", eps=0.5, n=10, repeats=3, options=OPTIONS)
    assert result.row["repeats"] == 1 and result.row["threat"] == "bpda" and result.row["flag_gradient_masking"]
    assert set(result.attacks.attack) == {"pgd-l2", "cw-l2", "hopskipjump"}
    assert result.robust_accuracy <= result.clean_accuracy


def test_bad_input() -> None:
    model, _, _ = trained_lenet()
    with pytest.raises(ValueError, match="norm must be one of"):
        robustbench_bl.benchmark(model, norm="L1")
    with pytest.raises(ValueError, match="eps must be in"):
        robustbench_bl.benchmark(model, eps=-0.1)
    with pytest.raises(ValueError, match="channel must be one of"):
        robustbench_bl.benchmark(model, "blur:3")
