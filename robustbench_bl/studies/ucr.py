"""Band-limited FCN on UCR time series: train against test compression, Friedman and Nemenyi
ranking across data sets (first seed, Figs. 22, 23 and 27).

Trains the FCN (Wang et al. 2017) with band-limited 1D convolutions at several compression
rates on each bundled UCR data set and tests each model at every rate (band changed on a copy).
Models tested at the rate they were trained at are ranked per data set; the Friedman test asks
whether the rates differ, the Nemenyi critical difference (CD) which pairs do. Finding to check:
moderate compression (up to 50%) costs no significant accuracy against 0%.

    python studies/ucr.py                 # quick preset (default), <= 10 min on a CPU
    python studies/ucr.py --preset smoke  # seconds, what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

from robustbench_bl import data, plots
from robustbench_bl.cli import Study, command_line, parse_args
from robustbench_bl.evaluation.critical_difference import average_ranks, cliques, friedman, nemenyi_cd
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.bands import with_band
from robustbench_bl.training import CheckpointStore, evaluate, recipe

NAME = "ucr"
#: The largest train compression that must stay within the CD of 0% for the finding to hold.
MODERATE = 0.5

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        datasets=("ItalyPowerDemand", "GunPoint"),
        train=20,
        test=40,
        epochs=1,
        lr=3e-3,
        train_rates=(0.0, 0.5, 0.85),
        test_rates=(0.0, 0.5, 0.85),
    ),
    # The four smallest data sets (OSULeaf and ACSF1, long series, do not fit 10 CPU minutes),
    # at most 300 test series each.
    "quick": dict(
        datasets=("GunPoint", "ArrowHead", "ItalyPowerDemand", "BasicMotions"),
        train=None,
        test=300,
        epochs=20,
        lr=3e-3,
        train_rates=(0.0, 0.5, 0.85),
        test_rates=(0.0, 0.25, 0.5, 0.75, 0.85),
    ),
    "paper": dict(
        datasets=data.UCR_DATASETS,
        train=None,
        test=None,
        epochs=2000,
        lr=1e-3,
        train_rates=(0.0, 0.25, 0.5, 0.75, 0.85),
        test_rates=(0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.85),
    ),
}


def ranking(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, float, float, float]:
    """Diagonal accuracies (data sets x train compression), average ranks, Friedman (stat, p) and the CD."""
    diagonal = table[table.train_compress == table.test_compress]
    scores = diagonal.pivot_table(index="dataset", columns="train_compress", values="value")
    stat, p = friedman(scores)
    return scores, average_ranks(scores), stat, p, nemenyi_cd(scores.shape[1], scores.shape[0])


def finding(ranks: pd.Series, stat: float, p: float, cd: float) -> str:
    """Whether every rate up to MODERATE ranks within the CD of 0%, with the test's numbers."""
    gaps = {r: ranks[r] - ranks[0.0] for r in ranks.index}
    holds = all(gap <= cd for r, gap in gaps.items() if r <= MODERATE)
    groups = "; ".join("{" + ", ".join(f"{r:.0%}" for r in g) + "}" for g in cliques(ranks, cd)) or "none"
    verdict = "HOLDS" if holds else "DOES NOT HOLD"
    return (
        f"Finding ('up to {MODERATE:.0%} compression is not significantly worse than 0%') {verdict}: average ranks "
        + ", ".join(f"{r:.0%}: {v:.2f}" for r, v in ranks.items())
        + f"; Friedman chi2 = {stat:.2f}, p = {p:.3f}; Nemenyi CD (alpha 0.05) = {cd:.2f}; not significantly different: {groups}"
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv, dataset=None)
    p = PRESETS[args.preset]
    study = Study.from_args(args)
    tests = {name: data.ucr(name, "test") for name in p["datasets"]}
    if p["test"]:
        tests = {name: t.at_most(p["test"], seed=args.seed) for name, t in tests.items()}
    print("data: " + ", ".join(f"{n} ({len(t)} test series, {t.source})" for n, t in tests.items()))
    configs = {
        (name, rate): recipe(
            "fcn1d", name, compress_rate=rate, epochs=p["epochs"], lr=p["lr"], limit=p["train"], seed=args.seed
        )
        for name in p["datasets"]
        for rate in p["train_rates"]
    }
    store = CheckpointStore(args.checkpoints)
    models = {k: store.get_or_train(cfg, device=args.device, progress=not args.quiet)[0] for k, cfg in configs.items()}
    if not distributed.is_main():
        return pd.DataFrame()
    keys = {k: cfg.key("aeon") for k, cfg in configs.items()}

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        model = with_band(models[cell["dataset"], cell["train_compress"]], compress_rate=cell["test_compress"])
        test = tests[cell["dataset"]]
        return [{"metric": "accuracy", "value": evaluate(model, test.x, test.y), "data_source": test.source_kind}]

    cells = [
        {
            "study": NAME,
            "dataset": name,
            "model": "fcn1d",
            "model_key": keys[name, train],
            "train_compress": train,
            "test_compress": test_rate,
            "seed": args.seed,
            "n": len(tests[name]),
        }
        for (name, train) in configs
        for test_rate in p["test_rates"]
    ]
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table[table.model_key.isin(keys.values())]
    paths = plots.lines(
        table.assign(train=table.train_compress.map("{:.0%}".format)),
        x="test_compress",
        y="value",
        hue="train",
        col="dataset",
        col_wrap=3,
        stem=study.figure(),
        xlabel="test compression",
        ylabel="test accuracy",
        title="FCN on UCR: accuracy by train (hue) and test compression",
    )
    scores, ranks, stat, p_value, cd = ranking(table)
    paths += plots.rank_intervals(
        ranks.rename(index="{:.0%}".format),
        cd,
        stem=study.figure(f"{NAME}_cd"),
        title=f"FCN train compression over {len(scores)} UCR data sets (Friedman p = {p_value:.3f})",
    )
    print(scores.to_string(float_format=lambda v: f"{v:.3f}"))
    study.conclude(finding(ranks, stat, p_value, cd), paths)
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
