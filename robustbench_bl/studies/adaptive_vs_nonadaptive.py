"""Adaptive against non-adaptive attacks on the tuned channels (second paper, ch. 3).

Each channel at its best strength from the channel sweep (or the midpoint of its sweep range when
no sweep was run) faces PGD-Linf (40 steps) over a grid of budgets up to the standard 8/255 under
four threat models: non-adaptive (crafted on the bare model), BPDA (straight-through gradient),
EOT (gradients averaged over draws) and BPDA+EOT, plus the generic attacker's transfer attack
crafted with EOT through a Laplace-noise proxy channel. Measured per cell: the robust-accuracy
curve over the budgets, and per example the smallest fooling perturbation found on the grid (its
Linf and L2 size; the median over the examples the vote gets right, with a bootstrap interval),
beside the channel's own distortion and the bare model's. Finding to check, per seed channel (JPEG
is shown but not judged, as in the channel sweep): the
strongest adaptive attack closes the window the non-adaptive one leaves open, i.e. at 8/255 the
defended robust accuracy is at most the bare model's + TOLERANCE (paired bootstrap over the images).

    python studies/adaptive_vs_nonadaptive.py                 # quick preset (default), <= 15 min on a CPU
    python studies/adaptive_vs_nonadaptive.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from robustbench_bl import attacks, plots
from robustbench_bl.cli import command_line
from robustbench_bl.defense import Defended
from robustbench_bl.evaluation import stats
from robustbench_bl.studies.channel_setup import CHANNELS, PAPER_CHANNELS, ChannelStudy, channel_at, votes_for
from robustbench_bl.studies.study import Cell, Row, text


@dataclass(frozen=True)
class Preset:
    """`test`: images attacked; `eot`: draws per EOT step; `grid`: the PGD budgets as fractions of
    the setting's eps (the largest is the standard budget the verdict is judged at)."""

    test: int
    eot: int
    grid: tuple[float, ...]


PRESETS = {
    "smoke": Preset(test=20, eot=2, grid=(0.5, 1.0)),
    "quick": Preset(test=500, eot=4, grid=(0.125, 0.25, 0.5, 1.0)),
    "paper": Preset(test=2000, eot=32, grid=(0.0625, 0.125, 0.25, 0.5, 1.0)),
}


ATTACK = "pgd-linf"
ADAPTIVE = ("bpda", "eot", "bpda+eot")
TRANSFER = "laplace-transfer"
ATTACKERS = ("nonadaptive", *ADAPTIVE, TRANSFER)
#: The window counts as closed when the strongest adaptive attack leaves at most the bare model's
#: robust accuracy plus this much.
TOLERANCE = 0.05
PAPER = "second paper ch. 3: adaptive attacks (BPDA, EOT) close the window again, no number"


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """Per channel: the bare model's robust accuracy minus the defended one's under the strongest
    adaptive attacker at the largest budget, with a 95% paired-bootstrap interval (needs > -TOLERANCE);
    the non-adaptive window and the median minimal perturbations as notes."""
    robust = table[table.metric == "robust_accuracy"]
    top = robust.epsilon.max()
    at_top = robust[robust.epsilon == top]
    n = int(at_top.n.iloc[0])
    outcomes = {(r.channel, r.attacker): stats.unpack(r.correct, n) for r in at_top.itertuples()}
    sizes = table[table.metric == "min_linf_median"].set_index(["channel", "attacker"])
    bare = ("identity", "nonadaptive")
    claims, notes = [], []
    for name in [c for c in CHANNELS if (c, "nonadaptive") in outcomes]:
        strongest = min((a for a in ADAPTIVE if (name, a) in outcomes), key=lambda a: outcomes[name, a].mean())
        label = (
            f"{name}: bare {outcomes[bare].mean():.3f} - {strongest} {outcomes[name, strongest].mean():.3f} "
            f"(non-adaptive {outcomes[name, 'nonadaptive'].mean():.3f}, transfer {outcomes[name, TRANSFER].mean():.3f})"
        )
        interval = stats.paired_difference(outcomes, bare, (name, strongest), seed)
        claim = stats.Claim.measured(label, interval, threshold=-TOLERANCE, paper=PAPER)
        if name in PAPER_CHANNELS:
            claims.append(claim)
        else:
            notes.append(f"not judged (JPEG, not a seed channel; the data are JPEG-decoded): {claim}")
        median = {a: sizes.loc[(name, a), "value"] for a in ("nonadaptive", strongest)}
        notes.append(
            f"{name}: median minimal Linf x255 non-adaptive {median['nonadaptive'] * 255:.2g}, {strongest} "
            f"{median[strongest] * 255:.2g}, bare {sizes.loc[bare, 'value'] * 255:.2g}; channel distortion (L2) "
            f"{sizes.loc[(name, strongest), 'distortion']:.3f}"
        )
    return stats.finding(
        "adaptive attacks close the window",
        claims,
        f"at PGD-Linf {top * 255:.0f}/255 on {n} test images: bare robust accuracy minus the defended one under the "
        f"strongest adaptive attacker (needs > -{TOLERANCE}), 95% paired-bootstrap intervals; minimal perturbations: "
        "the smallest budget of the grid that fools, censored at the largest",
        notes,
    )


def cell_rows(out: attacks.Outcome) -> list[dict[str, Any]]:
    """The attack's summary rows with the per-example robust outcomes packed on each robust_accuracy
    row, and the median minimal Linf / L2 perturbation over the clean-correct examples (not fooled
    on the grid: censored at the largest budget for Linf, left out for L2) with bootstrap intervals."""
    rows = attacks.summary_rows(out)
    for row in rows:
        if row["metric"] == "robust_accuracy":
            row["correct"] = stats.pack(out.robust[out.epsilons.index(row["epsilon"])])
    right = out.clean_correct
    fooled = out.fooled[-1][right]
    linf = torch.where(fooled, out.linf[-1][right], torch.full_like(out.linf[-1][right], max(out.epsilons)))
    for metric, values in (("min_linf_median", linf), ("min_l2_median", out.l2[-1][right][fooled])):
        if len(values):
            est, lo, hi = stats.bootstrap(values.double().numpy())
            rows.append({"metric": metric, "epsilon": max(out.epsilons), "value": est, "ci_low": lo, "ci_high": hi})
    return rows


class AdaptiveVsNonadaptive(ChannelStudy[Preset]):
    name = "adaptive_vs_nonadaptive"
    title = __doc__.splitlines()[0]
    presets = PRESETS
    requires = ("channel_sweep",)

    def prepare(self) -> None:
        super().prepare()
        self.best = self.tuned()
        self.proxy = attacks.channel_label(channel_at("laplace", self.best["laplace"]))

    def cells(self) -> list[Cell]:
        base = self.cell(self.setting.model, model_key=self.keys[0.0], eps=self.setting.eps)
        bare = {
            "channel": "identity",
            "strength": 0.0,
            "strength_source": "bare",
            "votes": 1,
            "attacker": "nonadaptive",
        }
        return [{**base, **bare}] + [
            {
                **base,
                "channel": name,
                "strength": self.best[name],
                "strength_source": "channel_sweep",
                "votes": votes_for(name, self.setting.votes),
                "attacker": attacker,
            }
            for name in CHANNELS
            for attacker in ATTACKERS
        ]

    def measure(self, cell: Cell) -> list[Row]:
        defended = Defended(self.models[0.0], channel_at(cell["channel"], cell["strength"]), cell["votes"])
        transfer = cell["attacker"] == TRANSFER
        threat = attacks.Threat.parse("eot" if transfer else cell["attacker"])
        out = attacks.run(
            defended,
            ATTACK,
            self.x,
            self.y,
            threat,
            epsilons=[self.setting.eps * g for g in self.p.grid],
            eot_samples=self.p.eot,
            seed=cell["seed"],
            transfer=self.proxy if transfer else None,
            options=self.setting.options.get(ATTACK),
            precision=self.args.precision,
        )
        settings = {
            "threat": threat.name,
            "attacker_precision": out.precision,
            "gradient_path": out.gradient_path,
            "transfer_from": self.proxy if transfer else None,
            "distortion": out.distortion,
            "data_source": self.test.source_kind,
        }
        return [{**settings, **row} for row in cell_rows(out)]

    def figures(self, table: pd.DataFrame) -> list[Path]:
        robust = table[table.metric == "robust_accuracy"]
        bare = robust[robust.channel == "identity"].drop(columns="attacker")
        curves = pd.concat([robust[robust.channel != "identity"], *(bare.assign(attacker=a) for a in ATTACKERS)])
        return plots.lines(
            curves.assign(budget=curves.epsilon * 255, channel=curves.channel.replace({"identity": "bare model"})),
            x="budget",
            y="value",
            hue="channel",
            col="attacker",
            col_wrap=3,
            xlabel="PGD-Linf budget (x 1/255)",
            ylabel="robust accuracy of the defended vote",
            title=f"{self.setting.model} on CIFAR-10 ({self.test.source_kind}, {len(self.x)} images): robust accuracy by "
            "attacker",
            stem=self.figure(),
        )

    def summary(self, table: pd.DataFrame) -> str:
        robust = table[table.metric == "robust_accuracy"]
        top = robust[robust.epsilon == robust.epsilon.max()]
        summary = top.pivot_table(index="channel", columns="attacker", values="value")
        return text(summary.reindex(index=["identity", *CHANNELS], columns=list(ATTACKERS)))

    def finding(self, table: pd.DataFrame) -> stats.Finding:
        return finding(table, self.args.seed)


main = AdaptiveVsNonadaptive.main

if __name__ == "__main__":
    sys.exit(command_line(main))
