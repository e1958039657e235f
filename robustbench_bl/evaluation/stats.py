"""Intervals and verdicts of the studies: paired bootstrap over test examples, exact binomial
intervals, bootstrap intervals of medians, per-example outcomes packed into result rows, and the
`Claim` every study `Finding` is made of (a `Verdict`: HOLDS / DOES NOT HOLD / INCONCLUSIVE against a
threshold, in the direction the paper predicts).

A study's overall verdict controls the family-wise error over its claims (`overall`): it is DOES NOT
HOLD only when some claim is contradicted at the Bonferroni level 1 - 0.05/m (Holm's first step, which
alone decides "at least one claim fails"), and HOLDS when every claim holds at 95% (an
intersection-union test needs no correction); a claim therefore carries the function that computes its
interval at any level.

Every measurement of a study uses the same test images, so resampling the images once and
recomputing every statistic on that resample keeps the pairing between models and conditions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from functools import partial
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


def paired_difference(
    outcomes: Mapping[Any, np.ndarray], a: Any, b: Any, seed: int = 0
) -> Callable[..., tuple[float, float, float]]:
    """The `paired_bootstrap` interval of condition `a`'s mean outcome minus `b`'s, as a function of
    `level` (a claim's `Interval`)."""
    return partial(paired_bootstrap, outcomes, lambda m: m[a] - m[b], seed=seed)


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


def binomial_interval(successes: float, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """(share, low, high): the exact two-sided (Clopper-Pearson) interval of a binomial proportion.

    `successes` may be fractional (a mean over repeats of per-example outcomes in [0, 1], whose
    variance is at most the binomial one, so the interval stays valid)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"successes and n must satisfy 0 <= successes <= n and n > 0, got {successes} of {n}")
    tail = (1 - level) / 2
    return successes / n, binomial_lower(successes, n, tail), _binomial_upper(successes, n, tail)


def binomial_lower(successes: float, n: int, alpha: float) -> float:
    """The one-sided (1 - alpha) Clopper-Pearson lower bound on p: the p with P[Bin(n, p) >= successes] = alpha."""
    from scipy.stats import beta

    return 0.0 if successes <= 0 else float(beta.ppf(alpha, successes, n - successes + 1))


def _binomial_upper(successes: float, n: int, alpha: float) -> float:
    from scipy.stats import beta

    return 1.0 if successes >= n else float(beta.ppf(1 - alpha, successes + 1, n - successes))


class Verdict(str, Enum):
    """A claim's (or a finding's) verdict against its threshold at 95%."""

    HOLDS = "HOLDS"
    DOES_NOT_HOLD = "DOES NOT HOLD"
    INCONCLUSIVE = "INCONCLUSIVE"

    def __str__(self) -> str:
        return self.value


#: The two directions a paper can predict an effect in, relative to the claim's threshold.
DIRECTIONS = ("above", "below")
#: The confidence level of every claim's own interval.
LEVEL = 0.95
#: A claim's interval at a confidence level, called as interval(level=...) -> (estimate, low, high) (every
#: interval function here takes `level`: bind the rest with functools.partial).
Interval = Callable[..., tuple[float, float, float]]


def verdict(low: float, high: float, threshold: float = 0.0, direction: str = "above") -> Verdict:
    """HOLDS when the whole interval of an effect predicted to lie `direction` ('above' or 'below')
    `threshold` lies there, DOES NOT HOLD when it lies wholly on the other side, else (it straddles
    the threshold) INCONCLUSIVE."""
    above, below = (low > threshold, high < threshold) if direction == "above" else (high < threshold, low > threshold)
    if above:
        return Verdict.HOLDS
    if below:
        return Verdict.DOES_NOT_HOLD
    return Verdict.INCONCLUSIVE


def family_level(m: int) -> float:
    """The Bonferroni confidence level for m claims judged together: 1 - (1 - LEVEL) / m."""
    if m < 1:
        raise ValueError(f"m must be a positive number of claims, got {m}")
    return 1 - (1 - LEVEL) / m


@dataclass(frozen=True)
class Claim:
    """One judged comparison of a study: an effect that the paper predicts to lie `direction` of
    `threshold`, its estimate with a 95% interval, and the paper's reference beside it. A `Finding`
    of m claims adds each claim's interval at the family-wise level (`family_low`, `family_high`),
    computed by `interval` (build claims with `Claim.measured`); exact values need no function."""

    label: str
    estimate: float
    low: float
    high: float
    threshold: float = 0.0
    paper: str = ""
    direction: str = "above"
    family_low: float | None = None
    family_high: float | None = None
    interval: Interval | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")

    @classmethod
    def measured(
        cls, label: str, interval: Interval, threshold: float = 0.0, paper: str = "", direction: str = "above"
    ) -> Claim:
        """A claim whose estimate and 95% interval come from `interval(level=LEVEL)`; a Finding calls it again
        at its family-wise level."""
        estimate, low, high = interval(level=LEVEL)
        return cls(label, estimate, low, high, threshold, paper, direction, interval=interval)

    def in_family(self, m: int) -> Claim:
        """This claim with its interval at the family-wise level of m claims (its own when m = 1 or the
        value is exact)."""
        if m == 1 or self.low == self.high:
            low, high = self.low, self.high
        elif self.interval is not None:
            _, low, high = self.interval(level=family_level(m))
        elif self.family_low is not None and self.family_high is not None:
            return self
        else:
            raise ValueError(
                f"claim {self.label!r} is one of {m} and has no interval function for the family-wise level: "
                "build it with Claim.measured"
            )
        return replace(self, family_low=low, family_high=high)

    @property
    def verdict(self) -> Verdict:
        return verdict(self.low, self.high, self.threshold, self.direction)

    @property
    def family_verdict(self) -> Verdict:
        """The verdict of the family-wise interval (the 95% one where none was computed)."""
        if self.family_low is None or self.family_high is None:
            return self.verdict
        return verdict(self.family_low, self.family_high, self.threshold, self.direction)

    def __str__(self) -> str:
        paper = f" (paper: {self.paper})" if self.paper else ""
        needs = ">" if self.direction == "above" else "<"
        family = ""  # the family-wise interval matters only for a contradiction (HOLDS needs no correction)
        if self.verdict == Verdict.DOES_NOT_HOLD and self.family_verdict != self.verdict:
            family = f" (family-wise [{self.family_low:+.3f}, {self.family_high:+.3f}]: {self.family_verdict})"
        return (
            f"{self.label}: {self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}], needs {needs} "
            f"{self.threshold:+.3f}: {self.verdict}{family}{paper}"
        )

    def to_json(self) -> dict[str, Any]:
        """The claim's fields (not its interval function) and its verdicts."""
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "interval"}
        return record | {"verdict": self.verdict.value, "family_verdict": self.family_verdict.value}


def overall(claims: Iterable[Claim]) -> Verdict:
    """DOES NOT HOLD if some claim is contradicted at the family-wise level, HOLDS if every claim holds
    at 95%, else INCONCLUSIVE (give claims in their family: `Claim.in_family`)."""
    claims = list(claims)
    if not claims:
        raise ValueError("claims must hold at least one Claim")
    if any(c.family_verdict == Verdict.DOES_NOT_HOLD for c in claims):
        return Verdict.DOES_NOT_HOLD
    return Verdict.HOLDS if all(c.verdict == Verdict.HOLDS for c in claims) else Verdict.INCONCLUSIVE


@dataclass(frozen=True)
class Finding:
    """A study's finding as data: the claim it tests (in the paper's words and direction), its judged
    `claims` (each with its family-wise interval), the context (images, intervals) and notes. `str` is
    the text a person reads, `to_json` / `from_json` the file `rbl report` and the tests read."""

    claim: str
    claims: tuple[Claim, ...]
    context: str
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.claims:
            raise ValueError("claims must hold at least one Claim")

    @property
    def verdict(self) -> Verdict:
        return overall(self.claims)

    @property
    def rule(self) -> str:
        """How the overall verdict was reached, in a line."""
        m = len(self.claims)
        if m == 1:
            return "one claim: its 95% interval decides"
        return (
            f"{m} claims: DOES NOT HOLD needs one contradicted at the family-wise level {family_level(m):.2%} "
            "(Bonferroni-Holm), HOLDS needs all at 95% (intersection-union)"
        )

    def __str__(self) -> str:
        lines = [str(c) for c in self.claims] + [f"overall: {self.rule}"] + list(self.notes)
        return f"Finding ({self.claim!r}) {self.verdict} {self.context}:\n  " + "\n  ".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The finding as JSON-ready fields, every claim with its verdicts."""
        return {
            "claim": self.claim,
            "verdict": self.verdict.value,
            "rule": self.rule,
            "context": self.context,
            "claims": [c.to_json() for c in self.claims],
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Finding:
        """The Finding of `to_json`'s fields (verdicts are recomputed, not trusted)."""
        names = {f.name for f in fields(Claim)} - {"interval"}
        claims = tuple(Claim(**{k: v for k, v in c.items() if k in names}) for c in record["claims"])
        return cls(record["claim"], claims, record["context"], tuple(record.get("notes", ())))


def finding(claim: str, claims: Iterable[Claim], context: str, notes: Iterable[str] = ()) -> Finding:
    """A study's Finding, each claim with its interval at the family-wise level of all of them; printed,
    it reads 'Finding ('claim') VERDICT context:' then a line per claim, the verdict rule and the notes."""
    claims = list(claims)
    return Finding(claim, tuple(c.in_family(len(claims)) for c in claims), context, tuple(notes))
