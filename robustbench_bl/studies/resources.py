"""Time per epoch and memory against compression (first paper, Fig. 13 and Table 2).

Trains a freshly initialized band-limited CNN for one epoch at each compression rate (weights do
not change the cost, so no checkpoints), alternating with the same model at 0% so that time is
normalized side by side, and reports time per epoch and memory relative to 0%, with plain
nn.Conv2d for reference. Memory is the CUDA peak on a GPU
and the bytes saved for backward on a CPU; an fp16 (autocast) column runs on a GPU only.
Finding to check: time and memory fall as compression rises (the paper: 0.7x time, 0.6x memory at
50%), the time ratio with a 95% t interval over the side-by-side repeats.

    python studies/resources.py                 # quick preset (default), <= 15 min on a CPU
    python studies/resources.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from robustbench_bl import data, models, plots
from robustbench_bl.cli import command_line
from robustbench_bl.evaluation import stats
from robustbench_bl.runtime.profiling import relative_costs
from robustbench_bl.spectral import bandlimit
from robustbench_bl.studies.study import Cell, Row, Study, text


@dataclass(frozen=True)
class Preset:
    """`train`: images of the timed epoch; `repeats`: side-by-side pairs per rate."""

    model: str
    train: int
    rates: tuple[float, ...]
    repeats: int


PRESETS = {
    "smoke": Preset("lenet", train=256, rates=(0.0, 0.5), repeats=2),
    "quick": Preset("lenet", train=2000, rates=(0.0, 0.25, 0.5, 0.75, 0.85), repeats=5),
    "paper": Preset("resnet18", train=50000, rates=(0.0, 0.1, 0.25, 0.5, 0.75, 0.85), repeats=3),
}


PAPER = "first paper Fig. 13, Table 2: 0.7x time and 0.6x memory at 50% (GPU)"


def speedup(logs: np.ndarray, level: float) -> tuple[float, float, float]:
    """-mean of the log time ratios of side-by-side pairs with its t interval (exact for one pair)."""
    if len(logs) < 2:
        exact = float(-logs.mean())
        return exact, exact, exact
    mean, low, high = stats.mean_interval(logs, level)
    return -mean, -high, -low


def finding(table: pd.DataFrame) -> stats.Finding:
    """Per rate > 0 (fp32): time per epoch relative to 0% with a 95% t interval over the side-by-side
    pairs (on the log ratio), and memory relative to 0% (bytes are exact: no interval); each must be
    below 1. Plain nn.Conv2d as a note."""
    bl = table[(table.impl == "band-limited") & (table.precision == "fp32") & (table.compress_rate > 0)]
    claims = []
    for r in bl.sort_values("compress_rate").itertuples():
        if r.metric == "epoch_seconds":
            logs = np.log(json.loads(r.pair_ratios))
            label = f"{r.compress_rate:.0%}: time per epoch x{r.relative:.2f} of 0% ({len(logs)} pairs), -log ratio"
            claims.append(stats.Claim.measured(label, partial(speedup, logs), paper=PAPER))
        else:
            exact = float(-np.log(r.relative))
            label = f"{r.compress_rate:.0%}: memory ({r.memory_kind}) x{r.relative:.2f} of 0% (exact), -log ratio"
            claims.append(stats.Claim(label, exact, exact, exact, paper=PAPER))
    conv = table[table.impl == "conv"].set_index(["precision", "metric"]).relative
    return stats.finding(
        "time and memory fall with compression",
        claims,
        "(fp32, relative to 0% measured side by side; needs -log ratio > 0, i.e. below 1x)",
        [f"plain nn.Conv2d: time {conv['fp32', 'epoch_seconds']:.2f}x, memory {conv['fp32', 'memory_bytes']:.2f}x"],
    )


class Resources(Study[Preset]):
    name = "resources"
    title = __doc__.splitlines()[0]
    presets = PRESETS

    def prepare(self) -> None:
        device = self.args.device
        self.train = data.cifar10("train", root=self.args.data).at_most(self.p.train, seed=self.args.seed)
        print(f"data: {len(self.train)} training images from {self.train.source}; device {device}")
        self.precisions = ["fp32", "fp16"] if device.type == "cuda" else ["fp32"]
        if device.type != "cuda":
            print(
                "fp16: skipped, it needs a CUDA device (CPU autocast supports bfloat16 only, and CPU fp16 "
                "convolutions are slow)"
            )

    def cells(self) -> list[Cell]:
        base = {
            "study": self.name,
            "dataset": "cifar10",
            "model": self.p.model,
            "device": self.args.device.type,
            "train_size": len(self.train),
            "data_source": self.train.source_kind,
            "repeats": self.p.repeats,
            "seed": self.args.seed,
        }
        cells = [{**base, "impl": "conv", "compress_rate": 0.0, "precision": prec} for prec in self.precisions]
        return cells + [
            {**base, "impl": "band-limited", "compress_rate": r, "precision": prec}
            for prec in self.precisions
            for r in self.p.rates
        ]

    def build(self, cell: Cell, compress_rate: float | None) -> torch.nn.Module:
        """The cell's model freshly initialized from its seed, band-limited at `compress_rate` (None: plain)."""
        torch.manual_seed(cell["seed"])
        model = models.make(cell["model"], self.train.num_classes, self.train.x.shape[1])
        return (model if compress_rate is None else bandlimit(model, compress_rate=compress_rate)).to(self.args.device)

    def measure(self, cell: Cell) -> list[Row]:
        model = self.build(cell, cell["compress_rate"] if cell["impl"] == "band-limited" else None)
        x, y = self.train.x, self.train.y
        return relative_costs(
            model, self.build(cell, 0.0), x, y, repeats=cell["repeats"], fp16=cell["precision"] == "fp16"
        )

    def figures(self, table: pd.DataFrame) -> list[Path]:
        return plots.lines(
            table[table.impl == "band-limited"],
            x="compress_rate",
            y="relative",
            hue="metric",
            col="precision",
            stem=self.figure(),
            xlabel="compression rate",
            ylabel="relative to 0% compression",
            title=f"{self.p.model} on {self.args.device.type}: time per epoch and memory ({table.memory_kind.iloc[0]})",
        )

    def summary(self, table: pd.DataFrame) -> str:
        relative = table.pivot_table(
            index=["impl", "compress_rate"], columns=["precision", "metric"], values="relative"
        )
        return text(relative, 2)

    def finding(self, table: pd.DataFrame) -> stats.Finding:
        return finding(table)


main = Resources.main

if __name__ == "__main__":
    sys.exit(command_line(main))
