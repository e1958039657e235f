"""Argument checks shared by every module, so bad input fails early with one clear message.

Each check raises ValueError/TypeError naming the argument and what it accepts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor


def check_images(x: object, name: str = "x", *, ndim: int = 4, range_check: bool = True) -> torch.Tensor:
    """Check that `x` is a floating tensor of rank `ndim` with values in [0, 1]; return it.

    Images are N x C x H x W (ndim=4); time series N x C x L use ndim=3 and range_check=False.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32/float64/float16), got dtype {x.dtype}")
    if x.dim() != ndim:
        layout = {4: "N x C x H x W", 3: "N x C x L"}.get(ndim, f"rank {ndim}")
        raise ValueError(f"{name} must be {layout} (rank {ndim}), got shape {tuple(x.shape)}")
    if not range_check:
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return x
    if x.numel():
        # One reduction and one sync: this runs on every attack step. NaN propagates through
        # aminmax, and infinities fall outside [0, 1].
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))
        if lo != lo or hi != hi:
            raise ValueError(f"{name} contains NaN values")
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{name} must hold values in [0, 1], got range [{lo:.4g}, {hi:.4g}]; normalization belongs inside the model"
            )
    return x


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Check that `value` is one of `choices` (strings); return it."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_range(
    value: object,
    name: str,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check that `value` is a real number in the given interval; return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    ok_low = v >= low if low_inclusive else v > low
    ok_high = v <= high if high_inclusive else v < high
    if not (ok_low and ok_high) or v != v:
        lb = "[" if low_inclusive else "("
        hb = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in {lb}{low}, {high}{hb}, got {value!r}")
    return v


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Check that `value` is an int >= minimum; return it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_labels(y: object, n: int, num_classes: int | None, name: str = "y") -> Tensor:
    """Check that `y` is an integer tensor of `n` labels in [0, num_classes) (any range if None); return it."""
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer labels, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer labels (int64), got dtype {y.dtype}")
    if y.dim() != 1 or len(y) != n:
        raise ValueError(
            f"{name} must be a 1-D tensor with one label per example of x ({n}), got shape {tuple(y.shape)}"
        )
    if num_classes is not None and n and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{name} must hold labels in [0, {num_classes - 1}], got range [{y.min().item()}, {y.max().item()}]"
        )
    return y


def read_json_record(path: Path, what: str, key: str, kind: type, fix: str) -> dict:
    """The JSON object stored in `path` (`what`: 'zoo card', ...), which must hold `key` of type
    `kind`; a damaged or foreign file is a ValueError naming the file and the `fix`."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{what} {path} is damaged ({err}); {fix}") from None
    if not isinstance(record, dict) or not isinstance(record.get(key), kind):
        raise ValueError(f"{what} {path} is damaged (not a {what}: no {key!r}); {fix}")
    return record
