"""Accuracy against compression, static against energy-based band-limiting (first paper, Table 1, Fig. 3).

Trains the same CNN with static compression (a fixed fraction of coefficients discarded in
every layer) and with energy-based compression (the smallest band keeping a fraction of the
input's spectral energy), and plots test accuracy against the fraction of coefficients the
layers actually discard (the zoo's FastNets: two training seeds at 0% and 50%, 25% where the zoo ships
it). Findings to check, each with a 95% paired-bootstrap interval over the same test images, in the
paper's direction: accuracy degrades as Table 1's curve does (each static model of 0-50% loses at most
the paper's loss at the fraction it actually discards, + 1 point; per seed), and energy-based compression
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
from robustbench_bl.studies.common import ZOO_EPOCHS, zoo_only
from robustbench_bl.studies.study import Cell, Row, TrainedPreset, TrainedStudy, text
from robustbench_bl.training import TrainConfig, budget, predict, recipe

#: First paper, Table 1 (ResNet-18, CIFAR-10, 350 epochs): test accuracy at 0 / 10 / ... / 50% static compression.
TABLE1 = ((0.0, 0.9369), (0.1, 0.9342), (0.2, 0.9324), (0.3, 0.9289), (0.4, 0.9261), (0.5, 0.9232))
#: A static model may lose the paper's loss at the fraction it discards plus this much (another
#: network, recipe and test set) for the graceful-loss claim to hold.
ALLOWANCE = 0.01
PAPER_GRACEFUL = "first paper Table 1: 93.69 / 93.42 / 93.24 / 92.89 / 92.61 / 92.32% at 0-50% (ResNet-18, 350 epochs)"
PAPER_ENERGY = "first paper 4.1: static 92.32% past 50%, energy 'significant losses' (ResNet-18 83.37% at 90% energy)"

Key = tuple[str, float, int]  # (scheme, band parameter, training seed offset)


@dataclass(frozen=True)
class Preset(TrainedPreset):
    """`rates` / `energies`: (band parameter, training seed offset) of the static / energy-based models;
    `optional`: static models used only where the zoo ships them (never trained by the study)."""

    rates: tuple[tuple[float, int], ...]
    energies: tuple[tuple[float, int], ...]
    optional: tuple[tuple[float, int], ...] = ()


PRESETS = {
    "smoke": Preset("lenet", 200, 100, 1, rates=((0.0, 0), (0.5, 0), (0.85, 0)), energies=((0.95, 0),)),
    # The zoo's FastNets (no training); the whole offline test set with RBL_DATA, else the sample.
    "quick": Preset(
        "fastnet",
        50000,
        10000,
        ZOO_EPOCHS,
        rates=((0.0, 0), (0.5, 0), (0.85, 0), (0.0, 1), (0.5, 1)),
        energies=((0.95, 0),),
        optional=((0.25, 0),),
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


def paper_loss(fraction: float) -> float:
    """Table 1's accuracy loss against 0% at a discarded `fraction`: linear between its rates, and
    extended along its last segment past 50% (the static models here discard more than their rate)."""
    rates, accuracy = zip(*TABLE1)
    slope = (accuracy[-2] - accuracy[-1]) / (rates[-1] - rates[-2])
    if fraction <= rates[-1]:
        return float(accuracy[0] - np.interp(fraction, rates, accuracy))
    return accuracy[0] - accuracy[-1] + slope * (fraction - rates[-1])


def graceful_claims(
    outcomes: dict[Key, np.ndarray], fraction: dict[Key, float], s: int, seed: int
) -> list[stats.Claim]:
    """Per static model of Table 1's range (rate in (0, 50%]) and seed `s`: its accuracy minus the plain
    model's, against minus (the paper's loss at the fraction it actually discards + ALLOWANCE)."""
    plain, claims = ("static", 0.0, s), []
    for k in sorted(k for k in outcomes if k[0] == "static" and k[2] == s and 0 < k[1] <= TABLE1[-1][0]):
        if plain not in outcomes:
            break
        loss = paper_loss(fraction[k])
        label = (
            f"seed +{s}: static {k[1]:.0%} ({fraction[k]:.0%} discarded, {outcomes[k].mean():.3f}) - 0% "
            f"({outcomes[plain].mean():.3f}); the paper loses {loss:.2%} at {fraction[k]:.0%}"
        )
        interval = stats.paired_difference(outcomes, k, plain, seed)
        claims.append(stats.Claim.measured(label, interval, threshold=-(loss + ALLOWANCE), paper=PAPER_GRACEFUL))
    return claims


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """Per seed: accuracy at 50% static minus at 0% against the allowed loss, and each energy-based
    model minus static accuracy interpolated at the fraction it discards; paired-bootstrap intervals."""
    n = int(table.n.iloc[0])
    outcomes = {(r.scheme, r.level, r.seed_offset): stats.unpack(r.correct, n) for r in table.itertuples()}
    fraction = {(r.scheme, r.level, r.seed_offset): r.discarded for r in table.itertuples()}
    claims = []
    for s in sorted({k[2] for k in outcomes}):
        static = sorted((fraction[k], k) for k in outcomes if k[0] == "static" and k[2] == s)
        claims += graceful_claims(outcomes, fraction, s, seed)
        energy = (
            energy_claim(outcomes, fraction, static, k, seed)
            for k in sorted(outcomes)
            if k[0] == "energy" and k[2] == s
        )
        claims += [c for c in energy if c is not None]
    return stats.finding(
        "accuracy degrades smoothly with static compression (Table 1) and energy-based compression loses to static "
        "at an equal discarded fraction (section 4.1)",
        claims,
        f"on {n} test images and {len({k[2] for k in outcomes})} training seed(s), 95% paired-bootstrap intervals; a "
        f"static model may lose the paper's loss at the fraction it discards + {ALLOWANCE:.0%}",
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
        static |= zoo_only(
            {
                ("static", r, s): recipe(p.model, "cifar10", compress_rate=r, seed=seed + s, **size)
                for r, s in p.optional
            }
        )
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
