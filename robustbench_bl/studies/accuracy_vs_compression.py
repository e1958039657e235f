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
from collections.abc import Sequence
from typing import Any

import pandas as pd

from robustbench_bl import plots
from robustbench_bl.cli import command_line, parse_args
from robustbench_bl.evaluation import stats
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.output import RunFolder
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.bands import discarded, layer_fractions
from robustbench_bl.studies.common import preset, trained_models
from robustbench_bl.training import TrainConfig, budget, predict, recipe

NAME = "accuracy_vs_compression"
#: Allowed accuracy loss at 50% static compression for the finding to count as holding.
GRACEFUL = 0.02
PAPER_GRACEFUL = "first paper Table 1: a few points lost at 50% (ResNet-18, full CIFAR-10, 350 epochs)"
PAPER_ENERGY = "first paper 4.1: static 92.32% past 50%, energy 'significant losses' (ResNet-18 83.37% at 90% energy)"

PRESETS: dict[str, dict[str, Any]] = {
    # rates / energies: (band parameter, training seed offset)
    "smoke": dict(
        model="lenet", train=200, test=100, epochs=1, rates=((0.0, 0), (0.5, 0), (0.85, 0)), energies=((0.95, 0),)
    ),
    # The zoo's FastNets (no training); the whole offline test set with RBL_DATA, else the sample.
    "quick": dict(
        model="fastnet",
        train=50000,
        test=10000,
        epochs=6,
        rates=((0.0, 0), (0.5, 0), (0.85, 0), (0.0, 1), (0.5, 1)),
        energies=((0.95, 0),),
    ),
    "paper": dict(
        model="resnet18",
        train=50000,
        test=10000,
        epochs=350,
        rates=tuple((r, s) for s in (0, 1) for r in (0.0, 0.1, 0.25, 0.5, 0.75, 0.85)),
        energies=tuple((e, s) for s in (0, 1) for e in (0.999, 0.995, 0.99, 0.98, 0.95, 0.9)),
    ),
}


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
            est, lo, hi = stats.paired_bootstrap(outcomes, lambda a: a[half] - a[plain], seed=seed)
            label = (
                f"seed +{s}: static 50% ({fraction[half]:.0%} discarded, {outcomes[half].mean():.3f}) - 0% "
                f"({outcomes[plain].mean():.3f})"
            )
            claims.append(stats.Claim(label, est, lo, hi, threshold=-GRACEFUL, paper=PAPER_GRACEFUL))
        for k in sorted(k for k in outcomes if k[0] == "energy" and k[2] == s):
            if len(static) < 2 or not static[0][0] <= fraction[k] <= static[-1][0]:
                continue
            (f0, k0), (f1, k1) = next((a, b) for a, b in itertools.pairwise(static) if a[0] <= fraction[k] <= b[0])
            w = (fraction[k] - f0) / (f1 - f0) if f1 > f0 else 0.0
            est, lo, hi = stats.paired_bootstrap(outcomes, lambda a: a[k] - ((1 - w) * a[k0] + w * a[k1]), seed=seed)
            label = (
                f"seed +{s}: energy {k[1]:g} ({fraction[k]:.0%} discarded, {outcomes[k].mean():.3f}) - static "
                f"interpolated at {fraction[k]:.0%} ({(1 - w) * outcomes[k0].mean() + w * outcomes[k1].mean():.3f})"
            )
            claims.append(stats.Claim(label, est, lo, hi, paper=PAPER_ENERGY, direction="below"))
    return stats.finding(
        f"accuracy falls gracefully (<= {GRACEFUL:.0%} lost at 50% static) and energy-based loses to static at equal "
        "discarded fraction",
        claims,
        f"on {n} test images, 95% paired-bootstrap intervals",
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p = preset(PRESETS, args)
    study = RunFolder.from_args(args)

    def configs(size: int) -> dict[tuple[str, float, int], TrainConfig]:
        size_settings = budget(p["train"], p["epochs"], size)
        static = {
            ("static", r, s): recipe(p["model"], "cifar10", compress_rate=r, seed=args.seed + s, **size_settings)
            for r, s in p["rates"]
        }
        return static | {
            ("energy", e, s): recipe(p["model"], "cifar10", energy=e, seed=args.seed + s, **size_settings)
            for e, s in p["energies"]
        }

    trained = trained_models(args, p["test"], configs)
    models, test = trained.models, trained.test
    if not distributed.is_main():
        return pd.DataFrame()
    keys = trained.keys

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        model = models[cell["scheme"], cell["level"], cell["seed_offset"]]
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

    cells = [
        {
            "study": NAME,
            "dataset": "cifar10",
            "model": p["model"],
            "model_key": keys[scheme, level, s],
            "scheme": scheme,
            "level": level,
            "seed_offset": s,
            "seed": args.seed,
            "n": len(test),
        }
        for scheme, level, s in keys
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table[table.model_key.isin(keys.values())]
    paths = plots.lines(
        table,
        x="discarded",
        y="value",
        hue="scheme",
        style="seed_offset",
        stem=study.figure(),
        xlabel="fraction of coefficients discarded (mean over layers)",
        ylabel="test accuracy",
        title=f"{p['model']}, CIFAR-10 ({test.source_kind}): static vs energy-based compression",
    )
    print(
        table[["scheme", "level", "seed_offset", "discarded", "value"]]
        .rename(columns={"value": "accuracy"})
        .to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
    study.conclude(finding(table, args.seed), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
