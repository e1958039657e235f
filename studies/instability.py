"""Instability of adversarial examples (second seed, section 3.2.2): M1 and M2 by kind of example.

On natural test images the model classifies right, their PGD-Linf and C&W-L2 adversarials (crafted
on the plain-convolution model) and Gaussian-noisy copies: M1 = ||grad_x f_y(x)||_2 and
M2 = lambda_max(Hessian_x f_y(x)), f_y the confidence of the predicted class. Finding to check:
adversarial examples are less stable (larger M1 and M2) than natural ones. Band-limited layers
have no second derivative, so the study probes the plain-convolution model only.

    python studies/instability.py                 # quick preset (default), <= 10 min on a CPU
    python studies/instability.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

from robustbench_bl import channels, distributed, plots
from robustbench_bl.channel_tuning import load_models, setting_for
from robustbench_bl.instability import ADVERSARIAL, compare, condition, correctly_classified, examples, magnitudes, probe_rows
from robustbench_bl.cli import command_line
from robustbench_bl.study import Study, parse_args
from robustbench_bl.sweep import run

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
    verdict = "HOLDS" if larger.all() else "DOES NOT HOLD" if not larger.any() else f"HOLDS FOR {larger.sum()} OF {len(larger)} (example, metric) PAIRS"
    labels = {"m1": "M1", "m2": "|M2|"}
    parts = [f"{r.condition} {labels[r.metric]} {r.median:.3g} vs natural {natural[r.metric]:.3g} (x{r.ratio_to_natural:.2f}, "
             f"n={r.n}, Mann-Whitney p={r.p_greater:.2g})" for r in adversarial.itertuples()]  # fmt: skip
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
        made = examples(model, kind, x, y, eps=cell["eps"], sigma=p["sigma"], seed=cell["seed"], options=setting.options.get(kind))
        rows = probe_rows(model, made, x, y, delta=delta, iters=p["iters"], seed=cell["seed"])
        return [{**row, "taylor_delta": delta, "data_source": models.test.source_kind} for row in rows]

    base = {"study": NAME, "dataset": "cifar10", "model": setting.model, "model_key": key,
            "sigma": p["sigma"], "iters": p["iters"], "seed": args.seed, "n": len(x)}  # fmt: skip
    kinds = [("natural", None), *(("pgd-linf", eps) for eps in p["eps"]), ("cw-l2", None), ("gauss", None)]
    cells = [{**base, "kind": kind, "eps": eps, "condition": condition(kind, eps)} for kind, eps in kinds]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table.merge(pd.DataFrame(cells), on=list(cells[0]))
    summary = compare(table)

    labels = {"m1": "M1 = ||grad f_y||", "m2": "|M2| = |lambda_max|"}
    shown = magnitudes(table[table.metric.isin(labels)]).assign(metric=lambda t: t.metric.map(labels))
    paths = plots.distributions(
        shown, x="condition", y="value", col="metric", log=True, xlabel="example", ylabel="value (log scale)",
        title=f"{setting.model} on CIFAR-10 ({models.test.source_kind} data): instability around {len(x)} natural images "
              f"(gauss sigma {p['sigma']})",
        stem=study.figure(),
    )  # fmt: skip
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(finding(summary))
    print(f"wrote {study.store.path.with_suffix('.csv')} and {', '.join(map(str, paths))}")
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
