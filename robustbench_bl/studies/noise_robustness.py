"""Noise robustness of band-limited models (first paper, Fig. 28; second paper, Fig. 2.5).

Takes the same CNN trained at several compression rates of its band-limited convolutions (the
zoo's FastNets by default, LeNets with --preset smoke) and measures test accuracy under Gaussian
and uniform noise of increasing level, in the papers' units: noise added after normalization (its
standard deviation in units of the model's per-channel input std) and not clipped; the clipped
pixel variant (the same draws, then clipped to [0, 1]) is measured beside it. Finding to check:
the more band-limited the model, the more accuracy it keeps under noise, judged by the paired
accuracy difference at the high noise levels with 95% paired-bootstrap intervals, against plain
models of the same seed and against early-stopped plain models of lower clean accuracy (so that
"band-limited" is told apart from "less accurate").

    python studies/noise_robustness.py                 # quick preset (default), <= 15 min on a CPU
    python studies/noise_robustness.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from robustbench_bl import plots
from robustbench_bl.cli import command_line, parse_args
from robustbench_bl.evaluation import stats
from robustbench_bl.models.common import input_std
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.output import RunFolder
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.common import discarded_per_layer, preset, trained_models
from robustbench_bl.training import TrainConfig, budget, predict, recipe

NAME = "noise_robustness"
EVAL = 500  # images on which each model's discarded fractions are reported
#: Noise levels at or above this share of the largest level are the "high-noise levels" judged.
HIGH = 0.5
#: The ways noise reaches the model: the papers' (normalized units, unclipped) and clipped pixels.
VARIANTS = ("normalized", "clipped")
PAPER = "first paper Fig. 28: 85% > 50% > 0% in figures, no number"

PRESETS: dict[str, dict[str, Any]] = {
    # models: (train compression rate, training seed offset, epochs); plain models with fewer epochs
    # than the preset's are the early-stopped controls of lower clean accuracy.
    "smoke": dict(
        model="lenet",
        train=200,
        test=100,
        epochs=2,
        models=((0.0, 0, 2), (0.5, 0, 2), (0.0, 0, 1)),
        levels=(0.0, 1.0, 2.0),
    ),
    # The shipped zoo FastNets (no training): 0 / 50 / 85% at seed 0, 0 / 50% at seed 1, and the
    # plain models stopped after 1 and 2 epochs, on 3,000 class-balanced offline test images with
    # RBL_DATA / --data, else on the packaged 1,000-image sample. Noise std 0..2 in normalized
    # units, as in the papers (2 is 0.49-0.52 in [0, 1] pixels with the models' CIFAR-10 std).
    "quick": dict(
        model="fastnet",
        train=50000,
        test=3000,
        epochs=6,
        models=((0.0, 0, 6), (0.5, 0, 6), (0.85, 0, 6), (0.0, 1, 6), (0.5, 1, 6), (0.0, 0, 1), (0.0, 0, 2)),
        levels=(0.0, 0.25, 0.5, 1.0, 2.0),
    ),
    "paper": dict(
        model="resnet18",
        train=50000,
        test=10000,
        epochs=350,
        models=((0.0, 0, 350), (0.5, 0, 350), (0.85, 0, 350), (0.0, 1, 350), (0.5, 1, 350), (0.0, 0, 20)),
        levels=(0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0),
    ),
}

Model = tuple[float, int, int]  # (train compression rate, training seed offset, epochs)


def train_configs(p: dict[str, Any], train_size: int, seed: int) -> dict[Model, TrainConfig]:
    """One training configuration per model; rate 0 means plain convolutions."""
    return {
        (rate, s, e): recipe(
            p["model"], "cifar10", compress_rate=rate, seed=seed + s, **budget(p["train"], e, train_size)
        )
        for rate, s, e in p["models"]
    }


def noisy(x: torch.Tensor, noise: str, level: float, variant: str, std: torch.Tensor, seed: int) -> torch.Tensor:
    """x plus one seeded draw of zero-mean noise whose standard deviation is `level` in normalized
    units (per channel, `level` x the model's input std); uniform noise is drawn on [-b, b] with
    b = sqrt(3) x that std. The 'clipped' variant clips the same draw to [0, 1] pixels."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    if noise == "gauss":
        draw = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    else:
        draw = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype).mul_(2).sub_(1).mul_(3**0.5)
    out = x + draw * (level * std.to(x).view(1, -1, 1, 1))
    return out.clamp_(0, 1) if variant == "clipped" else out


def _high(acc: Mapping[Any, np.ndarray], noise: str, variant: str, model: Model, levels: Sequence[float]) -> np.ndarray:
    """Mean accuracy over the high noise levels."""
    return np.mean([acc[noise, variant, model, level] for level in levels], axis=0)


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """Per noise and variant, the accuracy of each band-limited model minus a plain model's, averaged
    over the high noise levels, with 95% paired-bootstrap intervals: against the plain model of the
    same seed (the claim), against the early-stopped plain controls, and seed against seed."""
    acc = table[table.metric == "accuracy"]
    n = int(acc.n.iloc[0])
    outcomes = {
        (r.noise, r.variant, (r.train_compress, r.seed_offset, r.train_epochs), r.level): stats.unpack(r.correct, n)
        for r in acc.itertuples()
    }
    models = sorted({m for _, _, m, _ in outcomes})
    full = max(e for _, _, e in models)
    clean = {m: float(outcomes["gauss", "normalized", m, 0.0].mean()) for m in models}
    claims, controls, notes = [], [], []

    def compare(
        a: Model, b: Model, noise: str, variant: str, levels: list[float], label: str, paper: str = ""
    ) -> stats.Claim:
        est, lo, hi = stats.paired_bootstrap(
            outcomes,
            lambda m: _high(m, noise, variant, a, levels) - _high(m, noise, variant, b, levels),
            seed=seed,
        )
        return stats.Claim(label, est, lo, hi, paper=paper)

    for (noise, variant), part in acc.groupby(["noise", "variant"]):
        levels = sorted(part.level.unique())
        high = [v for v in levels if v > 0 and v >= HIGH * max(levels)]
        where = f"{noise} {variant}, std {', '.join(f'{v:g}' for v in high)}"
        for rate, s, e in models:
            if rate == 0 or e != full or (0.0, s, full) not in models:
                continue
            label = f"{where}: {rate:.0%} - 0% (seed +{s})"
            if variant == VARIANTS[0]:
                claims.append(compare((rate, s, e), (0.0, s, full), noise, variant, high, label, PAPER))
            else:
                notes.append(str(compare((rate, s, e), (0.0, s, full), noise, variant, high, label)))
            for ctrl in models:
                if ctrl[0] == 0 and ctrl[2] < full and ctrl[1] == s:
                    label = (
                        f"{where}: {rate:.0%} (clean {clean[rate, s, e]:.3f}) - plain stopped at {ctrl[2]} epoch(s) "
                        f"(clean {clean[ctrl]:.3f})"
                    )
                    controls.append(compare((rate, s, e), ctrl, noise, variant, high, label))
        for rate, s, e in models:
            if s > 0 and (rate, 0, e) in models:
                c = compare((rate, s, e), (rate, 0, e), noise, variant, high, "")
                notes.append(
                    f"{where}: seed +{s} - seed +0 at {rate:.0%} (yardstick): {c.estimate:+.3f} [{c.low:+.3f}, {c.high:+.3f}]"
                )
    notes = [f"control ({c.verdict}): {c}" for c in controls] + notes
    return stats.finding(
        "more band-limited, more robust to noise",
        claims,
        f"on {n} test images: accuracy of the band-limited model minus the plain model's (same seed), mean over the "
        f"high noise levels (std >= {HIGH:g} x the largest, normalized units, unclipped as in the papers); 95% "
        "paired-bootstrap intervals; the clipped-pixel variant, the early-stopped controls and seed-to-seed "
        "differences follow",
        notes,
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p = preset(PRESETS, args)
    study = RunFolder.from_args(args)
    trained = trained_models(args, p["test"], lambda size: train_configs(p, size, args.seed))
    if not distributed.is_main():
        return pd.DataFrame()  # under torchrun, rank 0 alone runs the sweep
    test = trained.test
    x, y = test.x.to(args.device), test.y.to(args.device)
    discarded = {m: discarded_per_layer(model, x[:EVAL]) for m, model in trained.models.items()}
    clean: dict[Model, torch.Tensor] = {}  # level 0 is the same images for every noise and variant

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        key = (cell["train_compress"], cell["seed_offset"], cell["train_epochs"])
        model = trained.models[key]
        with torch.no_grad():  # one seeded draw: the accuracy and the distortion are measured on the same images
            images = noisy(x, cell["noise"], cell["level"], cell["variant"], input_std(model), cell["seed"])
            distortion = (images - x).flatten(1).norm(dim=1).mean().item()
        if cell["level"] == 0 and key in clean:
            correct = clean[key]
        else:
            correct = predict(model, images, unclipped=cell["variant"] != "clipped").cpu() == y.cpu()
        if cell["level"] == 0:
            clean[key] = correct
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
            "model_key": trained.keys[rate, s, e],
            "train_compress": rate,
            "seed_offset": s,
            "train_epochs": e,
            "noise": noise,
            "variant": variant,
            "level": level,
            "seed": args.seed,
            "n": len(test),
        }
        for rate, s, e in p["models"]
        for noise in ("gauss", "uniform")
        for variant in VARIANTS
        for level in p["levels"]
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table[table.model_key.isin(set(trained.keys.values()))]
    full = max(e for _, _, e in p["models"])
    plot_table = table.assign(
        model=[
            f"{r:.0%}" + (f" seed +{s}" if s else "") + (f" ({e} ep.)" if e < full else "")
            for r, s, e in zip(table.train_compress, table.seed_offset, table.train_epochs)
        ],
        panel=table.noise + ", " + table.variant,
    )
    paths = plots.lines(
        plot_table,
        x="level",
        y="value",
        hue="model",
        col="panel",
        col_wrap=2,
        xlabel="noise std (x the model's input std)",
        ylabel="test accuracy",
        title=f"{p['model']} on CIFAR-10 ({len(test)} {test.source_kind} test images): accuracy under noise",
        stem=study.figure(),
    )
    summary = table.pivot_table(
        index=["noise", "variant", "level"], columns=["train_compress", "seed_offset", "train_epochs"], values="value"
    )
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    study.conclude(finding(table, args.seed), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
