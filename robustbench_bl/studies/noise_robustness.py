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
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from robustbench_bl import plots
from robustbench_bl.cli import command_line
from robustbench_bl.evaluation import stats
from robustbench_bl.models.common import input_std
from robustbench_bl.studies.common import discarded_per_layer
from robustbench_bl.studies.study import Cell, Row, TrainedStudy, text
from robustbench_bl.training import TrainConfig, budget, predict, recipe

EVAL = 500  # images on which each model's discarded fractions are reported
#: Noise levels at or above this share of the largest level are the "high-noise levels" judged.
HIGH = 0.5
#: The ways noise reaches the model: the papers' (normalized units, unclipped) and clipped pixels.
VARIANTS = ("normalized", "clipped")
NOISES = ("gauss", "uniform")
PAPER = "first paper Fig. 28: 85% > 50% > 0% in figures, no number"

Model = tuple[float, int, int]  # (train compression rate, training seed offset, epochs)


@dataclass(frozen=True)
class Preset:
    """`models`: (train compression rate, training seed offset, epochs); plain models with fewer
    epochs than the others are the early-stopped controls of lower clean accuracy. `levels`: noise
    std in normalized units. `train` / `test`: training budget and test images."""

    model: str
    train: int
    test: int
    models: tuple[Model, ...]
    levels: tuple[float, ...]


PRESETS = {
    "smoke": Preset("lenet", 200, 100, ((0.0, 0, 2), (0.5, 0, 2), (0.0, 0, 1)), (0.0, 1.0, 2.0)),
    # The shipped zoo FastNets (no training): 0 / 50 / 85% at seed 0, 0 / 50% at seed 1, and the
    # plain models stopped after 1 and 2 epochs, on 3,000 class-balanced offline test images with
    # RBL_DATA / --data, else on the packaged 1,000-image sample. Noise std 0..2 in normalized
    # units, as in the papers (2 is 0.49-0.52 in [0, 1] pixels with the models' CIFAR-10 std).
    "quick": Preset(
        "fastnet",
        50000,
        3000,
        ((0.0, 0, 6), (0.5, 0, 6), (0.85, 0, 6), (0.0, 1, 6), (0.5, 1, 6), (0.0, 0, 1), (0.0, 0, 2)),
        (0.0, 0.25, 0.5, 1.0, 2.0),
    ),
    "paper": Preset(
        "resnet18",
        50000,
        10000,
        ((0.0, 0, 350), (0.5, 0, 350), (0.85, 0, 350), (0.0, 1, 350), (0.5, 1, 350), (0.0, 0, 20)),
        (0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0),
    ),
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


class Outcomes:
    """Per-image correctness by (noise, variant, model, level), compared model against model as the
    paired accuracy difference averaged over the high noise levels."""

    def __init__(self, table: pd.DataFrame, seed: int) -> None:
        acc = table[table.metric == "accuracy"]
        self.n = int(acc.n.iloc[0])
        self.seed = seed
        self.correct = {
            (r.noise, r.variant, (r.train_compress, r.seed_offset, r.train_epochs), r.level): stats.unpack(
                r.correct, self.n
            )
            for r in acc.itertuples()
        }
        self.models = sorted({m for _, _, m, _ in self.correct})
        self.full = max(e for _, _, e in self.models)
        self.clean = {m: float(self.correct["gauss", "normalized", m, 0.0].mean()) for m in self.models}

    def compare(
        self, a: Model, b: Model, noise: str, variant: str, levels: list[float], label: str, paper: str = ""
    ) -> stats.Claim:
        """Accuracy of `a` minus `b`, mean over `levels`, with a 95% paired-bootstrap interval."""

        def high(m: Mapping[Any, np.ndarray], model: Model) -> np.ndarray:
            return np.mean([m[noise, variant, model, level] for level in levels], axis=0)

        interval = partial(stats.paired_bootstrap, self.correct, lambda m: high(m, a) - high(m, b), seed=self.seed)
        return stats.Claim.measured(label, interval, paper=paper)

    def controls(self, s: int) -> list[Model]:
        """The early-stopped plain models of seed offset `s`."""
        return [m for m in self.models if m[0] == 0 and m[2] < self.full and m[1] == s]


def judge(
    o: Outcomes, noise: str, variant: str, high: list[float]
) -> tuple[list[stats.Claim], list[stats.Claim], list[str]]:
    """Claims (normalized variant), controls and notes of one noise and variant at the levels `high`."""
    where = f"{noise} {variant}, std {', '.join(f'{v:g}' for v in high)}"
    claims, controls, notes = [], [], []
    for rate, s, e in o.models:
        if rate == 0 or e != o.full or (0.0, s, o.full) not in o.models:
            continue
        model = (rate, s, e)
        label = f"{where}: {rate:.0%} - 0% (seed +{s})"
        if variant == VARIANTS[0]:
            claims.append(o.compare(model, (0.0, s, o.full), noise, variant, high, label, PAPER))
        else:
            notes.append(str(o.compare(model, (0.0, s, o.full), noise, variant, high, label)))
        for ctrl in o.controls(s):
            label = (
                f"{where}: {rate:.0%} (clean {o.clean[model]:.3f}) - plain stopped at {ctrl[2]} epoch(s) "
                f"(clean {o.clean[ctrl]:.3f})"
            )
            controls.append(o.compare(model, ctrl, noise, variant, high, label))
    for rate, s, e in o.models:
        if s > 0 and (rate, 0, e) in o.models:
            c = o.compare((rate, s, e), (rate, 0, e), noise, variant, high, "")
            notes.append(
                f"{where}: seed +{s} - seed +0 at {rate:.0%} (yardstick): {c.estimate:+.3f} [{c.low:+.3f}, {c.high:+.3f}]"
            )
    return claims, controls, notes


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """Per noise and variant, the accuracy of each band-limited model minus a plain model's, averaged
    over the high noise levels, with 95% paired-bootstrap intervals: against the plain model of the
    same seed (the claim), against the early-stopped plain controls, and seed against seed."""
    o = Outcomes(table, seed)
    claims, controls, notes = [], [], []
    for (noise, variant), part in table[table.metric == "accuracy"].groupby(["noise", "variant"]):
        levels = sorted(part.level.unique())
        judged = judge(o, noise, variant, [v for v in levels if v > 0 and v >= HIGH * max(levels)])
        claims += judged[0]
        controls += judged[1]
        notes += judged[2]
    return stats.finding(
        "more band-limited, more robust to noise",
        claims,
        f"on {o.n} test images: accuracy of the band-limited model minus the plain model's (same seed), mean over the "
        f"high noise levels (std >= {HIGH:g} x the largest, normalized units, unclipped as in the papers); 95% "
        "paired-bootstrap intervals; the clipped-pixel variant, the early-stopped controls and seed-to-seed "
        "differences follow",
        [f"control ({c.verdict}): {c}" for c in controls] + notes,
    )


class NoiseRobustness(TrainedStudy[Preset, Model]):
    name = "noise_robustness"
    title = __doc__.splitlines()[0]
    presets = PRESETS

    def configs(self, train_size: int) -> dict[Model, TrainConfig]:
        """One training configuration per model; rate 0 means plain convolutions."""
        seed = self.args.seed
        return {
            (rate, s, e): recipe(
                self.p.model, "cifar10", compress_rate=rate, seed=seed + s, **budget(self.p.train, e, train_size)
            )
            for rate, s, e in self.p.models
        }

    def prepare(self) -> None:
        super().prepare()
        self.x, self.y = self.test.x.to(self.args.device), self.test.y.to(self.args.device)
        self.discarded = {m: discarded_per_layer(model, self.x[:EVAL]) for m, model in self.models.items()}
        self.clean: dict[Model, torch.Tensor] = {}  # level 0 is the same images for every noise and variant

    def cells(self) -> list[Cell]:
        return [
            self.cell(
                self.p.model,
                model_key=self.keys[rate, s, e],
                train_compress=rate,
                seed_offset=s,
                train_epochs=e,
                noise=noise,
                variant=variant,
                level=level,
            )
            for rate, s, e in self.p.models
            for noise in NOISES
            for variant in VARIANTS
            for level in self.p.levels
        ]

    def measure(self, cell: Cell) -> list[Row]:
        key = (cell["train_compress"], cell["seed_offset"], cell["train_epochs"])
        model, x = self.models[key], self.x
        with torch.no_grad():  # one seeded draw: the accuracy and the distortion are measured on the same images
            images = noisy(x, cell["noise"], cell["level"], cell["variant"], input_std(model), cell["seed"])
            distortion = (images - x).flatten(1).norm(dim=1).mean().item()
        if cell["level"] == 0 and key in self.clean:
            correct = self.clean[key]
        else:
            correct = predict(model, images, unclipped=cell["variant"] != "clipped").cpu() == self.y.cpu()
        if cell["level"] == 0:
            self.clean[key] = correct
        return [
            {
                "metric": "accuracy",
                "value": correct.float().mean().item(),
                "correct": stats.pack(correct),
                "distortion": distortion,
                "data_source": self.test.source_kind,
                "train_size": self.trained.meta[key]["metrics"]["train_size"],
                "discarded_per_layer": self.discarded[key],
            }
        ]

    def figures(self, table: pd.DataFrame) -> list[Path]:
        full = max(e for _, _, e in self.p.models)
        labels = [
            f"{r:.0%}" + (f" seed +{s}" if s else "") + (f" ({e} ep.)" if e < full else "")
            for r, s, e in zip(table.train_compress, table.seed_offset, table.train_epochs)
        ]
        return plots.lines(
            table.assign(model=labels, panel=table.noise + ", " + table.variant),
            x="level",
            y="value",
            hue="model",
            col="panel",
            col_wrap=2,
            xlabel="noise std (x the model's input std)",
            ylabel="test accuracy",
            title=f"{self.p.model} on CIFAR-10 ({len(self.test)} {self.test.source_kind} test images): accuracy under noise",
            stem=self.figure(),
        )

    def summary(self, table: pd.DataFrame) -> str:
        summary = table.pivot_table(
            index=["noise", "variant", "level"],
            columns=["train_compress", "seed_offset", "train_epochs"],
            values="value",
        )
        return text(summary)

    def finding(self, table: pd.DataFrame) -> stats.Finding:
        return finding(table, self.args.seed)


main = NoiseRobustness.main

if __name__ == "__main__":
    sys.exit(command_line(main))
