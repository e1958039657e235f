"""Intervals and verdicts of the studies: paired bootstrap over test examples, exact binomial
intervals, bootstrap intervals of medians, per-example outcomes packed into result rows, and the
`Claim` every study finding is made of (HOLDS / DOES NOT HOLD / INCONCLUSIVE against a threshold).

Every measurement of a study uses the same test images, so resampling the images once and
recomputing every statistic on that resample keeps the pairing between models and conditions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def pack(correct: torch.Tensor | np.ndarray) -> str:
    """A boolean vector (one entry per test example) as 'x' + a hex string, for a tidy result row
    (the 'x' keeps an all-digit string from being read back as a number by pandas)."""
    bits = np.asarray(correct.cpu() if isinstance(correct, torch.Tensor) else correct, dtype=bool)
    return "x" + np.packbits(bits).tobytes().hex()


def unpack(hex_string: str, n: int) -> np.ndarray:
    """Inverse of `pack` for a vector of length n (also reads strings packed without the 'x')."""
    if not isinstance(hex_string, str):
        raise TypeError(
            f"hex_string must be a packed string from stats.pack, got {type(hex_string).__name__} "
            "(read the CSV with dtype={'correct': str} if it was written without the 'x' prefix)"
        )
    data = bytes.fromhex(hex_string.removeprefix("x"))
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:n].astype(bool)


def paired_bootstrap(
    outcomes: Mapping[Any, np.ndarray],
    statistic: Callable[[Mapping[Any, np.ndarray]], np.ndarray],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(estimate, low, high): `statistic` of the mean outcomes, with a percentile interval.

    `outcomes` maps each condition to its per-example 0/1 outcomes on the same n examples;
    `statistic` takes a mapping condition -> mean outcome (arrays over resamples) and returns an
    array. Each resample reweights the examples with multinomial counts, shared by all conditions.
    """
    if not outcomes:
        raise ValueError("outcomes must hold at least one condition")
    keys = list(outcomes)
    matrix = np.stack([np.asarray(outcomes[k], dtype=np.float64) for k in keys])
    n = matrix.shape[1]
    if n == 0:
        raise ValueError("outcomes must hold at least one example per condition")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).T / n  # n x resamples
    means = matrix @ weights
    estimate = float(statistic({k: matrix[i].mean(keepdims=True) for i, k in enumerate(keys)})[0])
    values = np.asarray(statistic({k: means[i] for i, k in enumerate(keys)}))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return estimate, float(low), float(high)


def stratified_bootstrap(
    strata: Sequence[Mapping[Any, np.ndarray]],
    statistic: Callable[[Sequence[Mapping[Any, np.ndarray]]], np.ndarray],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """`paired_bootstrap` over several independent sets of examples (data sets of different sizes):
    each stratum is resampled on its own, paired across its conditions; `statistic` takes the list
    of per-stratum mappings condition -> mean outcome (arrays over resamples)."""
    if not strata:
        raise ValueError("strata must hold at least one set of outcomes")
    rng = np.random.default_rng(seed)
    resampled, observed = [], []
    for outcomes in strata:
        keys = list(outcomes)
        matrix = np.stack([np.asarray(outcomes[k], dtype=np.float64) for k in keys])
        n = matrix.shape[1]
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).T / n
        means = matrix @ weights
        resampled.append({k: means[i] for i, k in enumerate(keys)})
        observed.append({k: matrix[i].mean(keepdims=True) for i, k in enumerate(keys)})
    values = np.asarray(statistic(resampled))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(np.asarray(statistic(observed))[0]), float(low), float(high)


def bootstrap(
    values: np.ndarray,
    statistic: Callable[..., Any] = np.median,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(estimate, low, high): `statistic` (along axis 1 of a resamples x n array; default the median)
    of per-example values, with a percentile bootstrap interval. For statistics that are not means
    (medians of perturbation sizes, of probe values); `paired_bootstrap` is the one for means."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("values must hold at least one example")
    rng = np.random.default_rng(seed)
    draws = values[rng.integers(0, values.size, size=(resamples, values.size))]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(statistic(draws, axis=1), [tail, 100 - tail])
    return float(statistic(values)), float(low), float(high)


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean of a few independent runs (training seeds)."""
    from scipy.stats import t

    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size < 2:
        raise ValueError(f"values must hold at least 2 runs for an interval, got {values.size}")
    mean, sem = float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))
    half = float(t.ppf((1 + level) / 2, values.size - 1)) * sem
    return mean, mean - half, mean + half


def binomial_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """(share, low, high): the exact (Clopper-Pearson) interval of a binomial proportion."""
    from scipy.stats import binomtest

    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"successes and n must satisfy 0 <= successes <= n and n > 0, got {successes} of {n}")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="exact")
    return successes / n, float(ci.low), float(ci.high)


def verdict(low: float, high: float, threshold: float = 0.0) -> str:
    """HOLDS when the whole interval of an effect predicted to exceed `threshold` lies above it,
    DOES NOT HOLD when it lies wholly below, else (it straddles the threshold) INCONCLUSIVE."""
    if low > threshold:
        return "HOLDS"
    if high < threshold:
        return "DOES NOT HOLD"
    return "INCONCLUSIVE"


@dataclass(frozen=True)
class Claim:
    """One judged comparison of a study: an effect that the seed predicts to exceed `threshold`,
    its estimate with a 95% interval, and the seed's reference beside it."""

    label: str
    estimate: float
    low: float
    high: float
    threshold: float = 0.0
    paper: str = ""

    @property
    def verdict(self) -> str:
        return verdict(self.low, self.high, self.threshold)

    def __str__(self) -> str:
        paper = f" (paper: {self.paper})" if self.paper else ""
        return (
            f"{self.label}: {self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}], needs > {self.threshold:+.3f}: "
            f"{self.verdict}{paper}"
        )


def overall(claims: Iterable[Claim]) -> str:
    """DOES NOT HOLD if any claim does not hold, HOLDS if all hold, else INCONCLUSIVE."""
    words = {c.verdict for c in claims}
    if not words:
        raise ValueError("claims must hold at least one Claim")
    return "DOES NOT HOLD" if "DOES NOT HOLD" in words else "HOLDS" if words == {"HOLDS"} else "INCONCLUSIVE"


def finding(claim: str, claims: Iterable[Claim], context: str, notes: Iterable[str] = ()) -> str:
    """A study's finding: 'Finding ('claim') VERDICT context:' then one line per claim and note."""
    claims = list(claims)
    lines = [str(c) for c in claims] + list(notes)
    return f"Finding ({claim!r}) {overall(claims)} {context}:\n  " + "\n  ".join(lines)
