"""Relative error of one compressed convolution against F.conv2d (first seed, Fig. 24).

A CIFAR-10 image convolved with a random 5x5 filter (3 input channels, 'same' padding), with
the 'lead' scheme (the low-frequency corner blocks that the band-limited layers keep) and the
fine-grained 'top' scheme (the same number of coefficients, those of largest input energy), at
increasing compression. The quick and paper presets repeat it over several images (mean and
95% interval). Finding to check: the error grows with compression, and 'top' errs less than 'lead'.

    python studies/conv_error.py                 # quick preset (default), seconds
    python studies/conv_error.py --preset smoke  # what the tests run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from robustbench_bl import data, plots
from robustbench_bl.conv_error import SCHEMES, conv_errors
from robustbench_bl.cli import command_line
from robustbench_bl.study import Study, parse_args
from robustbench_bl.sweep import run

NAME = "conv_error"
RATES = tuple(round(0.05 * i, 2) for i in range(20))  # 0 to 95%

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(images=1, rates=(0.0, 0.5, 0.85)),
    "quick": dict(images=20, rates=RATES),
    "paper": dict(images=1, rates=RATES),
}


def finding(table: pd.DataFrame) -> str:
    """Mean error per scheme at each rate: does it grow with the rate, and is 'top' below 'lead'?"""
    mean = table.pivot_table(index="compress_rate", columns="scheme", values="value")
    grows = all(mean[s].is_monotonic_increasing for s in SCHEMES)
    top_lower = bool((mean.top[mean.index > 0] <= mean.lead[mean.index > 0]).all())
    picks = ", ".join(f"{r:.0%}: lead {row.lead:.3f} / top {row.top:.3f}" for r, row in mean.iterrows() if r in (0.25, 0.5, 0.85))
    verdict = "HOLDS" if grows and top_lower else "DOES NOT HOLD"
    return (
        f"Finding ('error grows with compression; top below lead') {verdict}: grows monotonically: {grows}; "
        f"top <= lead at every rate > 0: {top_lower}; mean relative error {picks}"
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    p = PRESETS[args.preset]
    study = Study.from_args(args)
    test = data.cifar10("test", root=args.data).at_most(p["images"], seed=args.seed)
    print(f"data: {len(test)} test image(s) from {test.source}")
    weight = torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(args.seed), dtype=torch.float64)

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        x = test.x[cell["image"] : cell["image"] + 1].double()
        errors = conv_errors(x, weight, 2, cell["compress_rate"])
        return [{"metric": "relative_error", "scheme": s, "value": e, "discarded": d, "data_source": test.source_kind} for s, (e, d) in errors.items()]

    cells = [
        {"study": NAME, "dataset": "cifar10", "image": i, "filter": "randn 1x3x5x5", "padding": 2, "compress_rate": r, "seed": args.seed}
        for i in range(len(test))
        for r in p["rates"]
    ]  # fmt: skip
    table = run(cells, measure, study.store, executor=study.executor(args), progress=not args.quiet, desc=NAME)
    table = table[(table.seed == args.seed) & (table.image < len(test)) & table.compress_rate.isin(p["rates"])]
    paths = plots.lines(
        table, x="discarded", y="value", hue="scheme", style="scheme", stem=study.figure(),
        xlabel="fraction of coefficients discarded", ylabel="relative error vs F.conv2d",
        title=f"5x5 conv of {len(test)} CIFAR-10 image(s) ({test.source_kind}): compression error",
    )  # fmt: skip
    print(table.pivot_table(index="compress_rate", columns="scheme", values="value").to_string(float_format=lambda v: f"{v:.3f}"))
    print(finding(table))
    print(f"wrote {study.store.path.with_suffix('.csv')} and {', '.join(map(str, paths))}")
    return table


if __name__ == "__main__":
    sys.exit(command_line(main))
