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

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from robustbench_bl import plots
from robustbench_bl.cli import command_line, parse_args
from robustbench_bl.evaluation import stats
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.output import RunFolder
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.bands import with_band
from robustbench_bl.studies.common import discarded_per_layer, preset, trained_models
from robustbench_bl.training import budget, predict, recipe

NAME = "compression_mismatch"
PAPER = "first paper Fig. 5: the diagonal is best, no number"

PRESETS: dict[str, dict[str, Any]] = {
    # models: (train compression rate, training seed offset)
    "smoke": dict(model="lenet", train=200, test=100, epochs=1, models=((0.0, 0), (0.5, 0)), test_rates=(0.0, 0.5)),
    # The zoo's FastNets (no training); 5,000 offline test images with RBL_DATA, else the sample.
    "quick": dict(
        model="fastnet",
        train=50000,
        test=5000,
        epochs=6,
        models=((0.0, 0), (0.5, 0), (0.85, 0), (0.0, 1), (0.5, 1)),
        test_rates=(0.0, 0.25, 0.5, 0.65, 0.85),
    ),
    "paper": dict(
        model="resnet18",
        train=50000,
        test=10000,
        epochs=350,
        models=((0.0, 0), (0.5, 0), (0.75, 0), (0.85, 0), (0.0, 1), (0.5, 1)),
        test_rates=(0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.8, 0.85),
    ),
}


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """Per trained model, accuracy at its own rate minus its best accuracy at any other test rate,
    with a 95% paired-bootstrap interval over the test images (ties are INCONCLUSIVE, not a pass)."""
    n = int(table.n.iloc[0])
    outcomes = {
        ((r.train_compress, r.seed_offset), r.test_compress): stats.unpack(r.correct, n) for r in table.itertuples()
    }
    claims, notes = [], []
    for model in sorted({m for m, _ in outcomes}):
        rates = sorted(t for m, t in outcomes if m == model)
        if model[0] not in rates:
            continue
        others = [t for t in rates if t != model[0]]
        est, lo, hi = stats.paired_bootstrap(
            outcomes,
            lambda a: a[model, model[0]] - np.max(np.stack([a[model, t] for t in others]), axis=0),
            seed=seed,
        )
        best = max(others, key=lambda t: outcomes[model, t].mean())
        label = (
            f"trained at {model[0]:.0%} (seed +{model[1]}): {outcomes[model, model[0]].mean():.3f} at its own rate - "
            f"best other ({best:.0%}: {outcomes[model, best].mean():.3f})"
        )
        claims.append(stats.Claim(label, est, lo, hi, paper=PAPER))
    diagonal = np.mean([outcomes[m, m[0]].mean() for m in {m for m, _ in outcomes} if (m, m[0]) in outcomes])
    off = np.mean([v.mean() for (m, t), v in outcomes.items() if t != m[0]])
    notes.append(f"mean accuracy on the diagonal {diagonal:.3f}, off it {off:.3f}")
    return stats.finding(
        "best accuracy at the rate trained at",
        claims,
        f"on {n} test images: each model's accuracy at its training rate minus its best accuracy at another test rate, "
        "95% paired-bootstrap intervals",
        notes,
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p = preset(PRESETS, args)
    study = RunFolder.from_args(args)
    trained = trained_models(
        args,
        p["test"],
        lambda size: {
            (rate, s): recipe(
                p["model"],
                "cifar10",
                compress_rate=rate,
                **budget(p["train"], p["epochs"], size),
                seed=args.seed + s,
            )
            for rate, s in p["models"]
        },
    )
    models, test = trained.models, trained.test
    if not distributed.is_main():
        return pd.DataFrame()
    keys = trained.keys

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        model = with_band(models[cell["train_compress"], cell["seed_offset"]], compress_rate=cell["test_compress"])
        correct = predict(model, test.x).cpu() == test.y.cpu()
        return [
            {
                "metric": "accuracy",
                "value": correct.float().mean().item(),
                "correct": stats.pack(correct),
                "data_source": test.source_kind,
                "discarded_per_layer": discarded_per_layer(model, test.x[:100]),
            }
        ]

    cells = [
        {
            "study": NAME,
            "dataset": "cifar10",
            "model": p["model"],
            "model_key": keys[train, s],
            "train_compress": train,
            "seed_offset": s,
            "test_compress": test_rate,
            "seed": args.seed,
            "n": len(test),
        }
        for train, s in p["models"]
        for test_rate in p["test_rates"]
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table[table.model_key.isin(keys.values())]
    percent = table[table.seed_offset == 0].assign(
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
        table.pivot_table(index=["train_compress", "seed_offset"], columns="test_compress", values="value").to_string(
            float_format=lambda v: f"{v:.3f}"
        )
    )
    study.conclude(finding(table, args.seed), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
