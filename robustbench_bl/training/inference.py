"""Predictions and accuracy of a trained model, batched in eval mode."""

from __future__ import annotations

import torch
from torch import nn

from robustbench_bl.models.common import eval_mode, placement, run_model
from robustbench_bl.training.loop import check_inputs, resolve_device
from robustbench_bl.validation import check_images, check_labels, check_positive_int


def predict(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 500,
    device: str | torch.device | None = None,
    unclipped: bool = False,
) -> torch.Tensor:
    """Predicted labels of `model` on `x`, batched in eval mode (the model's own mode is restored
    after); on the model's device and in its dtype unless `device` is given. `unclipped=True`
    accepts images outside [0, 1] (noise added in normalized units and not clipped, as the papers do)."""
    return _predict(model, x, batch_size, device, unclipped)[0]


@torch.no_grad()
def _predict(
    model: nn.Module, x: torch.Tensor, batch_size: int, device: str | torch.device | None, unclipped: bool = False
) -> tuple[torch.Tensor, int | None]:
    """(predicted labels, number of classes the model scores; None for an empty x)."""
    if unclipped:
        check_images(x, "x", range_check=False)
    else:
        check_inputs(x)
    check_positive_int(batch_size, "batch_size")
    home, dtype = placement(model)
    dev = resolve_device(device) if device is not None else home
    labels, classes = [], None
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            logits = run_model(model, x[i : i + batch_size].to(dev, dtype))
            labels.append(logits.argmax(1).cpu())
            classes = logits.shape[-1]
    return (torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)), classes


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of `model` on (x, y), with `y` checked against the classes the model scores."""
    check_labels(y, len(check_inputs(x)), None, "y")
    if len(y) == 0:
        raise ValueError("x must hold at least one example to measure an accuracy, got an empty batch")
    predicted, classes = _predict(model, x, batch_size, None)
    check_labels(y, len(x), classes, "y")
    return (predicted == y.cpu()).float().mean().item()
