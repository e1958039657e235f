"""The studies, one module each: its science as a `study.Study` subclass (typed PRESETS, models,
cells, measure, figures, finding) and `main = TheStudy.main`.

`study` holds the base classes and the one runner (`Study.main`: command line, output folder,
rank-0 guard, resumable sweep, figures, summary, finding files, required studies run first);
`common` loads a study's test images and models, `bands` the band changes and per-layer fractions
of the band-limited studies, `channel_setup` the channel grid, the tuned strengths and
`ChannelStudy`. Run one with `rbl study NAME`, `python -m robustbench_bl.studies.NAME` or, from a
checkout, `python studies/NAME.py`.
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
