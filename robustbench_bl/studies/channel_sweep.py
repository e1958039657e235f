"""Channel sweep (second paper, Fig. 3.1): lossy input channels against non-adaptive attacks.

For each of the paper's channels (FC = fft, CD = cd, SVD, Gaussian, Uniform, Laplace noise; JPEG
beside them, not in the verdict) across its strengths: the channel's distortion against the
defended model's accuracy on clean inputs and after PGD-Linf (40 steps, 8/255) and C&W-L2 (100
steps, unbounded) crafted on the bare model; the noise channels take a majority vote. A channel
whose best strength sits at the lossy end of its swept range is swept further, one step at a time,
until the best lies inside (or the channel's bound is reached). Finding to check, per channel and
attack: the defended classifier recovers most of the bare model's clean accuracy (the paper: ~85%),
judged as recovery above RECOVERED with an exact binomial 95% interval. JPEG: the offline CIFAR-10
copy was itself decoded from JPEG q75, so JPEG near that quality measures the data, not a defense.
Each channel's best strength is stored for the adaptive-attack and leaderboard studies.

    python studies/channel_sweep.py                 # quick preset (default), <= 15 min on a CPU
    python studies/channel_sweep.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from robustbench_bl import plots
from robustbench_bl.attacks import craft_nonadaptive, judge_rows
from robustbench_bl.cli import command_line
from robustbench_bl.defense import Defended
from robustbench_bl.evaluation import stats
from robustbench_bl.studies.channel_setup import (
    CHANNELS,
    PAPER_CHANNELS,
    SWEEP_ATTACKS,
    ChannelStudy,
    best_rows,
    best_strengths,
    channel_at,
    extend,
    strengths,
    votes_for,
)
from robustbench_bl.studies.study import Cell, Row, Sweeper, text


@dataclass(frozen=True)
class Preset:
    """`test`: images attacked; `points`: strengths per channel, spread over its sweep range;
    `widen`: at most this many extra strengths per channel when its best sits at the edge."""

    test: int
    points: int
    widen: int


PRESETS = {
    "smoke": Preset(test=20, points=2, widen=1),
    "quick": Preset(test=2000, points=6, widen=8),
    "paper": Preset(test=10000, points=10, widen=10),
}
#: The recovery a channel must exceed: the paper's ~0.85, less 10 points of slack.
RECOVERED = 0.75
PAPER = "second paper Fig. 3.1: all channels recover ~0.85 of clean accuracy"


def recovery(robust: float, n: int, bare: float) -> stats.Interval:
    """The interval of a recovery (robust accuracy over n images / the bare model's clean accuracy
    `bare`): the exact binomial interval of the robust accuracy, scaled by `bare`."""

    def interval(level: float) -> tuple[float, float, float]:
        _, lo, hi = stats.binomial_interval(round(robust * n), n, level)
        return robust / bare, lo / bare, hi / bare

    return interval


def finding(best: pd.DataFrame, n: int, bare: float) -> stats.Finding:
    """Per seed channel and attack: recovery at the best strength (defended robust accuracy / the bare
    model's clean accuracy `bare`) with the exact binomial interval of the robust accuracy over the n
    images, scaled by `bare`; JPEG and the channels left at the edge of their range as notes."""
    claims, notes = [], []
    for r in best.to_dict("records"):
        for attack in [c.removeprefix("robust_") for c in r if c.startswith("robust_")]:
            robust = r[f"robust_{attack}"]
            label = f"{r['channel']} at {r['strength']:g} (distortion {r['distortion']:.3f}), {attack}: recovery"
            claim = stats.Claim.measured(label, recovery(robust, n, bare), threshold=RECOVERED, paper=PAPER)
            if r["channel"] in PAPER_CHANNELS:
                claims.append(claim)
            else:
                notes.append(f"not judged (JPEG, see the docstring): {claim}")
    edge = ", ".join(best[best.at_edge].channel) or "none"
    notes.append(f"best strength still at the lossy end of the widened range: {edge}")
    return stats.finding(
        f"tuned right, every channel recovers most of the clean accuracy (> {RECOVERED})",
        claims,
        f"on {n} test images: recovery = defended robust accuracy / bare clean accuracy at each channel's best strength, "
        "exact binomial 95% interval of the robust accuracy (the bare accuracy and the choice of the best strength "
        "are taken as fixed)",
        notes,
    )


class ChannelSweep(ChannelStudy[Preset]):
    name = "channel_sweep"
    title = __doc__.splitlines()[0]
    presets = PRESETS

    def prepare(self) -> None:
        super().prepare()
        self.crafted: dict[str, torch.Tensor] = {}  # crafted on first need: a resumed sweep with nothing left skips it
        self.grid = {name: strengths(name, self.p.points) for name in CHANNELS}

    def craft(self) -> dict[str, torch.Tensor]:
        """The non-adaptive adversarials of the plain model, crafted once."""
        if not self.crafted:
            s = self.setting
            epsilons = {"pgd-linf": s.eps, "cw-l2": None}
            self.crafted = {
                name: craft_nonadaptive(
                    self.models[0.0],
                    name,
                    self.x,
                    self.y,
                    epsilons[name],
                    self.args.seed,
                    s.options.get(name),
                    precision=self.args.precision,
                )
                for name in SWEEP_ATTACKS
            }
        return self.crafted

    def base(self) -> Cell:
        return self.cell(self.setting.model, model_key=self.keys[0.0], threat="nonadaptive", eps=self.setting.eps)

    def cells(self) -> list[Cell]:
        swept = [("identity", 0.0)] + [(name, s) for name in CHANNELS for s in self.grid[name]]
        return [
            {**self.base(), "channel": c, "strength": s, "votes": votes_for(c, self.setting.votes)} for c, s in swept
        ]

    def measure(self, cell: Cell) -> list[Row]:
        channel = channel_at(cell["channel"], cell["strength"], seed=cell["seed"])  # seeded: a resume is bit-identical
        distortion = channel.distortion(self.x, draws=1).mean().item()  # one draw: a mean over all of x
        defended = Defended(self.models[0.0], channel, cell["votes"], seed=cell["seed"]).eval()
        rows = judge_rows(defended, self.x, self.y, self.craft())
        return [{**row, "distortion": distortion, "data_source": self.test.source_kind} for row in rows]

    def sweep(self, measure_cells: Sweeper) -> pd.DataFrame:
        """Sweep each channel's grid, widening it past the lossy end while the best strength sits
        there (at most `widen` rounds); then store each channel's best strength and recovery."""
        for round_ in range(self.p.widen + 1):
            table = super().sweep(measure_cells)
            self.best = best_strengths(table, {name: g[-1] for name, g in self.grid.items()})
            wider = {name: extend(name, self.grid[name]) for name in self.best[self.best.at_edge].channel}
            if all(s is None for s in wider.values()) or round_ == self.p.widen:
                break
            for name, s in wider.items():
                if s is not None:
                    self.grid[name].append(s)
        rows = best_rows(self.best)
        chosen = [{**self.base(), "channel": c, "selection": "best", "points": len(self.grid[c])} for c in CHANNELS]
        measure_cells(chosen, lambda cell: rows[cell["channel"]], f"{self.name} best")
        return table

    def labels(self) -> dict[str, str]:
        return {
            "none": "clean",
            "pgd-linf": f"PGD-Linf {self.setting.eps * 255:.0f}/255",
            "cw-l2": "C&W-L2 (unbounded)",
        }

    def figures(self, table: pd.DataFrame) -> list[Path]:
        curves = table[table.channel != "identity"].assign(condition=lambda t: t.attack.map(self.labels()))
        return plots.lines(
            curves,
            x="distortion",
            y="value",
            hue="channel",
            col="condition",
            xlabel="channel distortion (mean L2)",
            ylabel="accuracy of the defended model",
            title=f"{self.setting.model} on CIFAR-10 ({self.test.source_kind} data): channels against non-adaptive attacks",
            stem=self.figure(),
        )

    def summary(self, table: pd.DataFrame) -> str:
        bare = table[table.channel == "identity"].set_index("attack").value
        labels = self.labels()
        return (
            "bare model: "
            + ", ".join(f"{labels[a]} {v:.3f}" for a, v in bare.items())
            + "\n"
            + text(self.best, index=False)
        )

    def finding(self, table: pd.DataFrame) -> stats.Finding:
        bare = table[(table.channel == "identity") & (table.attack == "none")].value.iloc[0]
        return finding(self.best, len(self.x), bare)


main = ChannelSweep.main

if __name__ == "__main__":
    sys.exit(command_line(main))
