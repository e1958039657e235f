"""Paired bootstrap over test examples, and per-example outcomes packed into result rows.

Every measurement of a study uses the same test images, so resampling the images once and
recomputing every statistic on that resample keeps the pairing between models and conditions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch


def pack(correct: torch.Tensor | np.ndarray) -> str:
    """A boolean vector (one entry per test example) as a hex string, for a tidy result row."""
    bits = np.asarray(correct.cpu() if isinstance(correct, torch.Tensor) else correct, dtype=bool)
    return np.packbits(bits).tobytes().hex()


def unpack(hex_string: str, n: int) -> np.ndarray:
    """Inverse of `pack` for a vector of length n."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_string), dtype=np.uint8))[:n].astype(bool)


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


def verdict(low: float, high: float) -> str:
    """HOLDS when a difference predicted positive has its whole interval above 0, DOES NOT HOLD
    when the whole interval is below 0, else INCONCLUSIVE."""
    if low > 0:
        return "HOLDS"
    if high < 0:
        return "DOES NOT HOLD"
    return "INCONCLUSIVE"
