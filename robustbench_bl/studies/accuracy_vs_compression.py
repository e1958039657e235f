"""Accuracy against compression, static against energy-based band-limiting (first seed, Table 1, Fig. 3).

Trains the same CNN with static compression (a fixed fraction of coefficients discarded in
every layer) and with energy-based compression (the smallest band keeping a fraction of the
input's spectral energy), and plots test accuracy against the fraction of coefficients the
layers actually discard. Finding to check: accuracy falls gracefully with compression.

    python studies/accuracy_vs_compression.py                 # quick preset (default), <= 10 min on a CPU
    python studies/accuracy_vs_compression.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from robustbench_bl import plots
from robustbench_bl.cli import Study, command_line, parse_args, preset
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.bands import discarded, layer_fractions
from robustbench_bl.studies.common import trained_models
from robustbench_bl.training import TrainConfig, budget, evaluate, recipe

NAME = "accuracy_vs_compression"
#: Allowed accuracy loss at 50% static compression for the finding to count as holding.
GRACEFUL = 0.02

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(model="lenet", train=200, test=100, epochs=1, rates=(0.0, 0.5), energies=(0.95,)),
    # The zoo's FastNets (no training); the whole offline test set with RBL_DATA, else the sample.
    "quick": dict(model="fastnet", train=50000, test=10000, epochs=6, rates=(0.0, 0.5, 0.85), energies=(0.95,)),
    "paper": dict(
        model="resnet18",
        train=50000,
        test=10000,
        epochs=350,
        rates=(0.0, 0.1, 0.25, 0.5, 0.75, 0.85),
        energies=(0.999, 0.995, 0.99, 0.98, 0.95, 0.9),
    ),
}


def finding(table: pd.DataFrame) -> str:
    """Accuracy lost at 50% static compression, and energy-based against static at equal discarded fraction."""
    static = table[table.scheme == "static"].sort_values("discarded")
    energy = table[table.scheme == "energy"]
    full = static[static.level == 0].value.mean()
    half = np.interp(0.5, static.discarded, static.value)
    # Static accuracy interpolated at the fractions the energy-based models discard.
    gap = (energy.value - np.interp(energy.discarded, static.discarded, static.value)).mean()
    verdict = "HOLDS" if full - half <= GRACEFUL else "DOES NOT HOLD"
    points = "; ".join(
        f"{s} {lv:g}: {d:.0%} discarded, acc {v:.3f}"
        for s, lv, d, v in table[["scheme", "level", "discarded", "value"]].itertuples(index=False)
    )
    return (
        f"Finding ('accuracy falls gracefully with compression', <= {GRACEFUL:.0%} lost at 50%) {verdict}: "
        f"accuracy {full:.3f} at 0%, {half:.3f} at 50% static (interpolated); energy-based minus static at equal "
        f"discarded fraction: {gap:+.3f} on average ({points})"
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p = preset(PRESETS, args)
    study = Study.from_args(args)

    def configs(size: int) -> dict[tuple[str, float], TrainConfig]:
        settings = dict(**budget(p["train"], p["epochs"], size), seed=args.seed)
        static = {("static", r): recipe(p["model"], "cifar10", compress_rate=r, **settings) for r in p["rates"]}
        return static | {("energy", e): recipe(p["model"], "cifar10", energy=e, **settings) for e in p["energies"]}

    trained = trained_models(args, p["test"], configs)
    models, test = trained.models, trained.test
    if not distributed.is_main():
        return pd.DataFrame()
    keys = trained.keys

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        model = models[cell["scheme"], cell["level"]]
        fractions = layer_fractions(model, test.x[:500])
        return [
            {
                "metric": "accuracy",
                "value": evaluate(model, test.x, test.y),
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
            "model_key": keys[scheme, level],
            "scheme": scheme,
            "level": level,
            "seed": args.seed,
            "n": len(test),
        }
        for scheme, level in keys
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table[table.model_key.isin(keys.values())]
    paths = plots.lines(
        table,
        x="discarded",
        y="value",
        hue="scheme",
        style="scheme",
        stem=study.figure(),
        xlabel="fraction of coefficients discarded (mean over layers)",
        ylabel="test accuracy",
        title=f"{p['model']}, CIFAR-10 ({test.source_kind}): static vs energy-based compression",
    )
    print(
        table[["scheme", "level", "discarded", "value"]]
        .rename(columns={"value": "accuracy"})
        .to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
    study.conclude(finding(table), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
