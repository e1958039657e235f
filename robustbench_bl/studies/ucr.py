"""Band-limited FCN on UCR time series: train against test compression, Friedman and Nemenyi
ranking across data sets (first paper, Figs. 22, 23 and 27).

Trains the FCN (Wang et al. 2017) with band-limited 1D convolutions at several compression
rates and training seeds on each of the six bundled UCR data sets and tests each model at every
rate (band changed on a copy). Finding to check, as an equivalence: a model trained and tested at
50% loses at most MARGIN accuracy against 0%, i.e. the 95% interval of the mean difference (over
data sets and seeds; stratified paired bootstrap over each data set's test series) lies above
-MARGIN. As in the paper's Friedman figures, the test compression rates of the models trained at
0% are ranked per data set (Friedman test, Nemenyi critical difference CD).

    python studies/ucr.py                 # quick preset (default), <= 15 min on a CPU
    python studies/ucr.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_bl import data, plots
from robustbench_bl.cli import command_line
from robustbench_bl.evaluation import stats
from robustbench_bl.evaluation.critical_difference import average_ranks, cliques, friedman, nemenyi_cd
from robustbench_bl.runtime.checkpoints import CheckpointStore
from robustbench_bl.studies.bands import with_band
from robustbench_bl.studies.study import Cell, Row, Study, text
from robustbench_bl.training import predict, recipe

#: The accuracy a model trained and tested at 50% may lose against 0% for the finding to hold.
MARGIN = 0.02
PAPER = "first paper Figs. 22, 23, 27: up to 50% not significantly worse than 0% (ranks, no number)"


@dataclass(frozen=True)
class Preset:
    """`train` / `test`: series per data set (None: all); `epochs`: per data set, else `default_epochs`;
    `seeds`: training seed offsets; `train_rates` / `test_rates`: the compression of training / testing."""

    datasets: tuple[str, ...]
    train: int | None
    test: int | None
    epochs: Mapping[str, int]
    default_epochs: int
    lr: float
    seeds: tuple[int, ...]
    train_rates: tuple[float, ...]
    test_rates: tuple[float, ...]


PRESETS = {
    "smoke": Preset(
        datasets=("ItalyPowerDemand", "GunPoint"),
        train=20,
        test=40,
        epochs={},
        default_epochs=1,
        lr=3e-3,
        seeds=(0,),
        train_rates=(0.0, 0.5),
        test_rates=(0.0, 0.5, 0.85),
    ),
    # All six data sets, every test series, two training seeds. The two long-series sets cost
    # ~6-12 s per epoch on a 2-core CPU, so they get 10 epochs; the four others 50 (the final
    # training accuracy is printed to show how far each converged).
    "quick": Preset(
        datasets=data.UCR_DATASETS,
        train=None,
        test=None,
        epochs={"OSULeaf": 10, "ACSF1": 10},
        default_epochs=50,
        lr=3e-3,
        seeds=(0, 1),
        train_rates=(0.0, 0.5),
        test_rates=(0.0, 0.25, 0.5, 0.75, 0.85),
    ),
    "paper": Preset(
        datasets=data.UCR_DATASETS,
        train=None,
        test=None,
        epochs={},
        default_epochs=2000,
        lr=1e-3,
        seeds=(0, 1, 2),
        train_rates=(0.0, 0.25, 0.5, 0.75, 0.85),
        test_rates=(0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.8, 0.85),
    ),
}


def ranking(table: pd.DataFrame, train_rate: float = 0.0) -> tuple[pd.DataFrame, pd.Series, float, float, float]:
    """Accuracies of the models trained at `train_rate` (data sets x test compression, mean over
    seeds), average ranks, Friedman (stat, p) and the Nemenyi CD."""
    part = table[table.train_compress == train_rate]
    scores = part.pivot_table(index="dataset", columns="test_compress", values="value", aggfunc="mean")
    stat, p = friedman(scores)
    return scores, average_ranks(scores), stat, p, nemenyi_cd(scores.shape[1], scores.shape[0])


def equivalence(table: pd.DataFrame, seed: int) -> tuple[list[stats.Claim], list[str]]:
    """Per train rate > 0: trained and tested there minus at 0%, mean over data sets and seeds, with a
    95% stratified paired-bootstrap interval (the claims), and the per data set means (notes)."""
    parts = list(table.groupby("dataset"))
    strata = [
        {
            (r.train_compress, r.test_compress, r.seed): stats.unpack(r.correct, int(part.n.iloc[0])).astype(np.float64)
            for r in part.itertuples()
        }
        for _, part in parts
    ]
    seeds = sorted(table.seed.unique())
    claims, notes = [], []
    for rate in sorted(r for r in table.train_compress.unique() if r > 0):

        def diff(per_set: Sequence[Mapping[Any, np.ndarray]], rate: float = rate) -> np.ndarray:
            return np.mean(
                [np.mean([m[rate, rate, s] - m[0.0, 0.0, s] for s in seeds], axis=0) for m in per_set], axis=0
            )

        interval = partial(stats.stratified_bootstrap, strata, diff, seed=seed)
        label = f"trained and tested at {rate:.0%} - at 0%, mean over {len(strata)} data sets and {len(seeds)} seeds"
        claims.append(stats.Claim.measured(label, interval, threshold=-MARGIN, paper=PAPER))
        means = [{k: v.mean(keepdims=True) for k, v in m.items()} for m in strata]
        per_set = ", ".join(f"{name} {float(diff([m])[0]):+.3f}" for (name, _), m in zip(parts, means))
        notes.append(f"per data set at {rate:.0%} - 0%: {per_set}")
    return claims, notes


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """The equivalence claim (trained and tested at each rate > 0 against 0%), per data set numbers,
    and the Friedman / Nemenyi ranking of test compression rates for the models trained at 0%."""
    claims, notes = equivalence(table, seed)
    _, ranks, stat, p, cd = ranking(table)
    groups = "; ".join("{" + ", ".join(f"{r:.0%}" for r in g) + "}" for g in cliques(ranks, cd)) or "none"
    notes.append(
        "test compression of the models trained at 0%, average ranks "
        + ", ".join(f"{r:.0%}: {v:.2f}" for r, v in ranks.items())
        + f"; Friedman chi2 = {stat:.2f}, p = {p:.3g}; Nemenyi CD (alpha 0.05) = {cd:.2f}; not significantly "
        f"different: {groups}"
    )
    return stats.finding(
        f"up to 50% compression costs at most {MARGIN:.0%} accuracy (equivalence)",
        claims,
        "(accuracy difference with 95% stratified paired-bootstrap intervals over the test series)",
        notes,
    )


def _last_train_accuracy(meta: dict[str, Any]) -> float:
    """The training accuracy of a stored model's last epoch (how far it converged)."""
    history: list[dict[str, float]] = meta["metrics"]["history"]
    return history[-1]["train_accuracy"]


Key = tuple[str, float, int]  # (data set, train compression rate, training seed offset)


class UCR(Study[Preset]):
    name = "ucr"
    title = __doc__.splitlines()[0]
    presets = PRESETS
    dataset = None  # the bundled UCR sets, not --data

    def prepare(self) -> None:
        p, seed = self.p, self.args.seed
        self.tests = {name: data.ucr(name, "test") for name in p.datasets}
        if p.test:
            self.tests = {name: t.at_most(p.test, seed=seed) for name, t in self.tests.items()}
        print("data: " + ", ".join(f"{n} ({len(t)} test series, {t.source})" for n, t in self.tests.items()))
        self.configs = {
            (name, rate, s): recipe(
                "fcn1d",
                name,
                compress_rate=rate,
                epochs=p.epochs.get(name, p.default_epochs),
                lr=p.lr,
                limit=p.train,
                seed=seed + s,
            )
            for name in p.datasets
            for rate in p.train_rates
            for s in p.seeds
        }
        store = CheckpointStore(self.args.checkpoints)
        device = self.args.device
        trained = {k: store.get_or_train(c, device=device, progress=self.progress) for k, c in self.configs.items()}
        self.models = {k: model for k, (model, _) in trained.items()}
        self.train_accuracy = {k: _last_train_accuracy(meta) for k, (_, meta) in trained.items()}

    def cells(self) -> list[Cell]:
        return [
            {
                "study": self.name,
                "dataset": name,
                "model": "fcn1d",
                "model_key": config.key("aeon"),
                "train_compress": train,
                "test_compress": test_rate,
                "epochs": config.epochs,
                "seed": self.args.seed + s,
                "n": len(self.tests[name]),
            }
            for (name, train, s), config in self.configs.items()
            for test_rate in self.p.test_rates
        ]

    def measure(self, cell: Cell) -> list[Row]:
        key = (cell["dataset"], cell["train_compress"], cell["seed"] - self.args.seed)
        model = with_band(self.models[key], compress_rate=cell["test_compress"])
        test = self.tests[cell["dataset"]]
        correct = predict(model, test.x).cpu() == test.y.cpu()
        return [
            {
                "metric": "accuracy",
                "value": correct.float().mean().item(),
                "correct": stats.pack(correct),
                "train_accuracy": self.train_accuracy[key],
                "data_source": test.source_kind,
            }
        ]

    def figures(self, table: pd.DataFrame) -> list[Path]:
        paths = plots.lines(
            table.assign(train=table.train_compress.map("{:.0%}".format)),
            x="test_compress",
            y="value",
            hue="train",
            col="dataset",
            col_wrap=3,
            stem=self.figure(),
            xlabel="test compression",
            ylabel="test accuracy",
            title="FCN on UCR: accuracy by train (hue) and test compression",
        )
        scores, ranks, _, p_value, cd = ranking(table)
        return paths + plots.rank_intervals(
            ranks.rename(index="{:.0%}".format),
            cd,
            stem=self.figure(f"{self.name}_cd"),
            title=f"FCN trained at 0%: test compression over {len(scores)} UCR data sets (Friedman p = {p_value:.3f})",
        )

    def summary(self, table: pd.DataFrame) -> str:
        scores = ranking(table)[0]
        converged = table.groupby(["dataset", "train_compress"]).train_accuracy.mean().round(3)
        return text(scores) + "\nfinal training accuracy: " + converged.to_string().replace("\n", "; ")

    def finding(self, table: pd.DataFrame) -> stats.Finding:
        return finding(table, self.args.seed)


main = UCR.main

if __name__ == "__main__":
    sys.exit(command_line(main))
