"""Noise robustness of band-limited models (first seed, Fig. 28; second seed, Fig. 2.5).

Takes the same CNN trained at several compression rates of its band-limited convolutions (the
zoo's FastNets by default, LeNets with --preset smoke) and measures test accuracy under Gaussian
and uniform noise of increasing level. Finding to check: the more band-limited the model, the
more accuracy it keeps under noise; judged with paired-bootstrap intervals over the test images,
against the seed-to-seed difference of the same setting.

    python studies/noise_robustness.py                 # quick preset (default), <= 10 min on a CPU
    python studies/noise_robustness.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from robustbench_bl import channels, plots
from robustbench_bl.cli import Study, command_line, parse_args, preset
from robustbench_bl.evaluation import stats
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.common import discarded_per_layer, trained_models
from robustbench_bl.training import TrainConfig, budget, predict, recipe

NAME = "noise_robustness"
EVAL = 500  # images on which each model's discarded fractions are reported

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        model="lenet", train=200, test=100, epochs=1, models=((0.0, 0), (0.5, 0)), gauss=(0.0, 0.2), uniform=(0.0, 0.4)
    ),
    # The shipped zoo FastNets (no training): 0 / 50 / 85% at seed 0 and 0 / 50% at seed 1, on
    # 5,000 class-balanced offline test images with RBL_DATA / --data, else on the packaged
    # 1,000-image sample. 60 evaluations of a FastNet: ~1.5 min on the sample, ~8 with RBL_DATA.
    "quick": dict(
        model="fastnet",
        train=50000,
        test=5000,
        epochs=6,
        models=((0.0, 0), (0.5, 0), (0.85, 0), (0.0, 1), (0.5, 1)),
        gauss=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4),
        uniform=(0.0, 0.1, 0.2, 0.3, 0.5, 0.7),
    ),
    "paper": dict(
        model="resnet18",
        train=50000,
        test=10000,
        epochs=350,
        models=((0.0, 0), (0.5, 0), (0.85, 0), (0.0, 1), (0.5, 1)),
        gauss=(0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4),
        uniform=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    ),
}

Model = tuple[float, int]  # (train compression rate, training seed offset)


def train_configs(p: dict[str, Any], train_size: int, seed: int) -> dict[Model, TrainConfig]:
    """One training configuration per (compression rate, seed offset); rate 0 means plain convolutions."""
    size = budget(p["train"], p["epochs"], train_size)
    return {
        (rate, s): recipe(p["model"], "cifar10", compress_rate=rate, seed=seed + s, **size) for rate, s in p["models"]
    }


def _kept(acc: Mapping[Any, np.ndarray], noise: str, model: Model, levels: Sequence[float]) -> np.ndarray:
    """Share of clean accuracy kept under noise: mean accuracy over the noisy levels / clean accuracy."""
    noisy = np.mean([acc[noise, model, level] for level in levels if level > 0], axis=0)
    return noisy / np.maximum(acc[noise, model, 0.0], 1e-12)


def finding(table: pd.DataFrame, seed: int = 0) -> str:
    """Per noise, the kept share of each band-limited model minus the plain model's (same seed), with
    95% paired-bootstrap intervals over test images; seed-to-seed differences as the yardstick."""
    acc = table[table.metric == "accuracy"]
    n = int(acc.n.iloc[0])
    outcomes = {
        (r.noise, (r.train_compress, r.seed_offset), r.level): stats.unpack(r.correct, n) for r in acc.itertuples()
    }
    models = sorted({(r, s) for _, (r, s), _ in outcomes})
    lines, verdicts = [], []
    for noise, part in acc.groupby("noise"):
        levels = sorted(part.level.unique())
        for rate, s in models:
            if rate == 0 or (0.0, s) not in models:
                continue
            est, lo, hi = stats.paired_bootstrap(
                outcomes, lambda a: _kept(a, noise, (rate, s), levels) - _kept(a, noise, (0.0, s), levels), seed=seed
            )
            verdicts.append(stats.verdict(lo, hi))
            lines.append(f"{noise} {rate:.0%} vs 0% (seed +{s}): {est:+.3f} [{lo:+.3f}, {hi:+.3f}] {verdicts[-1]}")
        for rate, s in models:
            if s > 0 and (rate, 0) in models:
                est, lo, hi = stats.paired_bootstrap(
                    outcomes,
                    lambda a: _kept(a, noise, (rate, s), levels) - _kept(a, noise, (rate, 0), levels),
                    seed=seed,
                )
                lines.append(f"{noise} seed +{s} vs +0 at {rate:.0%} (yardstick): {est:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    overall = (
        "DOES NOT HOLD" if "DOES NOT HOLD" in verdicts else "HOLDS" if set(verdicts) == {"HOLDS"} else "INCONCLUSIVE"
    )
    return (
        f"Finding ('more band-limited, more robust to noise') {overall} on {n} test images: share of clean accuracy kept "
        f"under noise (mean over noisy levels), band-limited minus plain, 95% paired-bootstrap intervals "
        f"(paper: the ordering 85% > 50% > 0% in figures, first seed Fig. 28, no number to quote):\n  "
        + "\n  ".join(lines)
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p = preset(PRESETS, args)
    study = Study.from_args(args)
    trained = trained_models(args, p["test"], lambda size: train_configs(p, size, args.seed))
    if not distributed.is_main():
        return pd.DataFrame()  # under torchrun, rank 0 alone runs the sweep
    test = trained.test
    x, y = test.x.to(args.device), test.y.to(args.device)
    discarded = {m: discarded_per_layer(model, x[:EVAL]) for m, model in trained.models.items()}

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        key = (cell["train_compress"], cell["seed_offset"])
        channel = channels.make(cell["noise"], cell["level"], seed=cell["seed"]).to(args.device)
        with torch.no_grad():  # one seeded draw: the accuracy and the distortion are measured on the same noisy images
            noisy = channel(x)
            distortion = (noisy - x).flatten(1).norm(dim=1).mean().item()
        correct = predict(trained.models[key], noisy).cpu() == y.cpu()
        return [
            {
                "metric": "accuracy",
                "value": correct.float().mean().item(),
                "correct": stats.pack(correct),
                "distortion": distortion,
                "data_source": test.source_kind,
                "train_size": trained.meta[key]["metrics"]["train_size"],
                "discarded_per_layer": discarded[key],
            }
        ]

    cells = [
        {
            "study": NAME,
            "dataset": "cifar10",
            "model": p["model"],
            "model_key": trained.keys[rate, s],
            "train_compress": rate,
            "seed_offset": s,
            "noise": noise,
            "level": level,
            "seed": args.seed,
            "n": len(test),
        }
        for noise, levels in (("gauss", p["gauss"]), ("uniform", p["uniform"]))
        for rate, s in p["models"]
        for level in levels
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table[table.model_key.isin(set(trained.keys.values()))]
    plot_table = table.assign(
        compression=table.train_compress.map(lambda r: f"{r:.0%}"), seed=table.seed_offset.map(lambda s: f"+{s}")
    )
    paths = plots.lines(
        plot_table,
        x="level",
        y="value",
        hue="compression",
        style="seed",
        col="noise",
        sharex=False,
        xlabel="noise level (sigma for gauss, bound for uniform)",
        ylabel="test accuracy",
        title=f"{p['model']} on CIFAR-10 ({len(test)} {test.source_kind} test images): accuracy under noise",
        stem=study.figure(),
    )
    summary = table.pivot_table(index=["noise", "level"], columns=["train_compress", "seed_offset"], values="value")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    study.conclude(finding(table, args.seed), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
