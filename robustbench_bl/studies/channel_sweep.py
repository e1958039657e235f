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
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from robustbench_bl import plots
from robustbench_bl.attacks import craft_nonadaptive, judge_rows
from robustbench_bl.cli import command_line, parse_args
from robustbench_bl.defense import Defended
from robustbench_bl.evaluation import stats
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.output import RunFolder
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.channel_setup import (
    CHANNELS,
    PAPER_CHANNELS,
    SWEEP_ATTACKS,
    best_rows,
    best_strengths,
    channel_at,
    extend,
    load_models,
    setting_for,
    strengths,
    votes_for,
)

NAME = "channel_sweep"
#: test: images attacked; points: strengths per channel, spread over its sweep range.
#: widen: at most this many extra strengths per channel when its best sits at the edge.
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(test=20, points=2, widen=1),
    "quick": dict(test=2000, points=6, widen=8),
    "paper": dict(test=10000, points=10, widen=10),
}
#: The recovery a channel must exceed: the paper's ~0.85, less 10 points of slack.
RECOVERED = 0.75
PAPER = "second paper Fig. 3.1: all channels recover ~0.85 of clean accuracy"


def finding(best: pd.DataFrame, n: int, bare: float) -> stats.Finding:
    """Per seed channel and attack: recovery at the best strength (defended robust accuracy / the bare
    model's clean accuracy `bare`) with the exact binomial interval of the robust accuracy over the n
    images, scaled by `bare`; JPEG and the channels left at the edge of their range as notes."""
    claims, notes = [], []
    for r in best.to_dict("records"):
        for attack in [c.removeprefix("robust_") for c in r if c.startswith("robust_")]:
            robust = r[f"robust_{attack}"]
            _, lo, hi = stats.binomial_interval(round(robust * n), n)
            label = f"{r['channel']} at {r['strength']:g} (distortion {r['distortion']:.3f}), {attack}: recovery"
            claim = stats.Claim(label, robust / bare, lo / bare, hi / bare, threshold=RECOVERED, paper=PAPER)
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


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p, setting = PRESETS[args.preset], setting_for(args)
    study = RunFolder.from_args(args)
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
                    name: craft_nonadaptive(
                        model,
                        name,
                        x,
                        y,
                        epsilons[name],
                        args.seed,
                        setting.options.get(name),
                        precision=args.precision,
                    )
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
    grid = {name: strengths(name, p["points"]) for name in CHANNELS}
    executor = study.executor(args)  # one executor for every widening round
    for round_ in range(p["widen"] + 1):
        swept = [("identity", 0.0)] + [(name, s) for name in CHANNELS for s in grid[name]]
        cells = [{**base, "channel": name, "strength": s, "votes": votes_for(name, setting.votes)} for name, s in swept]
        table = run(cells, measure, study.store, executor=executor, progress=not args.quiet, desc=NAME)
        current = table.merge(pd.DataFrame(cells), on=list(cells[0]))
        best = best_strengths(current, {name: g[-1] for name, g in grid.items()})
        wider = {name: extend(name, grid[name]) for name in best[best.at_edge].channel}
        if all(s is None for s in wider.values()) or round_ == p["widen"]:
            break
        for name, s in wider.items():
            if s is not None:
                grid[name].append(s)
    rows = best_rows(best)
    chosen = [{**base, "channel": name, "selection": "best", "points": len(grid[name])} for name in CHANNELS]
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
    study.conclude(finding(best, len(x), bare["none"]), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
