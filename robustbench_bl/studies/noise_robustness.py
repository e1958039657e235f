"""Noise robustness of band-limited models (first paper section 4.4, Figs. 6 and 28; second paper Fig. 2.5).

Takes the same CNN trained at several compression rates of its band-limited convolutions (the zoo's
FastNets by default, and its whitening-free family where the zoo ships it; LeNets with --preset smoke)
and measures test accuracy under noise of increasing level, on three axes:

- Gaussian noise (Fig. 6, sigma 0 to 2): added after normalization, its std in units of the model's
  per-channel input std, not clipped; a dense grid where the plain model collapses. Judged.
- Uniform noise on Fig. 28's epsilon axis (0 to 1), as Foolbox 2's additive uniform noise draws it:
  U[-eps, eps] x (max - min) in [0, 1] pixels, clipped to [0, 1]. Judged.
- The Gaussian draws clipped to [0, 1] pixels (what a camera could deliver), on a coarse grid. Not judged.

The paper's claim: "models trained with higher compression are more robust to the inserted noise",
and band-limited CNNs "outperform the RPA-based method and under-fitted models (e.g., via early
stopping)". Judged on the paired accuracy difference (band-limited minus plain, same architecture and
seed; and the more compressed minus the less) averaged over the *informative* levels: those where the
plain model keeps more than twice chance accuracy (where every model sits at chance a difference is
zero by construction and would only dilute). Per training seed and pooled over seeds; the RPA
comparator (the plain model with bfloat16-rounded weights and activations, `precision.rounded`) and
the early-stopped plain models are controls with their own intervals.

    python studies/noise_robustness.py                 # quick preset (default): 191 cells, minutes on the packaged sample
    python studies/noise_robustness.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from robustbench_bl import plots
from robustbench_bl.cli import command_line
from robustbench_bl.evaluation import stats
from robustbench_bl.models.common import CPU_BATCH, input_std
from robustbench_bl.precision import rounded
from robustbench_bl.studies.common import ZOO_EPOCHS, discarded_per_layer, zoo_only
from robustbench_bl.studies.study import Cell, Row, TrainedStudy, text
from robustbench_bl.training import TrainConfig, budget, predict, recipe

EVAL = 500  # images on which each model's discarded fractions are reported
CHANCE = 0.1  # CIFAR-10's ten classes
#: A level informs the claim where the plain model compared against keeps more than this x chance.
INFORMATIVE = 2.0
#: The axes noise is measured on, as (noise, variant): see the module docstring.
GAUSS, FOOLBOX, CLIPPED = ("gauss", "normalized"), ("uniform", "foolbox"), ("gauss", "clipped")
PANELS = (GAUSS, FOOLBOX, CLIPPED)
#: The judged axes and the paper's figure for each.
PAPER = {
    GAUSS: "first paper Fig. 6 (sigma 0-2, ResNet-18): more compression, more robust; in figures, no number",
    FOOLBOX: "first paper Fig. 28 (uniform, epsilon 0-1, ResNet-18): more compression, more robust; no number",
}
AXIS = {
    GAUSS: "Gaussian: std (x the model's input std), unclipped [Fig. 6]",
    FOOLBOX: "uniform: Foolbox epsilon (pixels), clipped [Fig. 28]",
    CLIPPED: "Gaussian: std (x the model's input std), clipped to [0, 1]",
}
#: Arithmetic of an evaluation: float32, or the RPA comparator (bfloat16-rounded, `precision.rounded`).
FP32, RPA = "fp32", "bf16-rounded"

#: The whitening-free twin of an architecture: the same network with a learned first convolution
#: instead of the frozen whitening that amplifies the JPEG-poor high-frequency chroma directions ~40x.
WHITENING_FREE = {"fastnet": "fastnet_nw"}

Model = tuple[str, float, int, int]  # (architecture, train compression rate, training seed offset, epochs)
Curve = tuple[Model, str]  # a model and the arithmetic it is evaluated in


@dataclass(frozen=True)
class Preset:
    """`models`: (architecture, train compression rate, training seed offset, epochs); plain models
    with fewer epochs than the others are the early-stopped controls. `optional`: models used only
    where the zoo ships them (never trained by the study). `rpa`: models also evaluated in reduced
    precision. `levels`: Gaussian std (normalized units); `epsilons`: Foolbox uniform epsilon;
    `clipped`: the clipped Gaussian's std. `train` / `test`: training budget and test images."""

    train: int
    test: int
    models: tuple[Model, ...]
    levels: tuple[float, ...]
    epsilons: tuple[float, ...]
    clipped: tuple[float, ...]
    rpa: tuple[Model, ...] = ()
    optional: tuple[Model, ...] = ()


#: The dense grid where the plain FastNet collapses (std 0.25 leaves it near 0.2) and on to Fig. 6's 2.
DENSE = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
#: Fig. 28's epsilon axis, dense at the low end (eps 0.1 is a pixel std of 0.058, about std 0.23 above).
EPSILONS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
FAST = "fastnet"
PRESETS = {
    "smoke": Preset(
        200,
        100,
        (("lenet", 0.0, 0, 2), ("lenet", 0.5, 0, 2), ("lenet", 0.0, 0, 1)),
        (0.0, 0.5, 2.0),
        (0.0, 0.1, 0.5),
        (0.0, 1.0),
        rpa=(("lenet", 0.0, 0, 2),),
    ),
    # The shipped zoo FastNets (no training): 0 / 50 / 85% at seed 0, 0 / 50% at seed 1, the plain
    # models stopped after 1 and 2 epochs, and the whitening-free 0 / 50 / 85% where the zoo has them;
    # 3,000 class-balanced offline test images with RBL_DATA / --data, else the packaged 1,000-image sample.
    "quick": Preset(
        50000,
        3000,
        (
            (FAST, 0.0, 0, ZOO_EPOCHS),
            (FAST, 0.5, 0, ZOO_EPOCHS),
            (FAST, 0.85, 0, ZOO_EPOCHS),
            (FAST, 0.0, 1, ZOO_EPOCHS),
            (FAST, 0.5, 1, ZOO_EPOCHS),
            (FAST, 0.0, 0, 1),
            (FAST, 0.0, 0, 2),
        ),
        DENSE,
        EPSILONS,
        (0.0, 0.1, 0.25, 0.5, 2.0),
        rpa=((FAST, 0.0, 0, ZOO_EPOCHS),),
        optional=tuple(("fastnet_nw", rate, 0, ZOO_EPOCHS) for rate in (0.0, 0.5, 0.85)),
    ),
    "paper": Preset(
        50000,
        10000,
        tuple(
            ("resnet18", r, s, e)
            for r, s, e in ((0.0, 0, 350), (0.5, 0, 350), (0.85, 0, 350), (0.0, 1, 350), (0.5, 1, 350), (0.0, 0, 20))
        ),
        DENSE,
        EPSILONS,
        (0.0, 0.25, 0.5, 1.0, 2.0),
        rpa=(("resnet18", 0.0, 0, 350),),
    ),
}


def noisy(x: torch.Tensor, noise: str, level: float, variant: str, std: torch.Tensor, seed: int) -> torch.Tensor:
    """x plus one seeded draw of zero-mean noise. 'normalized' / 'clipped': std `level` in normalized
    units (per channel, `level` x the model's input std), Gaussian or uniform on [-b, b] with b = sqrt(3)
    x that std; 'clipped' clips the draw to [0, 1] pixels. 'foolbox' (uniform only): U[-level, level]
    in [0, 1] pixels, clipped, as Foolbox 2's additive uniform noise with bounds (0, 1)."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    if noise == "gauss":
        draw = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    else:
        draw = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype).mul_(2).sub_(1)
    if variant == "foolbox":
        if noise != "uniform":
            raise ValueError(
                f"the 'foolbox' variant is Foolbox's uniform noise; noise must be 'uniform', got {noise!r}"
            )
        return (x + draw * level).clamp_(0, 1)
    if noise == "uniform":
        draw.mul_(3**0.5)
    out = x + draw * (level * std.to(x).view(1, -1, 1, 1))
    return out.clamp_(0, 1) if variant == "clipped" else out


class Outcomes:
    """Per-image correctness by (panel, curve, level), compared curve against curve as the paired
    accuracy difference averaged over the informative levels of the reference."""

    def __init__(self, table: pd.DataFrame, seed: int) -> None:
        acc = table[table.metric == "accuracy"]
        self.n = int(acc.n.iloc[0])
        self.seed = seed
        self.correct = {
            (
                (r.noise, r.variant),
                ((r.model, r.train_compress, r.seed_offset, r.train_epochs), r.arithmetic),
                r.level,
            ): stats.unpack(r.correct, self.n)
            for r in acc.itertuples()
        }
        self.curves = sorted({c for _, c, _ in self.correct})
        self.models = sorted({m for m, a in self.curves if a == FP32})
        self.full = max(m[3] for m in self.models)
        self.clean = {c: float(self.correct[GAUSS, c, 0.0].mean()) for c in self.curves}

    def levels(self, panel: tuple[str, str], reference: Curve) -> tuple[list[float], str]:
        """The informative levels of `panel` for comparisons against `reference` (> 0, where it keeps
        more than INFORMATIVE x chance), else the smallest level > 0; and a word on which."""
        above = [lv for p, c, lv in self.correct if p == panel and c == reference and lv > 0]
        informative = [lv for lv in sorted(above) if self.correct[panel, reference, lv].mean() > INFORMATIVE * CHANCE]
        if informative:
            return informative, f"levels {informative[0]:g}-{informative[-1]:g}"
        return sorted(above)[:1], f"level {min(above):g} (no informative level)"

    def compare(
        self, pairs: list[tuple[Curve, Curve]], panel: tuple[str, str], label: str, paper: str = ""
    ) -> stats.Claim:
        """Accuracy of a minus b over each pair's informative levels (those of b), averaged over the pairs
        (one pair per seed; pooled when several), with a 95% paired-bootstrap interval over the images."""
        chosen = [self.levels(panel, b) for _, b in pairs]
        levels = [lvs for lvs, _ in chosen]

        def effect(m: Mapping[Any, np.ndarray]) -> np.ndarray:
            return np.mean(
                [
                    np.mean([m[panel, a, lv] - m[panel, b, lv] for lv in lvs], axis=0)
                    for (a, b), lvs in zip(pairs, levels)
                ],
                axis=0,
            )

        where = "; ".join(word for _, word in chosen)
        interval = partial(stats.paired_bootstrap, self.correct, effect, seed=self.seed)
        return stats.Claim.measured(f"{label} [{where}]", interval, paper=paper)

    def full_models(self, arch: str, seed: int) -> list[Model]:
        """The fully trained fp32 models of `arch` and `seed`, by compression rate."""
        return [m for m in self.models if m[0] == arch and m[2] == seed and m[3] == self.full]

    def controls(self, arch: str, seed: int) -> list[Model]:
        """The early-stopped plain models of `arch` and `seed`."""
        return [m for m in self.models if m[0] == arch and m[1] == 0 and m[2] == seed and m[3] < self.full]


def name(curve: Curve) -> str:
    """A curve as a person reads it: 'fastnet 50% seed +1', '(1 ep.)', '[bf16-rounded]'."""
    (arch, rate, s, e), arithmetic = curve
    return (
        f"{arch} {rate:.0%}"
        + (f" seed +{s}" if s else "")
        + f" ({e} ep.)"
        + (f" [{arithmetic}]" if arithmetic != FP32 else "")
    )


def claims_of(o: Outcomes, panel: tuple[str, str]) -> list[stats.Claim]:
    """The judged claims of one panel: per architecture, each band-limited model minus the plain one
    (per seed, then pooled over seeds), and each more compressed model minus the next less compressed."""
    claims = []
    for arch in sorted({m[0] for m in o.models}):
        by_seed = {
            s: {m[1]: m for m in o.full_models(arch, s)} for s in sorted({m[2] for m in o.models if m[0] == arch})
        }
        rates = sorted({r for models in by_seed.values() for r in models if r > 0})
        for rate in rates:
            pairs = [((m[rate], FP32), (m[0.0], FP32)) for m in by_seed.values() if rate in m and 0.0 in m]
            for pair in pairs:
                claims.append(
                    o.compare([pair], panel, f"{AXIS[panel]}: {name(pair[0])} - {name(pair[1])}", PAPER[panel])
                )
            if len(pairs) > 1:
                claims.append(
                    o.compare(
                        pairs,
                        panel,
                        f"{AXIS[panel]}: {arch} {rate:.0%} - 0%, pooled over {len(pairs)} seeds",
                        PAPER[panel],
                    )
                )
        for _s, models in by_seed.items():
            steps = sorted(r for r in models if r > 0)
            for low, high in itertools.pairwise(steps):
                pair = ((models[high], FP32), (models[low], FP32))
                claims.append(
                    o.compare([pair], panel, f"{AXIS[panel]}: {name(pair[0])} - {name(pair[1])}", PAPER[panel])
                )
    return claims


def controls_of(o: Outcomes, panel: tuple[str, str]) -> list[str]:
    """Notes with verdicts: each band-limited model against the early-stopped plain models and the RPA
    comparator of its seed, the RPA comparator against fp32, and seed against seed (the yardstick)."""
    notes = []
    for arch, _, s, _ in [m for m in o.models if m[1] == 0 and m[3] == o.full]:
        plain = ((arch, 0.0, s, o.full), FP32)
        others = [(c, f"{name(c)} (clean {o.clean[c]:.3f})") for c in [(m, FP32) for m in o.controls(arch, s)]]
        others += [
            (c, f"{name(c)} (the RPA comparator, clean {o.clean[c]:.3f})")
            for c in o.curves
            if c[0] == plain[0] and c[1] == RPA
        ]
        for model in [m for m in o.full_models(arch, s) if m[1] > 0]:
            for other, label in others:
                c = o.compare([((model, FP32), other)], panel, f"{AXIS[panel]}: {name((model, FP32))} - {label}")
                notes.append(f"control ({c.verdict}): {c}")
        for rpa in [c for c in o.curves if c[0] == plain[0] and c[1] == RPA]:
            c = o.compare([(rpa, plain)], panel, f"{AXIS[panel]}: {name(rpa)} - {name(plain)}")
            notes.append(f"RPA against float32 (yardstick): {c.estimate:+.3f} [{c.low:+.3f}, {c.high:+.3f}]")
    for m in [m for m in o.models if m[2] > 0]:
        first = (m[0], m[1], 0, m[3])
        if first in o.models:
            c = o.compare([((m, FP32), (first, FP32))], panel, "")
            notes.append(
                f"{AXIS[panel]}: seed +{m[2]} - seed +0 at {m[0]} {m[1]:.0%} (yardstick): {c.estimate:+.3f} [{c.low:+.3f}, {c.high:+.3f}]"
            )
    return notes


def whitening_of(o: Outcomes, panel: tuple[str, str]) -> list[str]:
    """Notes on the whitening confound: each whitening-free model minus its whitened twin (same rate,
    seed and epochs) over the twin's informative levels. Positive at 0% and shrinking with the rate
    would mean the whitening, not the lack of band-limiting, makes the plain model fragile."""
    notes = []
    for whitened, free in WHITENING_FREE.items():
        for model in [m for m in o.models if m[0] == free]:
            twin = (whitened, *model[1:])
            if twin in o.models:
                c = o.compare(
                    [((model, FP32), (twin, FP32))],
                    panel,
                    f"{AXIS[panel]}: {name((model, FP32))} - {name((twin, FP32))}",
                )
                clean = o.clean[model, FP32] - o.clean[twin, FP32]
                notes.append(
                    f"whitening confound ({c.verdict} that the free one is more robust): {c} (clean {clean:+.3f})"
                )
    return notes


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """Per judged axis (Fig. 6's Gaussian, Fig. 28's uniform): each band-limited model minus the plain
    one and each more compressed minus the less, averaged over the informative levels, with 95%
    paired-bootstrap intervals; the early-stopped and RPA controls and the seed yardstick as notes."""
    o = Outcomes(table, seed)
    panels = [p for p in PAPER if any(k[0] == p for k in o.correct)]
    claims = [c for p in panels for c in claims_of(o, p)]
    notes = [n for p in panels for n in controls_of(o, p) + whitening_of(o, p)]
    seeds = sorted({m[2] for m in o.models})
    return stats.finding(
        "models trained with higher compression are more robust to the inserted noise",
        claims,
        f"on {o.n} test images and {len(seeds)} training seed(s): accuracy of the more band-limited model minus the "
        f"less (same architecture and seed; pooled over seeds), mean over the informative levels (where the "
        f"compared-against model keeps > {INFORMATIVE:g} x chance); 95% paired-bootstrap intervals; early-stopped and "
        "RPA controls, the whitening-free models against their whitened twins, the clipped variant's table and "
        "seed-to-seed differences follow",
        notes,
    )


class NoiseRobustness(TrainedStudy[Preset, Model]):
    name = "noise_robustness"
    title = __doc__.splitlines()[0]
    presets = PRESETS

    def configs(self, train_size: int) -> dict[Model, TrainConfig]:
        """One training configuration per model (rate 0: plain convolutions); the preset's optional
        models only where the zoo ships them."""
        seed = self.args.seed

        def config(m: Model) -> TrainConfig:
            arch, rate, s, e = m
            return recipe(arch, "cifar10", compress_rate=rate, seed=seed + s, **budget(self.p.train, e, train_size))

        return {m: config(m) for m in self.p.models} | zoo_only({m: config(m) for m in self.p.optional})

    def prepare(self) -> None:
        super().prepare()
        self.x, self.y = self.test.x.to(self.args.device), self.test.y.to(self.args.device)
        self.discarded = {m: discarded_per_layer(model, self.x[:EVAL]) for m, model in self.models.items()}
        self.evaluated: dict[Curve, nn.Module] = {(m, FP32): model for m, model in self.models.items()}
        self.evaluated |= {(m, RPA): rounded(self.models[m]) for m in self.p.rpa if m in self.models}
        self.clean: dict[Curve, torch.Tensor] = {}  # level 0 is the same images on every axis

    def cells(self) -> list[Cell]:
        grid = {GAUSS: self.p.levels, FOOLBOX: self.p.epsilons, CLIPPED: self.p.clipped}
        return [
            self.cell(
                m[0],
                model_key=self.keys[m],
                train_compress=m[1],
                seed_offset=m[2],
                train_epochs=m[3],
                arithmetic=arithmetic,
                noise=noise,
                variant=variant,
                level=level,
            )
            for m, arithmetic in self.evaluated
            for noise, variant in self.panels((m, arithmetic))
            for level in grid[noise, variant]
        ]

    def panels(self, curve: Curve) -> list[tuple[str, str]]:
        """The axes a curve is measured on: the judged ones for every curve, the clipped variant (not
        judged) for the fully trained float32 models of seed 0 only."""
        (_, _, s, e), arithmetic = curve
        full = e == max(m[3] for m in self.p.models)
        return [p for p in PANELS if p in PAPER or (arithmetic == FP32 and s == 0 and full)]

    def measure(self, cell: Cell) -> list[Row]:
        key = (cell["model"], cell["train_compress"], cell["seed_offset"], cell["train_epochs"])
        curve, x = (key, cell["arithmetic"]), self.x
        model = self.evaluated[curve]
        with torch.no_grad():  # one seeded draw: the accuracy and the distortion are measured on the same images
            images = noisy(x, cell["noise"], cell["level"], cell["variant"], input_std(self.models[key]), cell["seed"])
            distortion = (images - x).flatten(1).norm(dim=1).mean().item()
        if cell["level"] == 0 and curve in self.clean:
            correct = self.clean[curve]
        else:
            correct = predict(model, images, CPU_BATCH, unclipped=cell["variant"] == "normalized").cpu() == self.y.cpu()
        if cell["level"] == 0:
            self.clean[curve] = correct
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
        curves = zip(table.model, table.train_compress, table.seed_offset, table.train_epochs, table.arithmetic)
        labels = [name(((a, r, s, e), ar)) for a, r, s, e, ar in curves]
        panels = [AXIS[p] for p in zip(table.noise, table.variant)]
        return plots.lines(
            table.assign(curve=labels, panel=panels),
            x="level",
            y="value",
            hue="curve",
            col="panel",
            col_wrap=3,
            sharex=False,
            xlabel="noise level",
            ylabel="test accuracy",
            title=f"CIFAR-10 ({len(self.test)} {self.test.source_kind} test images): accuracy under noise",
            stem=self.figure(),
        )

    def summary(self, table: pd.DataFrame) -> str:
        summary = table.pivot_table(
            index=["noise", "variant", "level"],
            columns=["model", "train_compress", "seed_offset", "train_epochs", "arithmetic"],
            values="value",
        )
        return text(summary)

    def finding(self, table: pd.DataFrame) -> stats.Finding:
        return finding(table, self.args.seed)


main = NoiseRobustness.main

if __name__ == "__main__":
    sys.exit(command_line(main))
