"""Decision-based attacks on band-limited models (second seed, section 2.3.3): who needs the larger perturbation.

The same CNN trained with full-spectrum convolutions and band-limited at 50% and 85% compression is
attacked by Foolbox's decision-based attacks (boundary, HopSkipJump, additive Gaussian noise,
blended uniform noise, salt-and-pepper, Gaussian blur), which only query labels. Per example, the
smallest L2 perturbation each attack finds; on the examples both models classify right, the share on
which the band-limited model needs the larger one. Finding to check: the band-limited models need
larger perturbations (share above one half).

    python studies/decision_based.py                 # quick preset (default), <= 10 min on a CPU
    python studies/decision_based.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

from robustbench_bl import plots
from robustbench_bl.attacks.minimal import ATTACKS, larger_share, minimal_perturbations
from robustbench_bl.cli import Study, command_line, parse_args
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.channel_setup import load_models, setting_for

NAME = "decision_based"
#: test: images attacked; points: epsilon steps of the additive-noise attack; options: attack
#: budgets (the registry's defaults where absent).
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        test=16,
        rates=(0.0, 0.5),
        points=4,
        options={
            "boundary": {"steps": 20},
            "hopskipjump": {"steps": 2, "max_gradient_eval_steps": 20},
            "additive-gaussian": {"repeats": 5},
            "blended-uniform": {"directions": 20, "steps": 10},
            "salt-and-pepper": {"steps": 20},
            "gaussian-blur": {"steps": 10},
        },
    ),
    "quick": dict(
        test=120,
        rates=(0.0, 0.5, 0.85),
        points=12,
        options={
            "boundary": {"steps": 300},
            "hopskipjump": {"steps": 4, "initial_gradient_eval_steps": 20, "max_gradient_eval_steps": 50},
            "additive-gaussian": {"repeats": 25},
            "salt-and-pepper": {"steps": 100},
            "gaussian-blur": {"steps": 50},
        },
    ),
    "paper": dict(test=1000, rates=(0.0, 0.5, 0.85), points=32, options={}),
}


def finding(shares: pd.DataFrame) -> str:
    """The headline: per band-limited model and attack, the share of examples on which it needs the larger perturbation."""
    above = shares.larger_share > 0.5
    verdict = (
        "HOLDS"
        if above.all()
        else "DOES NOT HOLD"
        if not above.any()
        else f"HOLDS FOR {above.sum()} OF {len(above)} (compression, attack) PAIRS"
    )
    parts = [
        f"{rate:.0%}: "
        + ", ".join(f"{r.attack} {r.larger_share:.2f}" for r in part.itertuples())
        + f" (mean {part.larger_share.mean():.2f})"
        for rate, part in shares.groupby("train_compress")
    ]
    return (
        f"Finding ('band-limited models need larger perturbations': share > 0.5) {verdict}: share of the examples both "
        "models classify right on which the band-limited one needs the larger L2 perturbation; " + "; ".join(parts)
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p, setting = PRESETS[args.preset], setting_for(args)
    study = Study.from_args(args)
    models = load_models(args, setting, p["test"], rates=p["rates"])
    if not distributed.is_main():
        return pd.DataFrame()  # under torchrun, rank 0 alone runs the sweep
    x, y = models.test.x.to(args.device), models.test.y.to(args.device)

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        model = models.models[cell["train_compress"]]
        options = p["options"].get(cell["attack"])
        rows = minimal_perturbations(
            model, cell["attack"], x, y, seed=cell["seed"], points=p["points"], options=options
        )
        return [{**row, "data_source": models.test.source_kind} for row in rows]

    base = {
        "study": NAME,
        "dataset": "cifar10",
        "model": setting.model,
        "points": p["points"],
        "seed": args.seed,
        "n": len(x),
    }
    cells = [
        {
            **base,
            "model_key": models.keys[rate],
            "train_compress": rate,
            "attack": attack,
            "options": json.dumps(p["options"].get(attack, {}), sort_keys=True),
        }
        for rate in p["rates"]
        for attack in ATTACKS
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table.merge(pd.DataFrame(cells), on=list(cells[0]))
    shares = larger_share(table)

    found = table[table.fooled.astype(bool)].assign(compression=lambda t: t.train_compress.map(lambda r: f"{r:.0%}"))
    paths = plots.distributions(
        found,
        x="attack",
        y="value",
        hue="compression",
        log=True,
        xlabel="decision-based attack",
        ylabel="minimal L2 perturbation (log scale)",
        title=f"{setting.model} on CIFAR-10 ({models.test.source_kind} data): minimal perturbations by train compression",
        stem=study.figure(),
    )
    print(shares.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    study.conclude(finding(shares), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
