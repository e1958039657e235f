"""Instability of adversarial examples (second seed, section 3.2.2): M1 and M2 by kind of example.

On natural test images the model classifies right, their PGD-Linf and C&W-L2 adversarials (crafted
on the plain-convolution model) and Gaussian-noisy copies: M1 = ||grad_x f_y(x)||_2 and
M2 = lambda_max(Hessian_x f_y(x)), f_y the confidence of the predicted class. Finding to check:
adversarial examples are less stable (larger M1 and M2) than natural ones. The study probes the
plain-convolution model; `probes` also measure M2 on band-limited models (their backward is
differentiable), which this study does not run yet.

    python studies/instability.py                 # quick preset (default), <= 10 min on a CPU
    python studies/instability.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from scipy.stats import mannwhitneyu
from torch import Tensor, nn

from robustbench_bl import channels, plots
from robustbench_bl.attacks import craft_nonadaptive
from robustbench_bl.channels import make as make_channel
from robustbench_bl.cli import Study, command_line, parse_args
from robustbench_bl.evaluation.probes import gradient_norm, hessian_top_eigenvalue, taylor_bound
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.channel_setup import load_models, setting_for
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
    model: nn.Module,
    kind: str,
    x: Tensor,
    y: Tensor,
    *,
    eps: float | None,
    sigma: float,
    seed: int,
    options: Mapping[str, Any] | None = None,
) -> Tensor:
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
        {
            "example": i,
            "misclassified": bool(wrong[i]),
            "perturbation_l2": distance[i].item(),
            "metric": name,
            "value": v[i].item(),
        }
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
            rows.append(
                {
                    "condition": name,
                    "metric": metric,
                    "n": len(values),
                    "median": values.median(),
                    "ratio_to_natural": values.median() / natural.median(),
                    "p_greater": p,
                }
            )
    return pd.DataFrame(rows)


NAME = "instability"
#: test: images drawn (class-balanced); n: the correctly classified ones probed; iters: Lanczos
#: steps for M2; eps: PGD-Linf budgets (2/255 fools about half of the LeNet examples, those nearest
#: the boundary; 8/255 nearly all, deep past it); sigma: std of the Gaussian noise, whose mean L2
#: size is also the Taylor bound's perturbation size.
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(test=20, n=6, iters=5, eps=(8 / 255,), sigma=0.03),
    "quick": dict(test=600, n=300, iters=50, eps=(2 / 255, 8 / 255), sigma=0.03),
    "paper": dict(test=2000, n=1000, iters=100, eps=(2 / 255, 8 / 255), sigma=0.03),
}


def finding(summary: pd.DataFrame) -> str:
    """The headline: each adversarial condition's median M1 and |M2| against the natural medians."""
    adversarial = summary[summary.condition.str.startswith(ADVERSARIAL) & summary.metric.isin(["m1", "m2"])]
    natural = summary[summary.condition == "natural"].set_index("metric")["median"]
    larger = adversarial["median"] > adversarial.metric.map(natural)
    verdict = (
        "HOLDS"
        if larger.all()
        else "DOES NOT HOLD"
        if not larger.any()
        else f"HOLDS FOR {larger.sum()} OF {len(larger)} (example, metric) PAIRS"
    )
    labels = {"m1": "M1", "m2": "|M2|"}
    parts = [
        f"{r.condition} {labels[r.metric]} {r.median:.3g} vs natural {natural[r.metric]:.3g} (x{r.ratio_to_natural:.2f}, "
        f"n={r.n}, Mann-Whitney p={r.p_greater:.2g})"
        for r in adversarial.itertuples()
    ]
    return f"Finding ('adversarial examples are less stable: larger M1 and M2') {verdict}: medians " + "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p, setting = PRESETS[args.preset], setting_for(args)
    study = Study.from_args(args)
    models = load_models(args, setting, p["test"])
    if not distributed.is_main():
        return pd.DataFrame()  # under torchrun, rank 0 alone runs the sweep
    model, key = models.models[0.0], models.keys[0.0]
    x, y = correctly_classified(model, models.test.x.to(args.device), models.test.y.to(args.device), p["n"])
    delta = channels.make("gauss", p["sigma"], seed=args.seed).distortion(x).mean().item()

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        kind = cell["kind"]
        made = examples(
            model, kind, x, y, eps=cell["eps"], sigma=p["sigma"], seed=cell["seed"], options=setting.options.get(kind)
        )
        rows = probe_rows(model, made, x, y, delta=delta, iters=p["iters"], seed=cell["seed"])
        return [{**row, "taylor_delta": delta, "data_source": models.test.source_kind} for row in rows]

    base = {
        "study": NAME,
        "dataset": "cifar10",
        "model": setting.model,
        "model_key": key,
        "sigma": p["sigma"],
        "iters": p["iters"],
        "seed": args.seed,
        "n": len(x),
    }
    kinds = [("natural", None), *(("pgd-linf", eps) for eps in p["eps"]), ("cw-l2", None), ("gauss", None)]
    cells = [{**base, "kind": kind, "eps": eps, "condition": condition(kind, eps)} for kind, eps in kinds]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table.merge(pd.DataFrame(cells), on=list(cells[0]))
    summary = compare(table)

    labels = {"m1": "M1 = ||grad f_y||", "m2": "|M2| = |lambda_max|"}
    shown = magnitudes(table[table.metric.isin(labels)]).assign(metric=lambda t: t.metric.map(labels))
    paths = plots.distributions(
        shown,
        x="condition",
        y="value",
        col="metric",
        log=True,
        xlabel="example",
        ylabel="value (log scale)",
        title=f"{setting.model} on CIFAR-10 ({models.test.source_kind} data): instability around {len(x)} natural images "
        f"(gauss sigma {p['sigma']})",
        stem=study.figure(),
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    study.conclude(finding(summary), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
