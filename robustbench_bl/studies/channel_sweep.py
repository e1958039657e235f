"""Channel sweep (second seed, Fig. 3.1): lossy input channels against non-adaptive attacks.

For each channel (FC = fft, CD = cd, SVD, Gaussian, Uniform, Laplace noise and JPEG) across its
sweep range: the channel's distortion against the defended model's accuracy on clean inputs and
after PGD-Linf (40 steps) and C&W-L2 (100 steps, unbounded) crafted on the bare model; the noise
channels take a majority vote. Finding to check: tuned right, all channels recover a similar share
of the bare model's accuracy. Each channel's best strength is stored for the adaptive-attack and
leaderboard studies.

    python studies/channel_sweep.py                 # quick preset (default), <= 10 min on a CPU
    python studies/channel_sweep.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from robustbench_bl import plots
from robustbench_bl.attacks import craft_nonadaptive, judge_rows
from robustbench_bl.cli import Study, command_line, parse_args
from robustbench_bl.defense import Defended
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.channel_setup import (
    CHANNELS,
    SWEEP_ATTACKS,
    best_rows,
    best_strengths,
    channel_at,
    load_models,
    setting_for,
    strengths,
    votes_for,
)

NAME = "channel_sweep"
#: test: images attacked; points: strengths per channel, spread over its sweep range.
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(test=20, points=2),
    "quick": dict(test=500, points=6),
    "paper": dict(test=1000, points=10),
}
#: Recoveries within this many points of each other count as 'similar' (the seed: ~0.85 for all).
SIMILAR = 0.15


def finding(best: pd.DataFrame) -> str:
    """The headline, per attack: each channel's recovery at its best strength, their spread, a verdict."""
    parts = []
    for column in [c for c in best.columns if c.startswith("recovery_") and c != "recovery_mean"]:
        recovery = best.set_index("channel")[column]
        spread = recovery.max() - recovery.min()
        verdict = "HOLDS" if spread <= SIMILAR else "DOES NOT HOLD"
        listed = ", ".join(f"{name} {value:.2f}" for name, value in recovery.items())
        parts.append(f"{column.removeprefix('recovery_')} {verdict} ({listed}; spread {spread:.3f})")
    edge = ", ".join(best[best.at_edge].channel) or "none"
    return (
        f"Finding ('tuned right, all channels recover a similar share of accuracy', spread <= {SIMILAR}), "
        "recovery = defended robust / bare clean accuracy at each best strength: "
        + "; ".join(parts)
        + f"; best at the lossy end of the sweep range: {edge}"
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p, setting = PRESETS[args.preset], setting_for(args)
    study = Study.from_args(args)
    models = load_models(args, setting, p["test"])
    if not distributed.is_main():
        return pd.DataFrame()  # under torchrun, rank 0 alone runs the sweep
    model, key = models.models[0.0], models.keys[0.0]
    x, y = models.test.x.to(args.device), models.test.y.to(args.device)
    epsilons = {"pgd-linf": setting.eps, "cw-l2": None}
    crafted: dict[str, torch.Tensor] = {}  # crafted on first need, so a resumed sweep with nothing left skips it

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        if not crafted:
            crafted.update(
                {
                    name: craft_nonadaptive(model, name, x, y, epsilons[name], args.seed, setting.options.get(name))
                    for name in SWEEP_ATTACKS
                }
            )
        channel = channel_at(cell["channel"], cell["strength"], seed=cell["seed"])  # seeded: a resume is bit-identical
        distortion = channel.distortion(x, draws=1).mean().item()  # one draw: a mean over all of x
        rows = judge_rows(Defended(model, channel, cell["votes"], seed=cell["seed"]).eval(), x, y, crafted)
        return [{**row, "distortion": distortion, "data_source": models.test.source_kind} for row in rows]

    base = {
        "study": NAME,
        "dataset": "cifar10",
        "model": setting.model,
        "model_key": key,
        "threat": "nonadaptive",
        "eps": setting.eps,
        "seed": args.seed,
        "n": len(x),
    }
    grid = [("identity", 0.0)] + [(name, s) for name in CHANNELS for s in strengths(name, p["points"])]
    cells = [{**base, "channel": name, "strength": s, "votes": votes_for(name, setting.votes)} for name, s in grid]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    current = table.merge(pd.DataFrame(cells), on=list(cells[0]))
    best = best_strengths(current)
    rows = best_rows(best)
    chosen = [{**base, "channel": name, "selection": "best", "points": p["points"]} for name in CHANNELS]
    table = run(chosen, lambda cell: rows[cell["channel"]], study.store, progress=False, desc=f"{NAME} best")

    labels = {"none": "clean", "pgd-linf": f"PGD-Linf {setting.eps * 255:.0f}/255", "cw-l2": "C&W-L2 (unbounded)"}
    curves = current[current.channel != "identity"].assign(condition=lambda t: t.attack.map(labels))
    paths = plots.lines(
        curves,
        x="distortion",
        y="value",
        hue="channel",
        col="condition",
        xlabel="channel distortion (mean L2)",
        ylabel="accuracy of the defended model",
        title=f"{setting.model} on CIFAR-10 ({models.test.source_kind} data): channels against non-adaptive attacks",
        stem=study.figure(),
    )
    bare = current[current.channel == "identity"].set_index("attack").value
    print("bare model: " + ", ".join(f"{labels[a]} {v:.3f}" for a, v in bare.items()))
    print(best.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    study.conclude(finding(best), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
