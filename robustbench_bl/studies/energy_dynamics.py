"""Physical compression of each layer per epoch at a fixed energy level (first paper, Fig. 4).

Trains a CNN with energy-based band-limiting and, after every epoch (epoch 0: at
initialization), records the fraction of coefficients each layer discards on a fixed batch of
test images, over several training seeds. Training is the measurement here, so the results store
(not the checkpoint store) keeps it. Finding to check (the direction the paper states): the
compression of the layers whose input is learned (all but the first, which sees the fixed images)
falls during training, judged by the fall from initialization to the end with a 95% t interval
over training seeds. LeNet in the quick preset: the measurement is a whole training run per seed.

    python studies/energy_dynamics.py                 # quick preset (default), <= 15 min on a CPU
    python studies/energy_dynamics.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd
from torch import nn

from robustbench_bl import data, plots
from robustbench_bl.cli import command_line, parse_args
from robustbench_bl.evaluation import stats
from robustbench_bl.runtime.output import RunFolder
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.bands import layer_fractions
from robustbench_bl.studies.common import preset
from robustbench_bl.training import budget, build_model, load_train_data, recipe, train

NAME = "energy_dynamics"

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(model="lenet", train=200, probe=64, epochs=2, energies=(0.95,), seeds=(0, 1)),
    "quick": dict(model="lenet", train=3000, probe=256, epochs=8, energies=(0.99, 0.95), seeds=(0, 1, 2, 3, 4)),
    "paper": dict(model="resnet18", train=50000, probe=256, epochs=350, energies=(0.9,), seeds=(0, 1, 2)),
}


PAPER = "first paper Fig. 4: compression falls during training, no number"


def finding(table: pd.DataFrame) -> stats.Finding:
    """Per energy and learned-input layer (every layer after the first), the fall of its discarded
    fraction from initialization to the last epoch, with a t interval over training seeds."""
    claims, notes = [], []
    last = table.epoch.max()
    for (energy, layer), part in table.groupby(["energy", "layer"]):
        by_seed = part.pivot_table(index="seed", columns="epoch", values="value")
        fall = (by_seed[0] - by_seed[last]).to_numpy()
        path = f"{by_seed[0].mean():.1%} -> {by_seed[by_seed.columns[len(by_seed.columns) // 2]].mean():.1%} -> {by_seed[last].mean():.1%}"
        if layer == "conv1":
            notes.append(f"energy {energy:g} {layer} (fixed input images, not judged): {path}")
            continue
        est, lo, hi = stats.mean_interval(fall)
        label = f"energy {energy:g} {layer}: fall init -> end over {len(fall)} seeds ({path}, mean over seeds)"
        claims.append(stats.Claim(label, est, lo, hi, paper=PAPER))
    return stats.finding(
        "per-layer compression falls during training",
        claims,
        "(the discarded fraction at initialization minus at the end of training, 95% t intervals over training seeds)",
        notes,
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p = preset(PRESETS, args)
    study = RunFolder.from_args(args)
    train_size = len(data.cifar10("train", root=args.data))
    size = budget(p["train"], p["epochs"], train_size)
    probe = data.cifar10("test", root=args.data).at_most(p["probe"], seed=args.seed)
    print(f"data: probe batch of {len(probe)} test images from {probe.source}")

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        config = recipe(
            cell["model"],
            "cifar10",
            energy=cell["energy"],
            epochs=cell["epochs"],
            limit=cell["train_size"],
            seed=cell["seed"],
        )
        dataset = load_train_data(config, args.data)
        model = build_model(config, dataset)
        rows: list[dict[str, Any]] = []

        def record(epoch: int, model: nn.Module) -> None:
            for i, (module, kept) in enumerate(layer_fractions(model, probe.x).items()):
                rows.append(
                    {
                        "metric": "compression",
                        "epoch": epoch,
                        "layer": f"conv{i + 1}",
                        "module": module,
                        "value": 1.0 - kept,
                        "data_source": dataset.source_kind,
                    }
                )

        record(0, model.to(args.device))
        train(
            model, dataset, config, device=args.device, progress=not args.quiet, on_epoch=lambda e, m: record(e + 1, m)
        )
        return rows

    cells = [
        {
            "study": NAME,
            "dataset": "cifar10",
            "model": p["model"],
            "energy": e,
            "train_size": size["limit"],
            "epochs": size["epochs"],
            "probe": len(probe),
            "seed": args.seed + s,
        }
        for e in p["energies"]
        for s in p["seeds"]
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table[
        (table.model == p["model"])
        & (table.epochs == size["epochs"])
        & table.energy.isin(p["energies"])
        & table.seed.isin([args.seed + s for s in p["seeds"]])
    ]
    paths = plots.lines(
        table,
        x="epoch",
        y="value",
        hue="layer",
        col="energy",
        stem=study.figure(),
        xlabel="epoch (0: at initialization)",
        ylabel="fraction of coefficients discarded",
        title=f"{p['model']}, CIFAR-10: per-layer compression under energy-based band-limiting",
    )
    print(
        table.pivot_table(index="epoch", columns=["energy", "layer"], values="value", aggfunc="mean").to_string(
            float_format=lambda v: f"{v:.3f}"
        )
    )
    study.conclude(finding(table), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
