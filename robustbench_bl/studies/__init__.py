"""The studies, one module each (PRESETS and `main(argv)`), and what they share.

`common` picks a study's preset and loads its test images and models (the command line and output
folder are `cli.parse_args` and `runtime.output.RunFolder`, shared with `rbl attack`),
`bands` the band changes and per-layer fractions of the band-limited studies, `channel_setup` the
channel grid and tuned strengths of the channel studies. Run one with `rbl study NAME`,
`python -m robustbench_bl.studies.NAME` or, from a checkout, `python studies/NAME.py`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from robustbench_bl.validation import check_choice

NAMES = (
    "accuracy_vs_compression",
    "adaptive_vs_nonadaptive",
    "channel_sweep",
    "compression_mismatch",
    "conv_error",
    "decision_based",
    "energy_dynamics",
    "instability",
    "leaderboard",
    "noise_robustness",
    "resources",
    "ucr",
)


def module(name: str) -> ModuleType:
    """The module of study `name` (one of NAMES), imported on demand."""
    return importlib.import_module(f"{__name__}.{check_choice(name, 'study', NAMES)}")
