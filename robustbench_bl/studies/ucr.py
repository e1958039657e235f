"""Band-limited FCN on time series: train against test compression, Friedman and Nemenyi ranking
across data sets (first paper, Figs. 8, 22, 23 and 27).

Trains the FCN (Wang et al. 2017) with band-limited 1D convolutions at several compression rates and
training seeds on the bundled sets (five univariate sets of the UCR archive, as the paper's, and
BasicMotions from the UEA multivariate archive) and tests each model at every rate (band changed on
a copy). Findings to check:

- Fig. 8, as an equivalence: a model trained and tested at 50% loses at most MARGIN accuracy against
  0% (the 95% interval of the mean difference over data sets and seeds, stratified paired bootstrap
  over each set's test series, lies above -MARGIN).
- Figs. 22 and 23: "the best test accuracy is achieved when the same compression rate is used during
  training and inference", for the compressed-trained model (Fig. 22; the paper trains at 90% energy,
  here at a static 50%) and the plain one (Fig. 23): accuracy at the training rate minus the best
  other test rate, mean over data sets and seeds; with each one's Friedman test and Nemenyi CD.

ACSF1 (1,460-step series) is in the paper preset only: in the quick preset's budget it did not
converge (final training accuracy 0.55 and 0.41 after 10 epochs) and alone decided the equivalence.

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
PAPER = "first paper Fig. 8: 50% preserves the accuracy of 0% (within +/- 5% lines on 25 UCR sets, no mean)"
PAPER_RANK = "first paper Figs. 22, 23: the training rate ranks first at test (Friedman + Nemenyi, 25 UCR sets)"


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
    # Every set but ACSF1 (module docstring), every test series, two training seeds. OSULeaf's long
    # series cost ~6-12 s per epoch on a 2-core CPU, so it gets 10 epochs; the four others 50 (the
    # final training accuracy is printed to show how far each converged).
    "quick": Preset(
        datasets=tuple(d for d in data.UCR_DATASETS if d != "ACSF1"),
        train=None,
        test=None,
        epochs={"OSULeaf": 10},
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
    parts, strata = list(table.groupby("dataset")), strata_of(table)
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


def strata_of(table: pd.DataFrame) -> list[dict[tuple[float, float, int], np.ndarray]]:
    """Per data set, the per-series outcomes by (train rate, test rate, seed)."""
    return [
        {
            (r.train_compress, r.test_compress, r.seed): stats.unpack(r.correct, int(part.n.iloc[0])).astype(np.float64)
            for r in part.itertuples()
        }
        for _, part in table.groupby("dataset")
    ]


def own_rate_first(table: pd.DataFrame, seed: int) -> tuple[list[stats.Claim], list[str]]:
    """Per train rate: accuracy at that test rate minus the best other test rate (the one with the highest
    mean over data sets and seeds), 95% stratified paired-bootstrap interval; its Friedman / Nemenyi ranking."""
    strata, seeds = strata_of(table), sorted(table.seed.unique())
    claims, notes = [], []
    for train in sorted(table.train_compress.unique()):
        others = sorted(t for t in table.test_compress.unique() if t != train)
        if train not in set(table.test_compress) or not others:
            continue

        def own_minus_best(per_set: Sequence[Mapping[Any, np.ndarray]], train: float = train) -> np.ndarray:
            def mean(test: float) -> np.ndarray:
                return np.mean([np.mean([m[train, test, s] for s in seeds], axis=0) for m in per_set], axis=0)

            return mean(train) - np.max(np.stack([mean(t) for t in others]), axis=0)

        label = f"trained at {train:.0%}: tested at {train:.0%} - at the best other rate, mean over {len(strata)} sets"
        interval = partial(stats.stratified_bootstrap, strata, own_minus_best, seed=seed)
        claims.append(stats.Claim.measured(label, interval, paper=PAPER_RANK))
        _, ranks, stat, p, cd = ranking(table, train)
        groups = "; ".join("{" + ", ".join(f"{r:.0%}" for r in g) + "}" for g in cliques(ranks, cd)) or "none"
        notes.append(
            f"test compression of the models trained at {train:.0%}, average ranks "
            + ", ".join(f"{r:.0%}: {v:.2f}" for r, v in ranks.items())
            + f"; Friedman chi2 = {stat:.2f}, p = {p:.3g}; Nemenyi CD (alpha 0.05) = {cd:.2f}; not significantly "
            f"different: {groups}"
        )
    return claims, notes


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """The equivalence claim (trained and tested at each rate > 0 against 0%) with per data set numbers,
    and per train rate the own-rate-first claim with its Friedman / Nemenyi ranking of test rates."""
    claims, notes = equivalence(table, seed)
    ranked, ranking_notes = own_rate_first(table, seed)
    return stats.finding(
        f"up to 50% compression costs at most {MARGIN:.0%} accuracy (equivalence), and each model is most accurate "
        "at the rate it was trained at",
        claims + ranked,
        f"on {table.dataset.nunique()} data sets and {table.seed.nunique()} training seed(s) (accuracy differences "
        "with 95% stratified paired-bootstrap intervals over the test series)",
        notes + ranking_notes,
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
        for train in sorted(table.train_compress.unique()):
            scores, ranks, _, p_value, cd = ranking(table, train)
            paths += plots.rank_intervals(
                ranks.rename(index="{:.0%}".format),
                cd,
                stem=self.figure(f"{self.name}_cd" + (f"_{train:.0%}".replace("%", "") if train else "")),
                title=f"FCN trained at {train:.0%}: test compression over {len(scores)} data sets (Friedman p = {p_value:.3f})",
            )
        return paths

    def summary(self, table: pd.DataFrame) -> str:
        scores = ranking(table)[0]
        converged = table.groupby(["dataset", "train_compress"]).train_accuracy.mean().round(3)
        return text(scores) + "\nfinal training accuracy: " + converged.to_string().replace("\n", "; ")

    def finding(self, table: pd.DataFrame) -> stats.Finding:
        return finding(table, self.args.seed)


main = UCR.main

if __name__ == "__main__":
    sys.exit(command_line(main))
