"""What training costs: time per epoch and memory, on a GPU (CUDA peak) or a CPU (bytes saved for
backward, the activation memory that band-limiting shrinks), optionally in fp16 on a GPU."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


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
) -> dict[str, float | str]:
    """Train `model` (on its device) for one epoch of SGD over (x, y); returns its cost.

    epoch_seconds: wall time of the epoch (synchronized on CUDA). memory_bytes: on CUDA the peak
    allocated during the epoch above what was allocated before it (model and optimizer state
    excluded); on a CPU the most bytes saved for backward by one step. fp16 trains under CUDA
    autocast with a gradient scaler and raises ValueError on a CPU.
    """
    device = next(model.parameters()).device
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
    start = time.perf_counter()
    for i in range(math.ceil(len(x) / batch_size)):
        xb, yb = x[i * batch_size : (i + 1) * batch_size].to(device), y[i * batch_size : (i + 1) * batch_size].to(device)
        if cuda:
            step(xb, yb)
        else:
            peak_saved = max(peak_saved, saved_bytes(lambda: step(xb, yb)))
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated(device) - base if cuda else peak_saved
    return {"epoch_seconds": seconds, "memory_bytes": float(memory), "memory_kind": "cuda_peak" if cuda else "saved_for_backward"}
