"""Physical compression of each layer per epoch at a fixed energy level (first paper, Fig. 4).

Trains a CNN with energy-based band-limiting and, after every epoch (epoch 0: at
initialization), records the fraction of coefficients each layer discards on a fixed batch of
test images, over several training seeds. Training is the measurement here, so the results store
(not the checkpoint store) keeps it. Finding to check, as the paper states it ("the longer we train
the models with the same energy preserved, the smaller compression is applied", the rate
"calculated based on the size of the intermediate results for the FFT based convolution"): the
network's compression (each layer's discarded fraction weighted by the spectral coefficients it
transforms) falls from initialization to the end, with a 95% t interval over training seeds. Each
layer's path is a note, marked where no trained weight shapes its input (the first layer; in a
FastNet with the frozen whitening stem, the second too). The quick preset trains full-width
FastNets with the zoo's recipe on a subset. Band steps are coarse on small maps: one step discards
5-11 more points of a 31-33-pixel map, 11-22 of a 15-pixel map, 30 of a 7-pixel one (LeNet's conv2:
15-20), so a single layer often stays on its step; `--model lenet` runs the LeNet design.

    python studies/energy_dynamics.py                 # quick preset (default)
    python studies/energy_dynamics.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
from torch import nn

from robustbench_bl import data, plots
from robustbench_bl.cli import command_line
from robustbench_bl.evaluation import stats
from robustbench_bl.models.fastnet import FastNet
from robustbench_bl.studies.bands import layer_fractions, layer_sizes
from robustbench_bl.studies.study import Cell, Row, Study, text
from robustbench_bl.training import budget, build_model, load_train_data, recipe
from robustbench_bl.training.fast import fit


@dataclass(frozen=True)
class Preset:
    """`probe`: test images the fractions are measured on; `seeds`: training seed offsets;
    `batch_size`: None for the model's recipe (`training.RECIPES`)."""

    model: str
    train: int
    probe: int
    epochs: int
    energies: tuple[float, ...]
    seeds: tuple[int, ...]
    batch_size: int | None = None


PRESETS = {
    "smoke": Preset("lenet", train=200, probe=64, epochs=2, energies=(0.95,), seeds=(0, 1)),
    # batch 512, half the zoo's: 9 optimizer steps an epoch on 5,000 images instead of 4
    "quick": Preset("fastnet", 5000, 256, 4, energies=(0.9, 0.95), seeds=(0, 1, 2), batch_size=512),
    "paper": Preset("resnet18", train=50000, probe=256, epochs=350, energies=(0.9,), seeds=(0, 1, 2)),
}


PAPER = "first paper Fig. 4: compression falls during training, no number"


def fixed_input_layers(model: nn.Module, layers: list[str]) -> set[str]:
    """The band-limited layers (module names, in forward order) whose input no trained weight shapes:
    the first, and the second behind a FastNet's frozen whitening."""
    fixed = set(layers[:1])
    if isinstance(model, FastNet) and model.stem == "whiten":
        fixed.update(layers[1:2])
    return fixed


def network_compression(table: pd.DataFrame) -> pd.DataFrame:
    """Per energy, seed and epoch, the fraction of all spectral coefficients the network discards:
    each layer's discarded fraction weighted by the coefficients it transforms (Fig. 4's measure)."""
    weighted = table.assign(discarded=table.value * table.coefficients)
    sums = weighted.groupby(["energy", "seed", "epoch"])[["discarded", "coefficients"]].sum()
    return (sums.discarded / sums.coefficients).rename("value").reset_index()


def _path(by_seed: pd.DataFrame) -> str:
    """Mean over seeds at initialization, halfway and the end, e.g. '56.0% -> 50.1% -> 48.3%'."""
    middle = by_seed.columns[len(by_seed.columns) // 2]
    return " -> ".join(f"{by_seed[e].mean():.1%}" for e in (by_seed.columns[0], middle, by_seed.columns[-1]))


def finding(table: pd.DataFrame) -> stats.Finding:
    """Per energy, the fall of the network's compression (Fig. 4's size-weighted measure) from
    initialization to the last epoch, with a t interval over training seeds; each layer's path is a
    note (one band step on a 15-pixel map is ~14 points, so a layer often stays on its step)."""
    claims, notes = [], []
    for energy, part in network_compression(table).groupby("energy"):
        by_seed = part.pivot_table(index="seed", columns="epoch", values="value")
        fall = (by_seed.iloc[:, 0] - by_seed.iloc[:, -1]).to_numpy()
        label = f"energy {energy:g}, whole network: fall init -> end over {len(fall)} seeds ({_path(by_seed)}, mean over seeds)"
        claims.append(stats.Claim.measured(label, partial(stats.mean_interval, fall), paper=PAPER))
    for (energy, layer, module, learned), part in table.groupby(["energy", "layer", "module", "input_learned"]):
        by_seed = part.pivot_table(index="seed", columns="epoch", values="value")
        fall = by_seed.iloc[:, 0] - by_seed.iloc[:, -1]
        source = "learned input" if learned else "input not learned"
        notes.append(f"energy {energy:g} {layer} ({module}, {source}): {_path(by_seed)}, fall {fall.mean():+.3f}")
    return stats.finding(
        "the network's compression falls during training",
        claims,
        "(the size-weighted discarded fraction at initialization minus at the end of training, 95% t intervals over training seeds)",
        notes,
    )


class EnergyDynamics(Study[Preset]):
    name = "energy_dynamics"
    title = __doc__.splitlines()[0]
    presets = PRESETS

    def prepare(self) -> None:
        self.size = budget(self.p.train, self.p.epochs, len(data.cifar10("train", root=self.args.data)))
        self.probe = data.cifar10("test", root=self.args.data).at_most(self.p.probe, seed=self.args.seed)
        print(f"data: probe batch of {len(self.probe)} test images from {self.probe.source}")

    def cells(self) -> list[Cell]:
        fixed = {"study": self.name, "dataset": "cifar10", "model": self.p.model, "probe": len(self.probe)}
        size = {"train_size": self.size["limit"], "epochs": self.size["epochs"]}
        return [
            {**fixed, "energy": e, **size, "seed": self.args.seed + s} for e in self.p.energies for s in self.p.seeds
        ]

    def measure(self, cell: Cell) -> list[Row]:
        config = recipe(
            cell["model"],
            "cifar10",
            energy=cell["energy"],
            epochs=cell["epochs"],
            limit=cell["train_size"],
            seed=cell["seed"],
            **({} if self.p.batch_size is None else {"batch_size": self.p.batch_size}),
        )
        dataset = load_train_data(config, self.args.data)
        model = build_model(config, dataset)
        rows: list[Row] = []

        sizes = layer_sizes(model, self.probe.x)

        def record(epoch: int, model: nn.Module) -> None:
            kept = layer_fractions(model, self.probe.x)
            fixed = fixed_input_layers(model, list(kept))
            for i, (module, share) in enumerate(kept.items()):
                layer = {
                    "layer": f"conv{i + 1}",
                    "module": module,
                    "input_learned": module not in fixed,
                    "coefficients": sizes[module],
                }
                rows.append(
                    {
                        "metric": "compression",
                        "epoch": epoch,
                        **layer,
                        "data_source": dataset.source_kind,
                        "value": 1.0 - share,
                    }
                )

        fit(
            model,
            dataset,
            config,
            device=self.args.device,
            progress=self.progress,
            on_epoch=lambda e, m: record(e + 1, m),
        )
        return rows

    def figures(self, table: pd.DataFrame) -> list[Path]:
        return plots.lines(
            table,
            x="epoch",
            y="value",
            hue="layer",
            col="energy",
            stem=self.figure(),
            xlabel="epoch (0: at initialization)",
            ylabel="fraction of coefficients discarded",
            title=f"{self.p.model}, CIFAR-10: per-layer compression under energy-based band-limiting",
        )

    def summary(self, table: pd.DataFrame) -> str:
        mean = table.pivot_table(index="epoch", columns=["energy", "layer"], values="value", aggfunc="mean")
        return text(mean)

    def finding(self, table: pd.DataFrame) -> stats.Finding:
        return finding(table)


main = EnergyDynamics.main

if __name__ == "__main__":
    sys.exit(command_line(main))
