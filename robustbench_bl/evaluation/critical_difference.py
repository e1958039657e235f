"""Comparing treatments (e.g. compression rates) over blocks (data sets), after Demšar (JMLR 2006):
average ranks, the Friedman test, and the Nemenyi critical difference of average ranks."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from robustbench_bl.validation import check_positive_int, check_range


def average_ranks(scores: pd.DataFrame, higher_is_better: bool = True) -> pd.Series:
    """Mean rank of each treatment (column) over the blocks (rows); rank 1 is the best, ties share ranks."""
    return scores.rank(axis=1, ascending=not higher_is_better, method="average").mean().sort_values()


def friedman(scores: pd.DataFrame) -> tuple[float, float]:
    """Friedman chi-square statistic and p-value (tie-corrected, scipy) for blocks x treatments `scores`.

    When every block ties all treatments the statistic is 0/0; that is no evidence of a difference: (0, 1).
    """
    if scores.shape[1] < 3 or scores.shape[0] < 2:
        raise ValueError(f"scores must have >= 2 blocks (rows) and >= 3 treatments (columns), got shape {scores.shape}")
    if (scores.nunique(axis=1) == 1).all():
        return 0.0, 1.0
    result = stats.friedmanchisquare(*scores.to_numpy().T)
    return float(result.statistic), float(result.pvalue)


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Critical difference of average ranks for k treatments over n blocks (two-sided Nemenyi test).

    CD = q_alpha sqrt(k (k + 1) / (6 n)), with q_alpha the studentized range quantile for k
    groups and infinite degrees of freedom, divided by sqrt(2).
    """
    check_positive_int(k, "k", minimum=2)
    check_positive_int(n, "n")
    check_range(alpha, "alpha", 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(k * (k + 1) / (6 * n)))


def cliques(ranks: pd.Series, cd: float) -> list[list[object]]:
    """Maximal groups (of two or more) of treatments whose average ranks lie within `cd` of each other."""
    ordered = ranks.sort_values()
    groups: list[list[object]] = []
    for i in range(len(ordered)):
        group = [t for t, r in ordered.iloc[i:].items() if r - ordered.iloc[i] <= cd]
        if len(group) > 1 and not (groups and set(group) <= set(groups[-1])):
            groups.append(group)
    return groups
