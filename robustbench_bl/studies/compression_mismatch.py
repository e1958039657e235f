"""Train against test compression of band-limited models (first seed, Fig. 5).

Trains the same CNN at several compression rates, then tests each at every rate by changing the
band of its layers on a copy. Finding to check: the best accuracy lies on the diagonal (test at
the rate trained at), degrading smoothly away from it.

    python studies/compression_mismatch.py                 # quick preset (default), <= 10 min on a CPU
    python studies/compression_mismatch.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

from robustbench_bl import plots
from robustbench_bl.cli import Study, command_line, parse_args, preset
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.bands import with_band
from robustbench_bl.studies.common import discarded_per_layer, trained_models
from robustbench_bl.training import budget, evaluate, recipe

NAME = "compression_mismatch"

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(model="lenet", train=200, test=100, epochs=1, train_rates=(0.0, 0.5), test_rates=(0.0, 0.5)),
    # The zoo's FastNets (no training); 5,000 offline test images with RBL_DATA, else the sample.
    "quick": dict(
        model="fastnet",
        train=50000,
        test=5000,
        epochs=6,
        train_rates=(0.0, 0.5, 0.85),
        test_rates=(0.0, 0.25, 0.5, 0.65, 0.75, 0.85),
    ),
    "paper": dict(
        model="resnet18",
        train=50000,
        test=10000,
        epochs=350,
        train_rates=(0.0, 0.5, 0.75, 0.85),
        test_rates=(0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.8, 0.85),
    ),
}


def finding(table: pd.DataFrame) -> str:
    """For each trained model, the test compression with the best accuracy; diagonal against the rest."""
    grid = table.pivot_table(index="train_compress", columns="test_compress", values="value")
    best = grid.idxmax(axis=1)
    on_diagonal = [r for r, b in best.items() if b == r]
    diagonal = pd.Series({r: grid.loc[r, r] for r in grid.index})
    off = grid.stack()[[a != b for a, b in grid.stack().index]]
    verdict = "HOLDS" if len(on_diagonal) == len(grid) else "DOES NOT HOLD"
    rows = ", ".join(f"{r:.0%}->{b:.0%}" for r, b in best.items())
    return (
        f"Finding ('best accuracy on the diagonal') {verdict}: best test compression per train compression {rows} "
        f"({len(on_diagonal)}/{len(grid)} on the diagonal); mean accuracy on the diagonal {diagonal.mean():.3f}, "
        f"off it {off.mean():.3f}"
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p = preset(PRESETS, args)
    study = Study.from_args(args)
    trained = trained_models(
        args,
        p["test"],
        lambda size: {
            rate: recipe(
                p["model"],
                "cifar10",
                compress_rate=rate,
                **budget(p["train"], p["epochs"], size),
                seed=args.seed,
            )
            for rate in p["train_rates"]
        },
    )
    models, test = trained.models, trained.test
    if not distributed.is_main():
        return pd.DataFrame()
    keys = trained.keys

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        model = with_band(models[cell["train_compress"]], compress_rate=cell["test_compress"])
        return [
            {
                "metric": "accuracy",
                "value": evaluate(model, test.x, test.y),
                "data_source": test.source_kind,
                "discarded_per_layer": discarded_per_layer(model, test.x[:100]),
            }
        ]

    cells = [
        {
            "study": NAME,
            "dataset": "cifar10",
            "model": p["model"],
            "model_key": keys[train],
            "train_compress": train,
            "test_compress": test_rate,
            "seed": args.seed,
            "n": len(test),
        }
        for train in p["train_rates"]
        for test_rate in p["test_rates"]
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table[table.model_key.isin(keys.values())]
    percent = table.assign(
        **{
            "train compression (%)": table.train_compress.mul(100).round().astype(int),
            "test compression (%)": table.test_compress.mul(100).round().astype(int),
        }
    )
    paths = plots.heatmap(
        percent,
        index="train compression (%)",
        columns="test compression (%)",
        values="value",
        stem=study.figure(),
        title=f"{p['model']}, CIFAR-10 ({test.source_kind}): test accuracy",
    )
    print(
        table.pivot_table(index="train_compress", columns="test_compress", values="value").to_string(
            float_format=lambda v: f"{v:.3f}"
        )
    )
    study.conclude(finding(table), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
