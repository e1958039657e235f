"""robustbench_bl: band-limited CNNs, lossy input channels, attacks, probes and studies.

Images are float tensors N x C x H x W in [0, 1]; normalization is a layer of each model.
`Defended` and `benchmark` are imported on first use, so `import robustbench_bl.spectral`
costs torch and little more (see docs/design.md for the layout).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robustbench_bl.defense import Defended
    from robustbench_bl.evaluation.benchmark import benchmark

__version__ = "0.1.0"
__all__ = ["Defended", "__version__", "benchmark"]
_LAZY = {"Defended": "robustbench_bl.defense", "benchmark": "robustbench_bl.evaluation.benchmark"}


def __getattr__(name: str) -> Any:
    """Import `Defended` and `benchmark` when first asked for."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'robustbench_bl' has no attribute {name!r}")
