"""Noise robustness of band-limited models (first seed, Fig. 28; second seed, Fig. 2.5).

Takes the same CNN trained at several compression rates of its band-limited convolutions (the
zoo's FastNets by default, LeNets with --preset smoke) and measures test accuracy under Gaussian
and uniform noise of increasing level. Finding to check: the more
band-limited the model, the more accuracy it keeps under noise.

    python studies/noise_robustness.py                 # quick preset (default), <= 10 min on a CPU
    python studies/noise_robustness.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from robustbench_bl import channels, distributed, plots
from robustbench_bl.study import Study, discarded_per_layer, parse_args, preset, trained_models
from robustbench_bl.sweep import run
from robustbench_bl.training import TrainConfig, budget, evaluate, recipe

NAME = "noise_robustness"
EVAL = 500  # images on which each model's discarded fractions are reported

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(model="lenet", train=200, test=100, epochs=1, rates=(0.0, 0.5), gauss=(0.0, 0.2), uniform=(0.0, 0.4)),
    # The shipped zoo FastNets (no training): the whole offline test set with RBL_DATA / --data,
    # else the packaged 1,000-image sample.
    "quick": dict(
        model="fastnet",
        train=50000,
        test=10000,
        epochs=6,
        rates=(0.0, 0.5, 0.85),
        gauss=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4),
        uniform=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7),
    ),
    "paper": dict(
        model="resnet18",
        train=50000,
        test=10000,
        epochs=350,
        rates=(0.0, 0.5, 0.85),
        gauss=(0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4),
        uniform=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    ),
}


def train_configs(p: dict[str, Any], train_size: int, seed: int) -> dict[float, TrainConfig]:
    """One training configuration per compression rate (0 means plain convolutions)."""
    size = budget(p["train"], p["epochs"], train_size)
    return {rate: recipe(p["model"], "cifar10", compress_rate=rate, seed=seed, **size) for rate in p["rates"]}


def finding(table: pd.DataFrame) -> str:
    """The headline: accuracy kept under noise (mean over noisy levels / clean accuracy) per rate."""
    acc = table[table.metric == "accuracy"]
    lines = []
    holds = True
    for noise, part in acc.groupby("noise"):
        clean = part[part.level == 0].set_index("train_compress").value
        noisy = part[part.level > 0].groupby("train_compress").value.mean()
        kept = (noisy / clean).sort_index()
        holds &= bool(kept.is_monotonic_increasing)
        lines.append(f"{noise}: " + ", ".join(f"{r:.0%}->{k:.2f}" for r, k in kept.items()))
    verdict = "HOLDS" if holds else "DOES NOT HOLD"
    return f"Finding ('more band-limited, more robust to noise') {verdict}: accuracy kept under noise by train compression; " + "; ".join(lines)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p = preset(PRESETS, args)
    study = Study.from_args(args)
    trained = trained_models(args, p["test"], lambda size: train_configs(p, size, args.seed))
    if not distributed.is_main():
        return pd.DataFrame()  # under torchrun, rank 0 alone runs the sweep
    test = trained.test
    x, y = test.x.to(args.device), test.y.to(args.device)
    discarded = {rate: discarded_per_layer(model, x[:EVAL]) for rate, model in trained.models.items()}

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        model, meta = trained.models[cell["train_compress"]], trained.meta[cell["train_compress"]]
        channel = channels.make(cell["noise"], cell["level"], seed=cell["seed"]).to(args.device)
        with torch.no_grad():
            distortion = channel.distortion(x).mean().item()
        accuracy = evaluate(torch.nn.Sequential(channel, model), x, y)
        return [
            {"metric": "accuracy", "value": accuracy, "distortion": distortion, "data_source": test.source_kind,
             "train_size": meta["metrics"]["train_size"], "discarded_per_layer": discarded[cell["train_compress"]]}
        ]

    cells = [
        {"study": NAME, "dataset": "cifar10", "model": p["model"], "model_key": trained.keys[rate],
         "train_compress": rate, "noise": noise, "level": level, "seed": args.seed, "n": len(test)}
        for noise, levels in (("gauss", p["gauss"]), ("uniform", p["uniform"]))
        for rate in p["rates"]
        for level in levels
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table[table.model_key.isin(set(trained.keys.values()))]
    plot_table = table.assign(compression=table.train_compress.map(lambda r: f"{r:.0%}"))
    paths = plots.lines(
        plot_table, x="level", y="value", hue="compression", col="noise", sharex=False,
        xlabel="noise level (sigma for gauss, bound for uniform)", ylabel="test accuracy",
        title=f"{p['model']} on CIFAR-10 ({test.source_kind} data): accuracy under noise", stem=study.figure(),
    )
    summary = table.pivot_table(index=["noise", "level"], columns="train_compress", values="value")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    print(finding(table))
    print(f"wrote {study.store.path.with_suffix('.csv')} and {', '.join(map(str, paths))}")
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
