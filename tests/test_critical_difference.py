"""Friedman / Nemenyi against hand-computed values and Demšar's (2006) table of q_0.05."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from robustbench_bl.evaluation.critical_difference import average_ranks, cliques, friedman, nemenyi_cd

# 4 data sets (rows) x 3 treatments; per-row ranks (1 = best): A 1,1,1,2  B 2,2,3,1  C 3,3,2,3
SCORES = pd.DataFrame(
    {"A": [0.9, 0.8, 0.7, 0.6], "B": [0.8, 0.7, 0.5, 0.65], "C": [0.7, 0.6, 0.6, 0.5]}, index=list("wxyz")
)


def test_average_ranks_by_hand() -> None:
    ranks = average_ranks(SCORES)
    assert list(ranks.index) == ["A", "B", "C"]
    assert ranks.tolist() == pytest.approx([1.25, 2.0, 2.75])
    # lower is better flips the order; ties share the mean rank
    assert average_ranks(SCORES, higher_is_better=False)["A"] == pytest.approx(2.75)
    assert average_ranks(pd.DataFrame({"a": [1.0], "b": [1.0], "c": [0.0]}))["a"] == pytest.approx(1.5)


def test_friedman_by_hand() -> None:
    # chi2 = 12 N / (k (k + 1)) * (sum R_j^2 - k (k + 1)^2 / 4) = 4 * (13.125 - 12) = 4.5; df = 2
    stat, p = friedman(SCORES)
    assert stat == pytest.approx(4.5)
    assert p == pytest.approx(math.exp(-4.5 / 2))
    assert friedman(pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0], "c": [1.0, 2.0]})) == (0.0, 1.0)
    with pytest.raises(ValueError, match="treatments"):
        friedman(SCORES[["A", "B"]])


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (10, 3.164)])
def test_nemenyi_cd_matches_demsar_table(k: int, q: float) -> None:
    n = 14
    assert nemenyi_cd(k, n) == pytest.approx(q * math.sqrt(k * (k + 1) / (6 * n)), abs=1e-3)


def test_nemenyi_cd_demsar_example_and_bad_input() -> None:
    assert nemenyi_cd(4, 14) == pytest.approx(1.25, abs=0.005)  # Demšar 2006, section 3.2.2
    with pytest.raises(ValueError, match="alpha"):
        nemenyi_cd(3, 4, alpha=1.5)


def test_cliques() -> None:
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.2, "d": 4.0})
    assert cliques(ranks, 1.25) == [["a", "b", "c"]]
    assert cliques(ranks, 0.75) == [["a", "b"], ["b", "c"]]
    assert cliques(ranks, 0.1) == []
