"""What training costs: time per epoch and memory, on a GPU (CUDA peak) or a CPU (bytes saved for
backward, the activation memory that band-limiting shrinks), optionally in fp16 on a GPU."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_bl.models.common import placement


def saved_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the tensors autograd saves for backward while running fn()."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def epoch_cost(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 128, fp16: bool = False, lr: float = 0.01
) -> dict[str, Any]:
    """Train `model` (on its device) for one epoch of SGD over (x, y); returns its cost.

    epoch_seconds: the median step time times the number of steps (synchronized on CUDA), which
    a burst of load from other processes on a shared machine barely moves. memory_bytes: on CUDA the peak
    allocated during the epoch above what was allocated before it (model and optimizer state
    excluded); on a CPU the most bytes saved for backward by one step. fp16 trains under CUDA
    autocast with a gradient scaler and raises ValueError on a CPU.
    """
    device = placement(model)[0]
    cuda = device.type == "cuda"
    if fp16 and not cuda:
        raise ValueError("fp16 needs a CUDA device (CPU autocast supports bfloat16 only)")
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    peak_saved = 0

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        with torch.autocast("cuda", dtype=torch.float16, enabled=fp16):
            loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    seconds = []
    for i in range(math.ceil(len(x) / batch_size)):
        xb, yb = (
            x[i * batch_size : (i + 1) * batch_size].to(device),
            y[i * batch_size : (i + 1) * batch_size].to(device),
        )
        start = time.perf_counter()
        if cuda:
            step(xb, yb)
            torch.cuda.synchronize(device)
        else:
            peak_saved = max(peak_saved, saved_bytes(lambda: step(xb, yb)))
        seconds.append(time.perf_counter() - start)
    memory = torch.cuda.max_memory_allocated(device) - base if cuda else peak_saved
    kind = "cuda_peak" if cuda else "saved_for_backward"
    return {
        "epoch_seconds": statistics.median(seconds) * len(seconds),
        "memory_bytes": float(memory),
        "memory_kind": kind,
    }


def relative_costs(
    model: nn.Module,
    baseline: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    repeats: int = 3,
    fp16: bool = False,
    batch_size: int = 128,
) -> list[dict[str, float | str]]:
    """Epoch time and memory of `model`, absolute and relative to `baseline`, measured side by side.

    The two alternate epoch by epoch `repeats` times (swapping which goes first) and the time
    ratio is the median of the per-pair ratios, so slow drifts in the load of a shared machine
    cancel out; one batch each first warms up allocators and caches.
    """
    for m in (model, baseline):
        epoch_cost(m, x[:batch_size], y[:batch_size], batch_size=batch_size, fp16=fp16)

    def pair(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        # Alternate which runs first: the first of two back-to-back epochs tends to be the slower.
        order = (model, baseline) if i % 2 == 0 else (baseline, model)
        costs = {id(m): epoch_cost(m, x, y, batch_size=batch_size, fp16=fp16) for m in order}
        return costs[id(model)], costs[id(baseline)]

    pairs = [pair(i) for i in range(repeats)]
    seconds = statistics.median(m["epoch_seconds"] for m, _ in pairs)
    ratio = statistics.median(m["epoch_seconds"] / b["epoch_seconds"] for m, b in pairs)
    ours, theirs = pairs[0]
    kind = ours["memory_kind"]
    return [
        {
            "metric": "epoch_seconds",
            "value": seconds,
            "relative": ratio,
            "pair_ratios": json.dumps([round(m["epoch_seconds"] / b["epoch_seconds"], 6) for m, b in pairs]),
            "memory_kind": kind,
        },
        {
            "metric": "memory_bytes",
            "value": ours["memory_bytes"],
            "relative": ours["memory_bytes"] / theirs["memory_bytes"],
            "memory_kind": kind,
        },
    ]
