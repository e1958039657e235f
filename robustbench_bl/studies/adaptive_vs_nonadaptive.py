"""Adaptive against non-adaptive attacks on the tuned channels (second seed, ch. 3).

Each channel at its best strength from the channel sweep (or the midpoint of its sweep range when
no sweep was run) faces PGD-Linf under four threat models: non-adaptive (crafted on the bare
model), BPDA (straight-through gradient), EOT (gradients averaged over draws) and BPDA+EOT, plus
the generic attacker's transfer attack crafted with EOT through a Laplace-noise proxy channel.
Finding to check: adaptive attacks close the window the non-adaptive attack leaves open.

    python studies/adaptive_vs_nonadaptive.py                 # quick preset (default), <= 10 min on a CPU
    python studies/adaptive_vs_nonadaptive.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

from robustbench_bl import attacks, plots
from robustbench_bl.cli import ArgumentParser, Study, command_line, parse_args
from robustbench_bl.defense import Defended
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.channel_setup import (
    CHANNELS,
    add_sweep_option,
    channel_at,
    load_models,
    read_best,
    setting_for,
    sweep_csv,
    votes_for,
)

NAME = "adaptive_vs_nonadaptive"
#: test: images attacked; eot: draws per EOT step.
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(test=20, eot=2),
    "quick": dict(test=200, eot=8),
    "paper": dict(test=1000, eot=32),
}
ATTACK = "pgd-linf"
ADAPTIVE = ("bpda", "eot", "bpda+eot")
TRANSFER = "laplace-transfer"
ATTACKERS = ("nonadaptive", *ADAPTIVE, TRANSFER)
#: The window counts as closed when the strongest adaptive attack leaves at most the bare model's
#: robust accuracy plus this much (about two standard errors at 200 images).
TOLERANCE = 0.05


def finding(robust: pd.DataFrame) -> str:
    """The headline: per channel, non-adaptive against the strongest adaptive robust accuracy, next to the bare model."""
    bare = robust.loc["identity", "nonadaptive"]
    channels = robust.drop(index="identity")
    worst = channels[list(ADAPTIVE)].min(axis=1)
    holds = bool((worst <= bare + TOLERANCE).all())
    listed = ", ".join(f"{name} {channels.loc[name, 'nonadaptive']:.2f}->{worst[name]:.2f}" for name in channels.index)
    transfer = channels[TRANSFER].mean()
    verdict = "HOLDS" if holds else "DOES NOT HOLD"
    return (
        f"Finding ('adaptive attacks close the window', strongest adaptive <= bare + {TOLERANCE}) {verdict}: "
        f"robust accuracy non-adaptive->strongest adaptive: {listed}; bare model {bare:.2f}; "
        f"Laplace-proxy transfer mean {transfer:.2f} vs non-adaptive mean {channels['nonadaptive'].mean():.2f}"
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(
        NAME, __doc__.splitlines()[0], argv, add_sweep_option(ArgumentParser(description=__doc__.splitlines()[0]))
    )
    p, setting = PRESETS[args.preset], setting_for(args)
    study = Study.from_args(args)
    models = load_models(args, setting, p["test"])
    if not distributed.is_main():
        return pd.DataFrame()  # under torchrun, rank 0 alone runs the sweep
    model, key = models.models[0.0], models.keys[0.0]
    x, y = models.test.x.to(args.device), models.test.y.to(args.device)
    best = read_best(sweep_csv(args), key)
    print("strengths: " + ", ".join(f"{name} {s:g} ({source})" for name, (s, source) in best.items()))
    proxy = attacks.channel_label(channel_at("laplace", best["laplace"][0]))

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        defended = Defended(model, channel_at(cell["channel"], cell["strength"]), cell["votes"])
        transfer = cell["attacker"] == TRANSFER
        frame = attacks.evaluate(
            defended,
            ATTACK,
            x,
            y,
            threat="eot" if transfer else cell["attacker"],
            epsilons=[cell["eps"]],
            eot_samples=p["eot"],
            seed=cell["seed"],
            transfer=proxy if transfer else None,
            options=setting.options.get(ATTACK),
        )
        # the cell names the channel and its strength; evaluate's 'channel' is the same as one label
        return frame.drop(columns="channel").assign(data_source=models.test.source_kind).to_dict("records")

    base = {
        "study": NAME,
        "dataset": "cifar10",
        "model": setting.model,
        "model_key": key,
        "eps": setting.eps,
        "seed": args.seed,
        "n": len(x),
    }
    cells = [
        {
            **base,
            "channel": "identity",
            "strength": 0.0,
            "strength_source": "bare",
            "votes": 1,
            "attacker": "nonadaptive",
        }
    ]
    cells += [
        {
            **base,
            "channel": name,
            "strength": best[name][0],
            "strength_source": best[name][1],
            "votes": votes_for(name, setting.votes),
            "attacker": attacker,
        }
        for name in CHANNELS
        for attacker in ATTACKERS
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    current = table.merge(pd.DataFrame(cells), on=list(cells[0]))
    robust = current[current.metric == "robust_accuracy"]
    summary = robust.pivot_table(index="channel", columns="attacker", values="value").reindex(
        index=["identity", *CHANNELS], columns=list(ATTACKERS)
    )
    paths = plots.heatmap(
        robust.assign(channel=robust.channel + ":" + robust.strength.map("{:g}".format)),
        index="channel",
        columns="attacker",
        values="value",
        stem=study.figure(),
        title=f"{setting.model}, PGD-Linf {setting.eps * 255:.0f}/255: robust accuracy by attacker",
    )
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    study.conclude(finding(summary), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
