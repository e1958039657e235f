"""The versions recorded in every result row and checkpoint, so a number can be traced to its code."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of Python, this package and the libraries that shape its numbers."""
    out = {"python": platform.python_version()}
    for dist in ("robustbench-bl", "torch", "numpy", "foolbox", "scipy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out
