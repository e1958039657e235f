"""The training loop of every non-FastNet model (SGD or Adam with a schedule, optional augmentation,
DistributedDataParallel under torchrun), the device choice and the input check it shares."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from robustbench_bl import data as datasets
from robustbench_bl.runtime import distributed
from robustbench_bl.training.config import TrainConfig
from robustbench_bl.validation import check_images

#: The device types the package runs on.
DEVICE_TYPES = ("cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when available, else the CPU; 'cpu', 'cuda', 'cuda:1', ... as asked. Other
    device types (mps, meta, ...) and CUDA on a machine without it are a ValueError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if chosen.type not in DEVICE_TYPES:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r} (type {chosen.type})")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asks for CUDA, but no CUDA device is available here")
    return chosen


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4, mode: str = "constant") -> torch.Tensor:
    """Random crop after padding by `pad` (zeros, or F.pad's `mode`) and a horizontal flip per image.

    pad=4 with zeros is the standard CIFAR augmentation; the FastNet recipe uses pad=2, 'reflect'.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    idx_n = torch.arange(n, device=x.device)[:, None, None, None]
    idx_c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[idx_n, idx_c, rows, cols]
    flip = torch.rand(n, generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True
        )
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, steps // 3), gamma=0.1)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)


def train(
    model: nn.Module,
    dataset: datasets.Dataset,
    config: TrainConfig,
    device: str | torch.device = "auto",
    progress: bool = True,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> list[dict[str, float]]:
    """Train `model` in place on `dataset` as `config` says; returns one row per epoch.

    Under torchrun the model is wrapped in DistributedDataParallel: every rank draws the same
    global batch (same seed) and takes its share, and the loss is scaled so that the averaged
    gradient equals the single-process one, whatever the number of ranks.
    `on_epoch(epoch, model)` runs once before training (epoch -1: as initialized) and after each
    epoch (studies use it to record layer statistics).
    """
    check_inputs(dataset.x, "dataset.x")
    distributed.setup()
    rank, world = distributed.rank_world()
    dev = resolve_device(device)
    if world > 1 and dev.type == "cuda":
        dev = distributed.local_device()  # one GPU per rank: cuda:LOCAL_RANK
    model.to(dev).train()
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    generator = torch.Generator(device=dev).manual_seed(config.seed)
    x, y = dataset.x.to(dev), dataset.y.to(dev)
    steps_per_epoch = math.ceil(len(y) / config.batch_size)
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config, config.epochs * steps_per_epoch)
    history = []
    if on_epoch is not None:
        on_epoch(-1, model)
    bar = tqdm(range(config.epochs), desc=f"train {config.model}", disable=not progress or rank != 0, unit="epoch")
    for epoch in bar:
        order = torch.randperm(len(y), generator=generator, device=dev)
        total_loss, correct, start = 0.0, 0.0, time.perf_counter()
        for i in range(steps_per_epoch):
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            xb, yb = x[idx], y[idx]
            if config.augment and xb.dim() == 4:
                xb = augment_batch(xb, generator)
            xb, yb = xb[rank::world], yb[rank::world]
            logits = net(xb)
            loss_sum = F.cross_entropy(logits, yb, reduction="sum")
            if not torch.isfinite(loss_sum):
                raise FloatingPointError(
                    f"training loss became {loss_sum.item()} at epoch {epoch}; lower lr={config.lr}"
                )
            optimizer.zero_grad(set_to_none=True)
            # DDP averages gradients over ranks, so scale by world / global batch size.
            (loss_sum * world / len(idx)).backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss_sum.item()
            correct += (logits.argmax(1) == yb).sum().item()
        total_loss, correct = distributed.all_reduce_sum([total_loss, correct], dev)
        row = {
            "epoch": epoch,
            "loss": total_loss / len(y),
            "train_accuracy": correct / len(y),
            "epoch_seconds": time.perf_counter() - start,
        }
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_accuracy']:.3f}")
        if on_epoch is not None:
            on_epoch(epoch, model)
    model.eval()
    return history


def check_inputs(x: object, name: str = "x") -> torch.Tensor:
    """Images N x C x H x W in [0, 1], or series N x C x L (any real values)."""
    if isinstance(x, torch.Tensor) and x.dim() == 3:
        return check_images(x, name, ndim=3, range_check=False)
    return check_images(x, name)
