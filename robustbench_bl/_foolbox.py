"""Import foolbox with its one known SciPy DeprecationWarning filtered, and no other warning hidden."""

from __future__ import annotations

import warnings
from types import ModuleType


def import_foolbox() -> ModuleType:
    """Return the foolbox module; foolbox 3.3.x imports scipy.ndimage.filters, deprecated in SciPy."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Please import `gaussian_filter`", category=DeprecationWarning)
        import foolbox

    return foolbox
