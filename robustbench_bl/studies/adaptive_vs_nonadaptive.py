"""Adaptive against non-adaptive attacks on the tuned channels (second paper, ch. 3).

Each channel at the strength the channel sweep tuned faces PGD-Linf (40 steps) over a grid of
budgets up to the standard 8/255 under four threat models: non-adaptive (crafted on the bare model),
BPDA (straight-through gradient), EOT (gradients averaged over draws) and BPDA+EOT, plus the generic
attacker's transfer attack crafted with EOT through a Laplace-noise proxy channel. Measured per cell
and example: whether the vote is fooled at each budget, hence the smallest budget of the grid that
fools it. Findings to check, per seed channel (JPEG is shown but not judged, as in the channel sweep):

- The thesis: the attacker should "find the smallest distance from the original image that closes
  the recovery window". Judged per example against the bare model: the strongest adaptive attacker's
  minimal budget over the bare model's, median with a bootstrap interval, closed when below
  CLOSED_RATIO; and the robust accuracy at the largest budget where the bare model keeps >= 20%
  (not at the floor), defended at most TOLERANCE above bare (paired bootstrap).
- "Adaptive attacks designed on [the Laplace] channel are often successful against other defenses",
  with "often" taken as: on more than half of the (channel, example) pairs the Laplace-proxy attack
  needs at most CLOSED_RATIO x the bare model's budget.

    python studies/adaptive_vs_nonadaptive.py                 # quick preset (default): zoo FastNet, 24 images
    python studies/adaptive_vs_nonadaptive.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
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
    # On the zoo's FastNet ~70 s an image (36 cells of 40-step PGD at four budgets, the non-adaptive
    # adversarials crafted once for all; one thread beside three other jobs): 24 images, ~28 min under
    # that load; the reference run takes 1,000 images.
    "quick": Preset(test=24, eot=4, grid=(0.125, 0.25, 0.5, 1.0)),
    "paper": Preset(test=2000, eot=32, grid=(0.0625, 0.125, 0.25, 0.5, 1.0)),
}


ATTACK = "pgd-linf"
ADAPTIVE = ("bpda", "eot", "bpda+eot")
TRANSFER = "laplace-transfer"
ATTACKERS = ("nonadaptive", *ADAPTIVE, TRANSFER)
#: The window counts as closed when the adaptive attacker needs at most this times the bare model's
#: minimal perturbation (median over the examples both classify right, paired).
CLOSED_RATIO = 2.0
#: Robust accuracy is compared at the largest budget where the bare model keeps at least this much
#: (below it every model sits at the floor and "no larger than the bare model's" holds by construction).
INFORMATIVE = 0.2
#: ... and the defended model may keep at most this much more than the bare model there.
TOLERANCE = 0.05
#: An example no budget of the grid fools counts at this times the largest budget (a lower bound).
CENSORED = 2.0
PAPER = (
    "second paper ch. 3: the attacker should 'find the smallest distance from the original image that closes the "
    "recovery window'; adaptive attacks (BPDA, EOT) close it; no number"
)
PAPER_TRANSFER = (
    "second paper ch. 3: 'adaptive attacks designed on [the additive Laplace] channel are often successful against "
    "other defenses'"
)


def budgets(table: pd.DataFrame, channel: str, attacker: str) -> np.ndarray:
    """Per example: the smallest budget of the grid whose adversarial fools the vote (CENSORED x the
    largest when none does), NaN where the vote is wrong on the clean input."""
    rows = table[(table.channel == channel) & (table.attacker == attacker)]
    n = int(rows.n.iloc[0])
    clean = stats.unpack(rows[rows.metric == "clean_accuracy"].correct.iloc[0], n)
    robust = rows[rows.metric == "robust_accuracy"].sort_values("epsilon")
    out = np.full(n, CENSORED * robust.epsilon.max())
    for eps, bits in zip(robust.epsilon[::-1], robust.correct[::-1]):  # largest first: the smallest fooling wins
        out[~stats.unpack(bits, n)] = eps
    out[~clean] = np.nan
    return out


def ratios(table: pd.DataFrame, channel: str, attacker: str) -> np.ndarray:
    """Per example both the bare model and the defended vote classify right: the attacker's minimal
    budget against the channel over the bare model's."""
    ratio = budgets(table, channel, attacker) / budgets(table, "identity", "nonadaptive")
    return ratio[~np.isnan(ratio)]


def window_claims(table: pd.DataFrame, name: str, seed: int) -> tuple[stats.Claim, stats.Claim, str]:
    """For one channel: the median minimal-budget ratio of the strongest adaptive attacker (needs <
    CLOSED_RATIO), the bare minus defended robust accuracy at the informative budget (needs > -TOLERANCE),
    and a note on the non-adaptive and transfer attackers."""
    per_attacker = {a: ratios(table, name, a) for a in ATTACKERS if (table.attacker == a).any()}
    median = {a: float(np.median(r)) for a, r in per_attacker.items()}
    strongest = min(ADAPTIVE, key=lambda a: median[a])
    label = (
        f"{name}: minimal budget of {strongest} over the bare model's, median over the examples (non-adaptive "
        f"x{median['nonadaptive']:.2g}, transfer x{median[TRANSFER]:.2g})"
    )
    median_ratio = partial(stats.bootstrap, per_attacker[strongest], seed=seed)
    window = stats.Claim.measured(label, median_ratio, threshold=CLOSED_RATIO, paper=PAPER, direction="below")
    robust = table[table.metric == "robust_accuracy"]
    bare_curve = robust[robust.channel == "identity"].set_index("epsilon").value.sort_index()
    eps = max([e for e, v in bare_curve.items() if v >= INFORMATIVE], default=bare_curve.index.min())
    at = robust[robust.epsilon == eps]
    n = int(at.n.iloc[0])
    outcomes = {(r.channel, r.attacker): stats.unpack(r.correct, n) for r in at.itertuples()}
    worst = min(ADAPTIVE, key=lambda a: outcomes[name, a].mean())
    bare = ("identity", "nonadaptive")
    label = (
        f"{name} at {eps * 255:.2g}/255 (bare keeps {outcomes[bare].mean():.3f}): bare - {worst} "
        f"{outcomes[name, worst].mean():.3f} (non-adaptive {outcomes[name, 'nonadaptive'].mean():.3f})"
    )
    difference = stats.paired_difference(outcomes, bare, (name, worst), seed)
    accuracy = stats.Claim.measured(label, difference, threshold=-TOLERANCE, paper=PAPER)
    return (
        window,
        accuracy,
        f"{name}: median minimal-budget ratio per attacker " + ", ".join(f"{a} x{m:.2g}" for a, m in median.items()),
    )


def transfer_claim(table: pd.DataFrame, seed: int) -> stats.Claim:
    """'Often successful' taken as: on more than half of the (seed channel, example) pairs, the
    Laplace-proxy attack needs at most CLOSED_RATIO x the bare model's minimal budget; bootstrap over
    the examples (the channels' outcomes on one example stay together)."""
    closed = []
    for name in [c for c in PAPER_CHANNELS if (table.channel == c).any()]:
        ratio = budgets(table, name, TRANSFER) / budgets(table, "identity", "nonadaptive")
        closed.append(np.where(np.isnan(ratio), np.nan, ratio <= CLOSED_RATIO))
    per_example = np.nanmean(np.stack(closed), axis=0)
    per_example = per_example[~np.isnan(per_example)]
    interval = partial(stats.bootstrap, per_example, np.mean, seed=seed)
    label = f"Laplace-proxy transfer: share of (channel, example) pairs fooled within x{CLOSED_RATIO:g} the bare budget"
    return stats.Claim.measured(label, interval, threshold=0.5, paper=PAPER_TRANSFER)


def finding(table: pd.DataFrame, seed: int = 0) -> stats.Finding:
    """Per seed channel: the strongest adaptive attacker's minimal-budget ratio against the bare model
    (closed below CLOSED_RATIO) and the robust accuracy at the informative budget; the Laplace-proxy
    transfer claim; JPEG and the per-attacker ratios as notes."""
    claims, notes = [], []
    for name in [c for c in CHANNELS if (table.channel == c).any()]:
        window, accuracy, note = window_claims(table, name, seed)
        if name in PAPER_CHANNELS:
            claims += [window, accuracy]
        else:
            notes += [
                f"not judged (JPEG, not a seed channel; the data are JPEG-decoded): {c}" for c in (window, accuracy)
            ]
        notes.append(note)
    claims.append(transfer_claim(table, seed))
    n = int(table.n.iloc[0])
    return stats.finding(
        "adaptive attacks close the window; a Laplace-proxy attacker often succeeds too",
        claims,
        f"PGD-Linf on {n} test images over budgets {', '.join(f'{e * 255:.2g}' for e in sorted(table.epsilon.dropna().unique()))}/255: "
        f"per example the smallest budget that fools (not fooled: {CENSORED:g} x the largest), its ratio to the bare "
        "model's, median with a bootstrap 95% interval; robust accuracy where the bare model keeps >= "
        f"{INFORMATIVE:g}, paired bootstrap",
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
        elif row["metric"] == "clean_accuracy":
            row["correct"] = stats.pack(out.clean_correct)
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
        self.crafted: list[torch.Tensor] | None = None

    def nonadaptive(self) -> list[torch.Tensor]:
        """The non-adaptive attacker's adversarials at each budget, crafted once on the bare model (they
        do not depend on the channel; kept in the run folder's `crafted/`) and judged by every defense."""
        if self.crafted is None:
            self.crafted = [
                attacks.craft_nonadaptive(
                    self.models[self.plain],
                    ATTACK,
                    self.x,
                    self.y,
                    self.setting.eps * g,
                    self.args.seed,
                    self.setting.options.get(ATTACK),
                    precision=self.args.precision,
                    store=self.folder.out / "crafted",
                )
                for g in self.p.grid
            ]
        return self.crafted

    def cells(self) -> list[Cell]:
        """The bare model, then each channel's attackers, the Laplace-proxy transfer cells last and
        together: their one crafted attack is judged on every channel while its stored file is at hand
        (as BPDA's file is for BPDA+EOT on a deterministic channel, two cells on)."""
        base = self.cell(self.setting.model, model_key=self.keys[self.plain], eps=self.setting.eps)
        bare = {
            "channel": "identity",
            "strength": 0.0,
            "strength_source": "bare",
            "votes": 1,
            "attacker": "nonadaptive",
        }
        own = [(name, attacker) for name in CHANNELS for attacker in ATTACKERS if attacker != TRANSFER]
        transfer = [(name, TRANSFER) for name in CHANNELS]
        return [{**base, **bare}] + [
            {
                **base,
                "channel": name,
                "strength": self.best[name],
                "strength_source": "channel_sweep",
                "votes": votes_for(name, self.setting.votes),
                "attacker": attacker,
            }
            for name, attacker in own + transfer
        ]

    def measure(self, cell: Cell) -> list[Row]:
        defended = Defended(self.models[self.plain], channel_at(cell["channel"], cell["strength"]), cell["votes"])
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
            crafted_before=None if threat.adaptive else self.nonadaptive(),
            # One Laplace-proxy attack judged on every channel; BPDA+EOT is BPDA on a deterministic one.
            store=self.folder.out / "crafted",
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
