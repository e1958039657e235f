"""Paired bootstrap against the normal approximation of a binomial mean, and the pairing itself."""

from __future__ import annotations

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
        stats.paired_bootstrap({}, lambda a: a)
