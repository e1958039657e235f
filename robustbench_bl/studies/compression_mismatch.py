"""Train against test compression of band-limited models (first paper, Fig. 5).

Takes the same CNN trained at several compression rates (the zoo's FastNets, two training seeds
at 0% and 50%), then tests each at every rate by changing the band of its layers on a copy
(evaluation only). Finding to check: each model is most accurate at the rate it was trained at,
judged per model by the paired difference between its accuracy on the diagonal and its best
accuracy off it, with a 95% paired-bootstrap interval over the same test images.

    python studies/compression_mismatch.py                 # quick preset (default), <= 15 min on a CPU
    python studies/compression_mismatch.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_bl import plots
from robustbench_bl.cli import command_line
from robustbench_bl.evaluation import stats
from robustbench_bl.studies.bands import with_band
from robustbench_bl.studies.common import ZOO_EPOCHS, discarded_per_layer
from robustbench_bl.studies.study import Cell, Row, TrainedPreset, TrainedStudy, text
from robustbench_bl.training import TrainConfig, budget, predict, recipe

PAPER = "first paper Fig. 5: the diagonal is best, no number"

Key = tuple[float, int]  # (train compression rate, training seed offset)


@dataclass(frozen=True)
class Preset(TrainedPreset):
    """`models`: (train compression rate, training seed offset); `test_rates`: the rates each is tested at."""

    models: tuple[Key, ...]
    test_rates: tuple[float, ...]


PRESETS = {
    "smoke": Preset("lenet", 200, 100, 1, models=((0.0, 0), (0.5, 0)), test_rates=(0.0, 0.5)),
    # The zoo's FastNets (no training); 5,000 offline test images with RBL_DATA, else the sample.
    "quick": Preset(
        "fastnet",
        50000,
        5000,
        ZOO_EPOCHS,
        models=((0.0, 0), (0.5, 0), (0.85, 0), (0.0, 1), (0.5, 1)),
        test_rates=(0.0, 0.25, 0.5, 0.65, 0.85),
    ),
    "paper": Preset(
        "resnet18",
        50000,
        10000,
        350,
        models=((0.0, 0), (0.5, 0), (0.75, 0), (0.85, 0), (0.0, 1), (0.5, 1)),
        test_rates=(0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.8, 0.85),
    ),
}


def own_minus_best(model: tuple[float, int], others: list[float]) -> Callable[[Mapping[Any, np.ndarray]], np.ndarray]:
    """The statistic 'accuracy at the model's own test rate minus the best of the `others`'."""
    return lambda a: a[model, model[0]] - np.max(np.stack([a[model, t] for t in others]), axis=0)


def bands(table: pd.DataFrame) -> pd.DataFrame:
    """Per test rate, the fraction of each layer's one-sided spectrum discarded (static bands depend on
    the rate and the map size only: read from the first model's rows)."""
    first = table[(table.train_compress == table.train_compress.min()) & (table.seed_offset == 0)]
    return pd.DataFrame(
        {r.test_compress: json.loads(r.discarded_per_layer) for r in first.sort_values("test_compress").itertuples()}
    )


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """Per trained model, accuracy at its own rate minus its best accuracy at any other test rate,
    with a 95% paired-bootstrap interval over the test images (ties are INCONCLUSIVE, not a pass)."""
    n = int(table.n.iloc[0])
    outcomes = {
        ((r.train_compress, r.seed_offset), r.test_compress): stats.unpack(r.correct, n) for r in table.itertuples()
    }
    band = {((r.train_compress, r.seed_offset), r.test_compress): r.discarded_per_layer for r in table.itertuples()}
    claims, notes = [], []
    for model in sorted({m for m, _ in outcomes}):
        rates = sorted(t for m, t in outcomes if m == model)
        if model[0] not in rates:
            continue
        same = [t for t in rates if t != model[0] and band[model, t] == band[model, model[0]]]
        others = [t for t in rates if t != model[0] and t not in same]
        if same:
            notes.append(
                f"trained at {model[0]:.0%} (seed +{model[1]}): test rate(s) {', '.join(f'{t:.0%}' for t in same)} keep "
                "the very band of its own rate in every layer (the same computation), so they are not 'other' rates"
            )
        if not others:
            continue
        best = max(others, key=lambda t: outcomes[model, t].mean())
        label = (
            f"trained at {model[0]:.0%} (seed +{model[1]}): {outcomes[model, model[0]].mean():.3f} at its own rate - "
            f"best other ({best:.0%}: {outcomes[model, best].mean():.3f})"
        )
        interval = partial(stats.paired_bootstrap, outcomes, own_minus_best(model, others), seed=seed)
        claims.append(stats.Claim.measured(label, interval, paper=PAPER))
    diagonal = np.mean([outcomes[m, m[0]].mean() for m in {m for m, _ in outcomes} if (m, m[0]) in outcomes])
    off = np.mean([v.mean() for (m, t), v in outcomes.items() if t != m[0]])
    notes.append(f"mean accuracy on the diagonal {diagonal:.3f}, off it {off:.3f}")
    return stats.finding(
        "best accuracy at the rate trained at",
        claims,
        f"on {n} test images: each model's accuracy at its training rate minus its best accuracy at another test rate "
        "(one whose per-layer band differs), 95% paired-bootstrap intervals",
        notes,
    )


class CompressionMismatch(TrainedStudy[Preset, Key]):
    name = "compression_mismatch"
    title = __doc__.splitlines()[0]
    presets = PRESETS

    def configs(self, train_size: int) -> dict[Key, TrainConfig]:
        p, size = self.p, budget(self.p.train, self.p.epochs, train_size)
        return {
            (rate, s): recipe(p.model, "cifar10", compress_rate=rate, **size, seed=self.args.seed + s)
            for rate, s in p.models
        }

    def cells(self) -> list[Cell]:
        return [
            self.cell(
                self.p.model, model_key=self.keys[train, s], train_compress=train, seed_offset=s, test_compress=rate
            )
            for train, s in self.p.models
            for rate in self.p.test_rates
        ]

    def measure(self, cell: Cell) -> list[Row]:
        model = with_band(self.models[cell["train_compress"], cell["seed_offset"]], compress_rate=cell["test_compress"])
        correct = predict(model, self.test.x).cpu() == self.test.y.cpu()
        return [
            {
                "metric": "accuracy",
                "value": correct.float().mean().item(),
                "correct": stats.pack(correct),
                "data_source": self.test.source_kind,
                "discarded_per_layer": discarded_per_layer(model, self.test.x[:100]),
            }
        ]

    def figures(self, table: pd.DataFrame) -> list[Path]:
        percent = table[table.seed_offset == 0].assign(
            **{
                "train compression (%)": table.train_compress.mul(100).round().astype(int),
                "test compression (%)": table.test_compress.mul(100).round().astype(int),
            }
        )
        return plots.heatmap(
            percent,
            index="train compression (%)",
            columns="test compression (%)",
            values="value",
            stem=self.figure(),
            title=f"{self.p.model}, CIFAR-10 ({self.test.source_kind}): test accuracy",
        )

    def summary(self, table: pd.DataFrame) -> str:
        grid = table.pivot_table(index=["train_compress", "seed_offset"], columns="test_compress", values="value")
        return f"test accuracy:\n{text(grid)}\n\nfraction of each layer's spectrum discarded at each test rate:\n{text(bands(table))}"

    def finding(self, table: pd.DataFrame) -> stats.Finding:
        return finding(table, self.args.seed)


main = CompressionMismatch.main

if __name__ == "__main__":
    sys.exit(command_line(main))
