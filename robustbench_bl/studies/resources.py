"""Time per epoch and memory against compression (first seed, Fig. 13 and Table 2).

Trains a freshly initialized band-limited CNN for one epoch at each compression rate (weights do
not change the cost, so no checkpoints), alternating with the same model at 0% so that time is
normalized side by side, and reports time per epoch and memory relative to 0%, with plain
nn.Conv2d for reference. Memory is the CUDA peak on a GPU
and the bytes saved for backward on a CPU; an fp16 (autocast) column runs on a GPU only.
Finding to check: time and memory fall as compression rises (the paper: 0.7x time, 0.6x memory at 50%).

    python studies/resources.py                 # quick preset (default), <= 10 min on a CPU
    python studies/resources.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from robustbench_bl import data, models, plots
from robustbench_bl.cli import Study, command_line, parse_args, preset
from robustbench_bl.runtime.profiling import relative_costs
from robustbench_bl.runtime.sweep import run
from robustbench_bl.spectral import bandlimit

NAME = "resources"

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(model="lenet", train=256, rates=(0.0, 0.5), repeats=1),
    "quick": dict(model="lenet", train=2000, rates=(0.0, 0.25, 0.5, 0.75, 0.85), repeats=5),
    "paper": dict(model="resnet18", train=50000, rates=(0.0, 0.1, 0.25, 0.5, 0.75, 0.85), repeats=1),
}


def finding(table: pd.DataFrame) -> str:
    """Time and memory relative to 0% per rate (fp32), and whether both fall as compression rises."""
    bl = table[(table.impl == "band-limited") & (table.precision == "fp32")]
    ratios = bl.pivot_table(index="compress_rate", columns="metric", values="relative")
    falls = all(ratios[m].iloc[-1] < ratios[m].iloc[0] and (ratios[m].iloc[1:] < 1).all() for m in ratios)
    conv = table[table.impl == "conv"].set_index(["precision", "metric"]).relative
    text = "; ".join(
        f"{r:.0%}: time {row.epoch_seconds:.2f}x, memory {row.memory_bytes:.2f}x" for r, row in ratios.iterrows()
    )
    verdict = "HOLDS" if falls else "DOES NOT HOLD"
    return (
        f"Finding ('time and memory fall with compression') {verdict} (fp32, relative to 0%): {text}; "
        f"plain nn.Conv2d: time {conv['fp32', 'epoch_seconds']:.2f}x, memory {conv['fp32', 'memory_bytes']:.2f}x"
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p = preset(PRESETS, args)
    study = Study.from_args(args)
    train = data.cifar10("train", root=args.data).at_most(p["train"], seed=args.seed)
    print(f"data: {len(train)} training images from {train.source}; device {args.device}")
    precisions = ["fp32", "fp16"] if args.device.type == "cuda" else ["fp32"]
    if args.device.type != "cuda":
        print(
            "fp16: skipped, it needs a CUDA device (CPU autocast supports bfloat16 only, and CPU fp16 convolutions are slow)"
        )

    def build(cell: dict[str, Any], compress_rate: float | None) -> torch.nn.Module:
        torch.manual_seed(cell["seed"])
        model = models.make(cell["model"], train.num_classes, train.x.shape[1])
        return (model if compress_rate is None else bandlimit(model, compress_rate=compress_rate)).to(args.device)

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        model = build(cell, cell["compress_rate"] if cell["impl"] == "band-limited" else None)
        return relative_costs(
            model, build(cell, 0.0), train.x, train.y, repeats=cell["repeats"], fp16=cell["precision"] == "fp16"
        )

    base = {
        "study": NAME,
        "dataset": "cifar10",
        "model": p["model"],
        "device": args.device.type,
        "train_size": len(train),
        "data_source": train.source_kind,
        "repeats": p["repeats"],
        "seed": args.seed,
    }
    cells = [{**base, "impl": "conv", "compress_rate": 0.0, "precision": prec} for prec in precisions]
    cells += [
        {**base, "impl": "band-limited", "compress_rate": r, "precision": prec}
        for prec in precisions
        for r in p["rates"]
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table[(table.model == p["model"]) & (table.device == args.device.type) & (table.train_size == len(train))]
    paths = plots.lines(
        table[table.impl == "band-limited"],
        x="compress_rate",
        y="relative",
        hue="metric",
        col="precision",
        stem=study.figure(),
        xlabel="compression rate",
        ylabel="relative to 0% compression",
        title=f"{p['model']} on {args.device.type}: time per epoch and memory ({table.memory_kind.iloc[0]})",
    )
    print(
        table.pivot_table(
            index=["impl", "compress_rate"], columns=["precision", "metric"], values="relative"
        ).to_string(float_format=lambda v: f"{v:.2f}")
    )
    study.conclude(finding(table), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
