"""Instability of adversarial examples (second paper, section 3.2.2): M1 and M2 by kind of example.

On natural test images each model classifies right, their adversarials crafted on that model
(PGD-Linf at fixed budgets, deep past the boundary; the thesis's minimal-epsilon PGD-Linf and
C&W-L2, which stop just past it) and
Gaussian-noisy copies: M1 = ||grad_x f(x)||_2 and M2 = lambda_max(Hessian_x f(x)) for several
definitions of f (`FS`): the predicted-class confidence, the cross-entropy at the original label
(the paper's code) and at the adversarial (predicted) label, and the logit margin of the predicted
class. Models: the zoo's plain FastNet and the one band-limited at 50% (second derivatives flow
through band-limited layers). Finding to check, per model and per attack (each adversarial paired
with its own natural image, fooling adversarials only): the median per-example log ratio
adversarial / natural of M1 and of |M2| is above 0, with a 95% bootstrap interval, judged apart for
the thesis's f ("a single class confidence value") and its code's (cross-entropy at the original
label); the other definitions of f and the noisy copies are notes.

    python studies/instability.py                 # quick preset (default): zoo FastNets 0% / 50%, 45 images
    python studies/instability.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from robustbench_bl import channels, plots
from robustbench_bl.attacks import craft_nonadaptive
from robustbench_bl.channels import make as make_channel
from robustbench_bl.cli import command_line
from robustbench_bl.evaluation import stats
from robustbench_bl.evaluation.probes import gradient_norm, hessian_top_eigenvalue, taylor_bound
from robustbench_bl.studies.channel_setup import ChannelStudy, Member
from robustbench_bl.studies.study import Cell, Row
from robustbench_bl.training import predict
from robustbench_bl.validation import check_choice, check_positive_int

#: Natural images, adversarials crafted on the model (PGD-Linf at fixed budgets, keeping the most
#: confident iterate; the thesis's minimal-epsilon PGD and C&W-L2, which stop just past the boundary),
#: Gaussian-noisy images.
KINDS = ("natural", "pgd-linf", "pgd-linf-minimal", "cw-l2", "gauss")
ADVERSARIAL = ("pgd-linf", "pgd-linf-minimal", "cw-l2")


def condition(kind: str, eps: float | None = None) -> str:
    """A readable name for a kind of example, with the Linf budget for PGD ('pgd-linf 8/255')."""
    check_choice(kind, "kind", KINDS)
    return f"{kind} {eps * 255:.3g}/255" if kind == "pgd-linf" and eps is not None else kind


def correctly_classified(model: nn.Module, x: Tensor, y: Tensor, n: int | None = None) -> tuple[Tensor, Tensor]:
    """The first `n` (None: all) of (x, y) that `model` classifies right: natural examples with a clean start."""
    right = predict(model, x).to(y.device) == y
    n = len(x) if n is None else check_positive_int(n, "n")
    return x[right][:n], y[right][:n]


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
    `eps`, the minimal-epsilon PGD's and unbounded C&W-L2 adversarials (all crafted on the model,
    seeded), or x through the Gaussian channel with std `sigma` (seeded draws, clipped to [0, 1])."""
    check_choice(kind, "kind", KINDS)
    if kind == "pgd-linf" and eps is None:
        raise ValueError("eps must be a Linf budget (a float) for kind 'pgd-linf', got None")
    if kind == "natural":
        return x
    if kind == "gauss":
        with torch.no_grad():
            return make_channel("gauss", sigma, seed=seed).to(x.device)(x)
    return craft_nonadaptive(model, kind, x, y, eps if kind == "pgd-linf" else None, seed, options)


#: The definitions of f probed: (name, probes objective, which label y is).
FS = (
    ("confidence", "confidence", "predicted"),
    ("ce-original", "ce", "original"),
    ("ce-adversarial", "ce", "predicted"),
    ("margin", "margin", "predicted"),
)
#: The definitions of f judged, each on its own claims: the thesis's text ("a single class confidence
#: value") and its code (the cross-entropy at the original label).
JUDGED = ("confidence", "ce-original")


def probe_rows(
    model: nn.Module, x: Tensor, natural: Tensor, y: Tensor, *, delta: float, iters: int = 50, seed: int = 0
) -> list[dict[str, Any]]:
    """Tidy rows per example of x and definition of f (`FS`): M1, M2 and the Taylor bound on how far
    f moves under an L2 perturbation of size `delta`, with whether x is misclassified and its L2
    distance from its natural image.

    Probed in float64 on a copy of the model: around confident natural images the confidence is
    near 1 and float32 rounds its small derivatives away.
    """
    exact = copy.deepcopy(model).double()
    predicted = predict(model, x).to(y.device)
    distance = (x - natural).flatten(1).norm(dim=1)
    rows = []
    for f, objective, label in FS:
        target = y if label == "original" else predicted
        m1 = gradient_norm(exact, x, target, objective=objective)
        m2 = hessian_top_eigenvalue(exact, x, target, iters=iters, seed=seed, objective=objective)
        values = {"m1": m1, "m2": m2, "taylor_bound": taylor_bound(m1, m2, delta)}
        rows += [
            {
                "f": f,
                "example": i,
                "misclassified": bool(predicted[i] != y[i]),
                "perturbation_l2": distance[i].item(),
                "metric": name,
                "value": v[i].item(),
            }
            for i in range(len(x))
            for name, v in values.items()
        ]
    return rows


def log_ratios(table: pd.DataFrame, model_key: str, name: str, f: str, metric: str) -> np.ndarray:
    """Per example: log(value at the condition / value at its natural image) of M1 or |M2|, over the
    condition's examples that count (adversarial kinds: those that fool the model)."""
    part = table[(table.model_key == model_key) & (table.f == f) & (table.metric == metric)]
    natural = part[part.kind == "natural"].set_index("example").value.abs()
    made = part[part.condition == name]
    if made.kind.iloc[0] in ADVERSARIAL:
        made = made[made.misclassified.astype(bool)]
    made = made.set_index("example").value.abs()
    both = made.index.intersection(natural.index)
    ratio = made[both] / natural[both]
    return np.log(ratio[(ratio > 0) & np.isfinite(ratio)].to_numpy())


@dataclass(frozen=True)
class Preset:
    """`test`: images drawn (class-balanced); `n`: at most this many of the correctly classified ones
    probed per model (None: all of them, so that --images sets the size);
    `iters`: Lanczos steps for M2; `eps`: PGD-Linf budgets (2/255 fools about half of the LeNet
    examples, those nearest the boundary; 8/255 nearly all, deep past it); `sigma`: std of the
    Gaussian noise, whose mean L2 size is also the Taylor bound's perturbation size; `rates`: the
    models' compression rates."""

    test: int
    n: int | None
    iters: int
    eps: tuple[float, ...]
    sigma: float
    rates: tuple[float, ...]


PRESETS = {
    "smoke": Preset(test=20, n=6, iters=5, eps=(8 / 255,), sigma=0.03, rates=(0.0, 0.5)),
    # On zoo v2's full-width FastNets the 12 cells take ~50 s a probed image at 20 Lanczos steps (4.2 s
    # a cell; 11 images a model, one thread beside two other jobs; the minimal PGD's cells cost most):
    # the ~40 right of 45 images, ~33 min under that load; the reference run takes 500 images.
    "quick": Preset(test=45, n=None, iters=20, eps=(2 / 255, 8 / 255), sigma=0.03, rates=(0.0, 0.5)),
    "paper": Preset(test=2000, n=1000, iters=100, eps=(2 / 255, 8 / 255), sigma=0.03, rates=(0.0, 0.5)),
}
PAPER = (
    "second paper 3.2.2: M1 and M2 (f: 'a single class confidence value') larger around adversarial examples, no number"
)
LABELS = {"m1": "M1", "m2": "|M2|"}


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """Per model, attack and metric (M1, |M2|): the median per-example log ratio adversarial / natural
    for the paper's f, with a 95% bootstrap interval; the other f and the noisy copies as notes."""
    claims, notes = [], []
    for (key, rate), _ in table.groupby(["model_key", "train_compress"]):
        for name in dict.fromkeys(table[table.kind != "natural"].condition):
            for f, _, _ in FS:
                for metric in LABELS:
                    values = log_ratios(table, key, name, f, metric)
                    if len(values) == 0:
                        notes.append(f"{rate:.0%} model, {name}, f={f}: no example counts")
                        continue
                    interval = partial(stats.bootstrap, values, seed=seed)
                    est = float(np.median(values))
                    label = f"{rate:.0%} model, {name}, {LABELS[metric]} of f={f}: median log ratio over {len(values)} examples (x{np.exp(est):.2f})"
                    claim = stats.Claim.measured(label, interval, paper=PAPER)
                    if f in JUDGED and name.startswith(ADVERSARIAL):
                        claims.append(claim)
                    else:
                        notes.append(str(claim))
    return stats.finding(
        "adversarial examples are less stable: larger M1 and M2",
        claims,
        "per model, attack and f (the thesis's class confidence, and its code's cross-entropy at the original label), "
        "adversarials that fool paired with their natural images, 95% bootstrap intervals of the median log ratio "
        "(0 = no change)",
        notes,
    )


class Instability(ChannelStudy[Preset]):
    name = "instability"
    title = __doc__.splitlines()[0]
    presets = PRESETS

    def members(self) -> tuple[Member, ...]:
        return tuple((rate, 0, 0) for rate in self.p.rates)

    def prepare(self) -> None:
        super().prepare()
        self.naturals = {r: correctly_classified(self.models[r, 0, 0], self.x, self.y, self.p.n) for r in self.p.rates}
        noise = channels.make("gauss", self.p.sigma, seed=self.args.seed)
        self.delta = noise.distortion(self.naturals[0.0][0]).mean().item()

    def cells(self) -> list[Cell]:
        p = self.p
        kinds = [
            ("natural", None),
            *(("pgd-linf", eps) for eps in p.eps),
            ("pgd-linf-minimal", None),
            ("cw-l2", None),
            ("gauss", None),
        ]
        return [
            self.cell(
                self.setting.model,
                model_key=self.keys[rate, 0, 0],
                train_compress=rate,
                sigma=p.sigma,
                iters=p.iters,
                n=len(self.naturals[rate][0]),
                kind=kind,
                eps=eps,
                condition=condition(kind, eps),
            )
            for rate in p.rates
            for kind, eps in kinds
        ]

    def measure(self, cell: Cell) -> list[Row]:
        kind, model = cell["kind"], self.models[cell["train_compress"], 0, 0]
        x, y = self.naturals[cell["train_compress"]]
        options = self.setting.options.get(kind)
        made = examples(model, kind, x, y, eps=cell["eps"], sigma=self.p.sigma, seed=cell["seed"], options=options)
        rows = probe_rows(model, made, x, y, delta=self.delta, iters=self.p.iters, seed=cell["seed"])
        return [{**row, "taylor_delta": self.delta, "data_source": self.test.source_kind} for row in rows]

    def figures(self, table: pd.DataFrame) -> list[Path]:
        labels = {"m1": "M1 = ||grad f||", "m2": "|M2| = |lambda_max|"}
        counted = table[
            (table.f == "ce-original")
            & table.metric.isin(labels)
            & (~table.kind.isin(ADVERSARIAL) | table.misclassified.astype(bool))
        ]
        shown = counted.assign(
            value=counted.value.abs(),
            metric=counted.metric.map(labels),
            model=counted.train_compress.map(lambda r: f"{r:.0%}"),
        )
        return plots.distributions(
            shown,
            x="condition",
            y="value",
            hue="model",
            col="metric",
            log=True,
            xlabel="example",
            ylabel="value (log scale)",
            title=f"{self.setting.model} on CIFAR-10 ({self.test.source_kind} data): instability (f = cross-entropy at "
            f"the original label), gauss sigma {self.p.sigma}",
            stem=self.figure(),
        )

    def finding(self, table: pd.DataFrame) -> stats.Finding:
        return finding(table, self.args.seed)


main = Instability.main

if __name__ == "__main__":
    sys.exit(command_line(main))
