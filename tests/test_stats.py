"""Paired bootstrap against the normal approximation of a binomial mean, and the pairing itself."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

from robustbench_bl.evaluation import stats


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000])
def test_pack_round_trips(n: int) -> None:
    bits = np.random.default_rng(n).random(n) < 0.3
    assert np.array_equal(stats.unpack(stats.pack(bits), n), bits)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_interval_of_a_mean_matches_the_binomial_normal_approximation(p: float) -> None:
    n = 4000
    outcomes = np.random.default_rng(1).random(n) < p
    mean = outcomes.mean()
    est, lo, hi = stats.paired_bootstrap({"a": outcomes}, lambda a: a["a"], resamples=4000)
    half = 1.96 * np.sqrt(mean * (1 - mean) / n)
    assert est == pytest.approx(mean)
    assert lo == pytest.approx(mean - half, abs=0.15 * half) and hi == pytest.approx(mean + half, abs=0.15 * half)


def test_resamples_are_shared_by_the_conditions() -> None:
    """Identical conditions differ by exactly 0 on every resample; independent resampling would not."""
    x = np.random.default_rng(2).random(500) < 0.6
    assert stats.paired_bootstrap({"a": x, "b": x.copy()}, lambda a: a["a"] - a["b"]) == (0.0, 0.0, 0.0)
    # one flipped example: the difference is (its resample count) / n, a few / n wide; unpaired it would be ~0.12
    y = x.copy()
    y[0] = not y[0]
    _, lo, hi = stats.paired_bootstrap({"a": x, "b": y}, lambda a: a["a"] - a["b"])
    assert hi - lo <= 4 / 500 + 1e-12


def test_verdicts_and_bad_input() -> None:
    assert stats.verdict(0.01, 0.2) == "HOLDS"
    assert stats.verdict(-0.2, -0.01) == "DOES NOT HOLD"
    assert stats.verdict(-0.1, 0.1) == "INCONCLUSIVE"
    with pytest.raises(ValueError, match="outcomes"):
        stats.paired_bootstrap({}, lambda a: np.zeros(1))


def test_exact_binomial_interval_matches_clopper_pearson_closed_form() -> None:
    """Clopper-Pearson bounds are beta quantiles; 0 of n has the closed form 1 - (alpha/2)^(1/n)."""
    from scipy.stats import beta

    k, n = 37, 120
    share, lo, hi = stats.binomial_interval(k, n)
    assert share == pytest.approx(k / n)
    assert lo == pytest.approx(beta.ppf(0.025, k, n - k + 1), rel=1e-6)
    assert hi == pytest.approx(beta.ppf(0.975, k + 1, n - k), rel=1e-6)
    assert stats.binomial_interval(0, 50)[1:] == pytest.approx((0.0, 1 - 0.025 ** (1 / 50)), rel=1e-6)
    with pytest.raises(ValueError, match="successes"):
        stats.binomial_interval(5, 3)


def test_median_bootstrap_covers_the_order_statistic_interval() -> None:
    """The bootstrap interval of a median of n uniform draws is close to the distribution-free one
    from order statistics (ranks n/2 -+ 1.96 sqrt(n)/2)."""
    n = 2001
    values = np.sort(np.random.default_rng(3).random(n))
    est, lo, hi = stats.bootstrap(values, resamples=4000)
    assert est == pytest.approx(np.median(values))
    half = 1.96 * np.sqrt(n) / 2
    assert lo == pytest.approx(values[int(n / 2 - half)], abs=0.01)
    assert hi == pytest.approx(values[int(n / 2 + half)], abs=0.01)
    with pytest.raises(ValueError, match="values"):
        stats.bootstrap(np.array([]))


@pytest.mark.parametrize(
    ("low", "high", "threshold", "word"),
    [
        (0.01, 0.2, 0.0, "HOLDS"),
        (0.01, 0.2, 0.05, "INCONCLUSIVE"),
        (-0.03, -0.01, -0.02, "INCONCLUSIVE"),
        (-0.019, -0.001, -0.02, "HOLDS"),
        (-0.05, -0.03, -0.02, "DOES NOT HOLD"),
    ],
)
def test_claims_are_judged_against_their_threshold(low: float, high: float, threshold: float, word: str) -> None:
    claim = stats.Claim("effect", (low + high) / 2, low, high, threshold=threshold, paper="ref")
    assert claim.verdict == word
    assert str(claim).endswith(f"{word} (paper: ref)")
    assert stats.overall([claim]) == word


def fixed(estimate: float, low: float, high: float) -> stats.Interval:
    """An interval function that gives the same interval at every level (for verdict tests)."""
    return lambda level: (estimate, low, high)


def test_overall_verdict_and_finding_text() -> None:
    good = stats.Claim("a", 0.1, 0.05, 0.15)
    open_ = stats.Claim("b", 0.0, -0.1, 0.1)
    bad = stats.Claim("c", -0.1, -0.15, -0.05)
    assert stats.overall([good, good]) == "HOLDS"
    assert stats.overall([good, open_]) == "INCONCLUSIVE"
    assert stats.overall([good, open_, bad]) == "DOES NOT HOLD"
    finding = stats.finding(
        "claim",
        [stats.Claim.measured("a", fixed(0.1, 0.05, 0.15)), stats.Claim.measured("b", fixed(0, -0.1, 0.1))],
        "on 10 images",
        ["note"],
    )
    text = str(finding)
    assert text.splitlines()[0] == "Finding ('claim') INCONCLUSIVE on 10 images:"
    assert text.splitlines()[1:] == [
        f"  {finding.claims[0]}",
        f"  {finding.claims[1]}",
        "  overall: 2 claims: DOES NOT HOLD needs one contradicted at the family-wise level 97.50% (Bonferroni-Holm), "
        "HOLDS needs all at 95% (intersection-union)",
        "  note",
    ]
    assert stats.Finding.from_json(json.loads(json.dumps(finding.to_json()))) == finding
    assert finding.to_json()["claims"][1]["verdict"] == "INCONCLUSIVE"
    with pytest.raises(ValueError, match="claims"):
        stats.overall([])
    with pytest.raises(ValueError, match="claims"):
        stats.finding("claim", [], "on 0 images")


@pytest.mark.parametrize(
    ("low", "high", "word"), [(-0.3, -0.2, "HOLDS"), (-0.2, 0.1, "INCONCLUSIVE"), (0.05, 0.2, "DOES NOT HOLD")]
)
def test_a_claim_predicted_below_its_threshold(low: float, high: float, word: str) -> None:
    """The paper's direction: 'energy loses to static' is an effect predicted below zero."""
    claim = stats.Claim("energy - static", (low + high) / 2, low, high, direction="below")
    assert claim.verdict == word and "needs < +0.000" in str(claim)
    with pytest.raises(ValueError, match="direction"):
        stats.Claim("x", 0, 0, 0, direction="sideways")


def test_mean_interval_is_students_t_by_hand() -> None:
    """Three runs 1, 2, 3: mean 2, sd 1, half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051."""
    mean, lo, hi = stats.mean_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0
    assert hi - mean == pytest.approx(4.302653 / np.sqrt(3), rel=1e-6) and mean - lo == pytest.approx(hi - mean)
    with pytest.raises(ValueError, match="at least 2"):
        stats.mean_interval(np.array([1.0]))


def test_stratified_bootstrap_of_one_stratum_is_the_paired_bootstrap() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random(300) < 0.7, rng.random(300) < 0.5
    one = stats.stratified_bootstrap([{"a": a, "b": b}], lambda s: s[0]["a"] - s[0]["b"])
    assert one == stats.paired_bootstrap({"a": a, "b": b}, lambda m: m["a"] - m["b"])


def test_stratified_bootstrap_averages_strata_of_different_sizes() -> None:
    """Two data sets of 100 and 1000 examples weigh equally in a mean of per-set differences; an
    identical pair in each set gives exactly 0 on every resample."""
    small = {"a": np.r_[np.ones(80), np.zeros(20)], "b": np.r_[np.ones(60), np.zeros(40)]}
    large = {"a": np.r_[np.ones(500), np.zeros(500)], "b": np.r_[np.ones(500), np.zeros(500)]}
    est, lo, hi = stats.stratified_bootstrap([small, large], lambda s: np.mean([m["a"] - m["b"] for m in s], axis=0))
    assert est == pytest.approx((0.2 + 0.0) / 2)
    assert lo < est < hi and hi - lo < 0.2
    assert stats.stratified_bootstrap([large], lambda s: s[0]["a"] - s[0]["b"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="strata"):
        stats.stratified_bootstrap([], lambda s: np.zeros(1))


def test_packed_outcomes_survive_a_csv_round_trip(tmp_path) -> None:
    """All-wrong outcomes pack to zeros only; without a non-digit prefix pandas would read a number."""
    import pandas as pd

    bits = np.zeros(20, dtype=bool)
    pd.DataFrame({"correct": [stats.pack(bits), stats.pack(~bits)]}).to_csv(tmp_path / "t.csv", index=False)
    back = pd.read_csv(tmp_path / "t.csv").correct
    assert np.array_equal(stats.unpack(back[0], 20), bits) and np.array_equal(stats.unpack(back[1], 20), ~bits)
    assert np.array_equal(stats.unpack("0f", 8), np.r_[np.zeros(4), np.ones(4)].astype(bool))  # unprefixed
    with pytest.raises(TypeError, match="hex_string"):
        stats.unpack(0.0, 8)  # type: ignore[arg-type]  # the wrong type is the point


def test_family_wise_intervals_come_from_each_claims_interval_function_at_the_bonferroni_level() -> None:
    """Three binomial claims: each family interval is the exact interval at 1 - 0.05/3, wider than the
    95% one, and survives the JSON round trip."""
    counts = [(60, 100), (45, 100), (70, 120)]
    finding = stats.finding(
        "c",
        [stats.Claim.measured(f"{k}/{n}", partial(stats.binomial_interval, k, n), threshold=0.5) for k, n in counts],
        "",
    )
    assert stats.family_level(3) == pytest.approx(1 - 0.05 / 3)
    for claim, (k, n) in zip(finding.claims, counts):
        assert (claim.low, claim.high) == stats.binomial_interval(k, n)[1:]
        assert (claim.family_low, claim.family_high) == stats.binomial_interval(k, n, 1 - 0.05 / 3)[1:]
        assert claim.family_low is not None and claim.family_high is not None
        assert claim.family_low < claim.low and claim.family_high > claim.high
    assert stats.Finding.from_json(json.loads(json.dumps(finding.to_json()))) == finding


@pytest.mark.parametrize(
    ("m", "word"),
    [(1, "DOES NOT HOLD"), (2, "DOES NOT HOLD"), (12, "INCONCLUSIVE")],
)
def test_one_claim_contradicted_at_95_percent_fails_the_family_only_when_it_survives_bonferroni(
    m: int, word: str
) -> None:
    """A mean-difference claim with z = -2.5 (two-sided p 0.012): contradicted at 95%, at
    97.5% (m = 2: z 2.24), not at 1 - 0.05/12 (z 2.87); the other claims hold. Normal intervals."""
    from scipy.stats import norm

    def normal(estimate: float, se: float) -> stats.Interval:
        return lambda level: (
            estimate,
            estimate - norm.ppf((1 + level) / 2) * se,
            estimate + norm.ppf((1 + level) / 2) * se,
        )

    bad = stats.Claim.measured("bad", normal(-0.025, 0.01))
    good = [stats.Claim.measured(f"good {i}", normal(0.1, 0.01)) for i in range(m - 1)]
    finding = stats.finding("c", [bad, *good], "")
    assert finding.claims[0].verdict == "DOES NOT HOLD"
    assert finding.verdict == word
    assert ("family-wise" in str(finding.claims[0])) == (word == "INCONCLUSIVE")


def test_a_finding_of_several_claims_needs_each_claims_interval_function() -> None:
    with pytest.raises(ValueError, match=r"Claim\.measured"):
        stats.finding("c", [stats.Claim("a", 0.1, 0.0, 0.2), stats.Claim("b", 0.1, 0.0, 0.2)], "")
    exact = stats.Claim("memory", 0.3, 0.3, 0.3)  # an exact value is its own family-wise interval
    assert stats.finding("c", [exact, exact], "").verdict == "HOLDS"
