"""Accuracy against compression, static against energy-based band-limiting (first paper, Table 1, Fig. 3).

Trains the same CNN with static compression (a fixed fraction of coefficients discarded in
every layer) and with energy-based compression (the smallest band keeping a fraction of the
input's spectral energy), and plots test accuracy against the fraction of coefficients the
layers actually discard (the zoo's FastNets: two training seeds at 0% and 50%). Findings to check,
each with a 95% paired-bootstrap interval over the same test images, in the paper's direction:
accuracy falls gracefully (at most 2 points lost at 50%, per seed), and energy-based compression
*loses* to static compression at an equal fraction discarded (static accuracy interpolated linearly
between its neighbouring models). The first paper, section 4.1: past 50% "the fixed compression
method achieves the max test accuracy of 92.32% ... whereas the preserved energy method results in
significant losses (e.g., ResNet-18 reaches 83.37% on CIFAR-10)".

    python studies/accuracy_vs_compression.py                 # quick preset (default), <= 15 min on a CPU
    python studies/accuracy_vs_compression.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from robustbench_bl import plots
from robustbench_bl.cli import command_line
from robustbench_bl.evaluation import stats
from robustbench_bl.studies.bands import discarded, layer_fractions
from robustbench_bl.studies.study import Cell, Row, TrainedPreset, TrainedStudy, text
from robustbench_bl.training import TrainConfig, budget, predict, recipe

#: Allowed accuracy loss at 50% static compression for the finding to count as holding.
GRACEFUL = 0.02
PAPER_GRACEFUL = "first paper Table 1: a few points lost at 50% (ResNet-18, full CIFAR-10, 350 epochs)"
PAPER_ENERGY = "first paper 4.1: static 92.32% past 50%, energy 'significant losses' (ResNet-18 83.37% at 90% energy)"

Key = tuple[str, float, int]  # (scheme, band parameter, training seed offset)


@dataclass(frozen=True)
class Preset(TrainedPreset):
    """`rates` / `energies`: (band parameter, training seed offset) of the static / energy-based models."""

    rates: tuple[tuple[float, int], ...]
    energies: tuple[tuple[float, int], ...]


PRESETS = {
    "smoke": Preset("lenet", 200, 100, 1, rates=((0.0, 0), (0.5, 0), (0.85, 0)), energies=((0.95, 0),)),
    # The zoo's FastNets (no training); the whole offline test set with RBL_DATA, else the sample.
    "quick": Preset(
        "fastnet", 50000, 10000, 6, rates=((0.0, 0), (0.5, 0), (0.85, 0), (0.0, 1), (0.5, 1)), energies=((0.95, 0),)
    ),
    "paper": Preset(
        "resnet18",
        50000,
        10000,
        350,
        rates=tuple((r, s) for s in (0, 1) for r in (0.0, 0.1, 0.25, 0.5, 0.75, 0.85)),
        energies=tuple((e, s) for s in (0, 1) for e in (0.999, 0.995, 0.99, 0.98, 0.95, 0.9)),
    ),
}


def energy_claim(
    outcomes: dict[Key, np.ndarray], fraction: dict[Key, float], static: list[tuple[float, Key]], k: Key, seed: int
) -> stats.Claim | None:
    """Energy-based model `k` minus static accuracy interpolated linearly at the fraction `k`
    discards (None when that fraction lies outside the static models' range)."""
    if len(static) < 2 or not static[0][0] <= fraction[k] <= static[-1][0]:
        return None
    (f0, k0), (f1, k1) = next((a, b) for a, b in itertools.pairwise(static) if a[0] <= fraction[k] <= b[0])
    w = (fraction[k] - f0) / (f1 - f0) if f1 > f0 else 0.0
    mean = {key: float(outcomes[key].mean()) for key in (k, k0, k1)}
    label = (
        f"seed +{k[2]}: energy {k[1]:g} ({fraction[k]:.0%} discarded, {mean[k]:.3f}) - static "
        f"interpolated at {fraction[k]:.0%} ({(1 - w) * mean[k0] + w * mean[k1]:.3f})"
    )
    interval = partial(stats.paired_bootstrap, outcomes, lambda a: a[k] - ((1 - w) * a[k0] + w * a[k1]), seed=seed)
    return stats.Claim.measured(label, interval, paper=PAPER_ENERGY, direction="below")


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """Per seed: accuracy at 50% static minus at 0% against the allowed loss, and each energy-based
    model minus static accuracy interpolated at the fraction it discards; paired-bootstrap intervals."""
    n = int(table.n.iloc[0])
    outcomes = {(r.scheme, r.level, r.seed_offset): stats.unpack(r.correct, n) for r in table.itertuples()}
    fraction = {(r.scheme, r.level, r.seed_offset): r.discarded for r in table.itertuples()}
    claims = []
    for s in sorted({k[2] for k in outcomes}):
        static = sorted((fraction[k], k) for k in outcomes if k[0] == "static" and k[2] == s)
        plain, half = ("static", 0.0, s), ("static", 0.5, s)
        if plain in outcomes and half in outcomes:
            label = (
                f"seed +{s}: static 50% ({fraction[half]:.0%} discarded, {outcomes[half].mean():.3f}) - 0% "
                f"({outcomes[plain].mean():.3f})"
            )
            interval = stats.paired_difference(outcomes, half, plain, seed)
            claims.append(stats.Claim.measured(label, interval, threshold=-GRACEFUL, paper=PAPER_GRACEFUL))
        energy = (
            energy_claim(outcomes, fraction, static, k, seed)
            for k in sorted(outcomes)
            if k[0] == "energy" and k[2] == s
        )
        claims += [c for c in energy if c is not None]
    return stats.finding(
        f"accuracy falls gracefully (<= {GRACEFUL:.0%} lost at 50% static) and energy-based loses to static at equal "
        "discarded fraction",
        claims,
        f"on {n} test images, 95% paired-bootstrap intervals",
    )


class AccuracyVsCompression(TrainedStudy[Preset, Key]):
    name = "accuracy_vs_compression"
    title = __doc__.splitlines()[0]
    presets = PRESETS

    def configs(self, train_size: int) -> dict[Key, TrainConfig]:
        p, seed = self.p, self.args.seed
        size = budget(p.train, p.epochs, train_size)
        static = {
            ("static", r, s): recipe(p.model, "cifar10", compress_rate=r, seed=seed + s, **size) for r, s in p.rates
        }
        return static | {
            ("energy", e, s): recipe(p.model, "cifar10", energy=e, seed=seed + s, **size) for e, s in p.energies
        }

    def cells(self) -> list[Cell]:
        return [
            self.cell(self.p.model, model_key=key, scheme=scheme, level=level, seed_offset=s)
            for (scheme, level, s), key in self.keys.items()
        ]

    def measure(self, cell: Cell) -> list[Row]:
        model, test = self.models[cell["scheme"], cell["level"], cell["seed_offset"]], self.test
        fractions = layer_fractions(model, test.x[:500])
        correct = predict(model, test.x).cpu() == test.y.cpu()
        return [
            {
                "metric": "accuracy",
                "value": correct.float().mean().item(),
                "correct": stats.pack(correct),
                "discarded": discarded(fractions),
                "data_source": test.source_kind,
                **{f"kept:{name}": f for name, f in fractions.items()},
            }
        ]

    def figures(self, table: pd.DataFrame) -> list[Path]:
        return plots.lines(
            table,
            x="discarded",
            y="value",
            hue="scheme",
            style="seed_offset",
            stem=self.figure(),
            xlabel="fraction of coefficients discarded (mean over layers)",
            ylabel="test accuracy",
            title=f"{self.p.model}, CIFAR-10 ({self.test.source_kind}): static vs energy-based compression",
        )

    def summary(self, table: pd.DataFrame) -> str:
        shown = table[["scheme", "level", "seed_offset", "discarded", "value"]].rename(columns={"value": "accuracy"})
        return text(shown, index=False)

    def finding(self, table: pd.DataFrame) -> stats.Finding:
        return finding(table, self.args.seed)


main = AccuracyVsCompression.main

if __name__ == "__main__":
    sys.exit(command_line(main))
