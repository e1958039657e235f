"""Instability of natural, adversarial and noisy examples (second seed, section 3.2.2).

Makes each kind of example from the same natural images, probes M1 and M2 (see `probes`) at every
one, and compares their distributions: the seed finds adversarial examples the less stable.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from scipy.stats import mannwhitneyu
from torch import Tensor, nn

from robustbench_bl.channel_tuning import craft_nonadaptive
from robustbench_bl.channels import make as make_channel
from robustbench_bl.probes import gradient_norm, hessian_top_eigenvalue, taylor_bound
from robustbench_bl.training import predict
from robustbench_bl.validation import check_choice, check_positive_int

#: Natural images, adversarials crafted on the model (PGD-Linf, C&W-L2), Gaussian-noisy images.
KINDS = ("natural", "pgd-linf", "cw-l2", "gauss")
ADVERSARIAL = ("pgd-linf", "cw-l2")
METRICS = ("m1", "m2", "taylor_bound")


def condition(kind: str, eps: float | None = None) -> str:
    """A readable name for a kind of example, with the Linf budget for PGD ('pgd-linf 8/255')."""
    check_choice(kind, "kind", KINDS)
    return f"{kind} {eps * 255:.3g}/255" if kind == "pgd-linf" and eps is not None else kind


def correctly_classified(model: nn.Module, x: Tensor, y: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The first `n` of (x, y) that `model` classifies right: natural examples with a clean start."""
    right = predict(model, x).to(y.device) == y
    return x[right][: check_positive_int(n, "n")], y[right][:n]


def examples(
    model: nn.Module, kind: str, x: Tensor, y: Tensor, *, eps: float | None, sigma: float, seed: int,
    options: Mapping[str, Any] | None = None,
) -> Tensor:  # fmt: skip
    """The examples of `kind` made from natural images x: x itself, PGD-Linf adversarials within
    `eps`, unbounded C&W-L2 adversarials (both crafted on the model, seeded), or x through the
    Gaussian channel with std `sigma` (seeded draws, clipped to [0, 1])."""
    check_choice(kind, "kind", KINDS)
    if kind == "pgd-linf" and eps is None:
        raise ValueError("eps must be a Linf budget (a float) for kind 'pgd-linf', got None")
    if kind == "natural":
        return x
    if kind == "gauss":
        with torch.no_grad():
            return make_channel("gauss", sigma, seed=seed).to(x.device)(x)
    return craft_nonadaptive(model, kind, x, y, eps if kind == "pgd-linf" else None, seed, options)


def probe_rows(
    model: nn.Module, x: Tensor, natural: Tensor, y: Tensor, *, delta: float, iters: int = 50, seed: int = 0
) -> list[dict[str, Any]]:
    """Tidy rows per example of x: M1, M2 (of the predicted class's confidence) and the Taylor bound
    on how far that confidence moves under an L2 perturbation of size `delta`, with whether x is
    misclassified and its L2 distance from its natural image.

    Probed in float64 on a copy of the model: around confident natural images the confidence is
    near 1 and float32 rounds its small derivatives away.
    """
    exact = copy.deepcopy(model).double()
    m1 = gradient_norm(exact, x)
    m2 = hessian_top_eigenvalue(exact, x, iters=iters, seed=seed)
    values = {"m1": m1, "m2": m2, "taylor_bound": taylor_bound(m1, m2, delta)}
    wrong = predict(model, x).to(y.device) != y
    distance = (x - natural).flatten(1).norm(dim=1)
    return [
        {"example": i, "misclassified": bool(wrong[i]), "perturbation_l2": distance[i].item(), "metric": name, "value": v[i].item()}
        for i in range(len(x))
        for name, v in values.items()
    ]


def magnitudes(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that count in the comparison, with |M2| as its value (M2 is the eigenvalue of largest
    magnitude, with its sign): adversarial kinds only where the attack fooled the model."""
    counted = table[~table.kind.isin(ADVERSARIAL) | table.misclassified.astype(bool)]
    return counted.assign(value=counted.value.where(counted.metric != "m2", counted.value.abs()))


def compare(table: pd.DataFrame) -> pd.DataFrame:
    """Per condition (see `condition`, in table order) and metric: count, median (of |M2| for m2),
    median / the natural median, and the one-sided Mann-Whitney p-value that the condition's values
    exceed the natural ones'."""
    counted = magnitudes(table)
    rows = []
    for metric in METRICS:
        natural = counted[(counted.kind == "natural") & (counted.metric == metric)].value
        for name in dict.fromkeys(table.condition):
            values = counted[(counted.condition == name) & (counted.metric == metric)].value
            compared = name != "natural" and len(values) and len(natural)
            p = mannwhitneyu(values, natural, alternative="greater").pvalue if compared else float("nan")
            rows.append({"condition": name, "metric": metric, "n": len(values), "median": values.median(),
                         "ratio_to_natural": values.median() / natural.median(), "p_greater": p})  # fmt: skip
    return pd.DataFrame(rows)
