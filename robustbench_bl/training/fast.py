"""The FastNet recipe: ten epochs of Nesterov SGD to a strong CIFAR-10 model on a CPU.

After the published airbench94 recipe (Jordan, 2024: batch 1024, ~10 epochs), written here for any
device, in float32 or bfloat16 autocast (`precision`, float32 master weights either way):
patch-whitening init, label smoothing 0.2, summed loss with a triangular learning-rate schedule,
BN shifts at 64x the learning rate, decoupled weight decay, lookahead towards an EMA every 5
steps, reflect-pad-2 crops and flips. Training is resumable from a per-epoch checkpoint.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from robustbench_bl import data as datasets
from robustbench_bl import precision as precision_
from robustbench_bl.models.fastnet import FastNet
from robustbench_bl.runtime.files import atomic_write
from robustbench_bl.training import TrainConfig, augment_batch, check_inputs, resolve_device, train
from robustbench_bl.validation import check_positive_int, check_range


@dataclass(frozen=True)
class FastRecipe:
    """Every hyper-parameter of the FastNet recipe; the zoo cards store it whole.

    lr and weight_decay are in airbench's units: per 1024 examples, with the summed loss, divided
    by 1024 * (1 + 1 / (1 - momentum)) before they reach torch's SGD (weight decay decoupled).
    """

    epochs: int = 10
    batch_size: int = 1024
    lr: float = 11.5
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_scaler: float = 64.0
    label_smoothing: float = 0.2
    whiten_bias_epochs: int = 3
    whiten_eps: float = 5e-4
    whiten_images: int = 5000
    lr_start: float = 0.2
    lr_peak_at: float = 0.23
    lr_end: float = 0.07
    lookahead_every: int = 5
    lookahead_decay: float = 0.95**5
    translate: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_range(self.lr, "lr", 0.0, math.inf, low_inclusive=False)
        check_range(self.momentum, "momentum", 0.0, 1.0, high_inclusive=False)
        check_range(self.lr_peak_at, "lr_peak_at", 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        check_positive_int(self.whiten_images, "whiten_images")
        check_positive_int(self.lookahead_every, "lookahead_every")
        check_positive_int(self.seed, "seed", 0)


def init_whitening(model: FastNet, x: torch.Tensor, eps: float) -> None:
    """Set `model.whiten`'s filters to the 2x2-patch whitening basis of images `x` and its negative.

    Each eigenvector v of the patch covariance (of normalized images) becomes the filter
    v / sqrt(lambda + eps), so the layer's outputs are decorrelated with unit variance.
    """
    conv = model.whiten
    kh, kw = conv.kernel_size
    with torch.no_grad():
        z = model.normalize(x.to(conv.weight.device)).double()
        c = z.shape[1]
        patches = z.unfold(2, kh, 1).unfold(3, kw, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw)
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        order = eigenvalues.argsort(descending=True)
        filters = (eigenvectors[:, order] / (eigenvalues[order] + eps).sqrt()).T.reshape(-1, c, kh, kw)
        conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight.dtype))


def _freeze(model: FastNet) -> None:
    """The whitening filters (of the 'whiten' stem) and the BN scales never train (the recipe's fixed parts)."""
    if model.stem == "whiten":
        model.whiten.weight.requires_grad_(False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.requires_grad_(False)


def _optimizer(model: nn.Module, recipe: FastRecipe) -> torch.optim.SGD:
    scale = 1024 * (1 + 1 / (1 - recipe.momentum))
    lr = recipe.lr / scale
    decay = recipe.weight_decay * recipe.batch_size / scale
    shifts = [p for n, p in model.named_parameters() if "norm" in n and p.requires_grad]
    others = [p for n, p in model.named_parameters() if "norm" not in n and p.requires_grad]
    bias_lr = lr * recipe.bias_scaler
    groups = [
        dict(params=shifts, lr=bias_lr, weight_decay=decay / bias_lr, initial_lr=bias_lr),
        dict(params=others, lr=lr, weight_decay=decay / lr, initial_lr=lr),
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, nesterov=True)


def lr_factor(step: int, total: int, recipe: FastRecipe) -> float:
    """Triangular schedule: lr_start -> 1 at lr_peak_at of training -> lr_end at the last step."""
    t = step / max(total, 1)
    if t < recipe.lr_peak_at:
        return recipe.lr_start + (1 - recipe.lr_start) * t / recipe.lr_peak_at
    return 1 + (recipe.lr_end - 1) * (t - recipe.lr_peak_at) / (1 - recipe.lr_peak_at)


class _Lookahead:
    """Every few steps the weights (and BN statistics) move to an EMA of themselves and restart there."""

    def __init__(self, model: nn.Module) -> None:
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for k, avg in self.ema.items():
            avg.lerp_(state[k], 1 - decay)
            state[k].copy_(avg)


RESUME_KEYS = {"recipe", "model", "optimizer", "lookahead", "generator", "history", "epoch"}


def _read_resume(path: Path, device: torch.device) -> dict[str, Any]:
    """The per-epoch resume state in `path`; a damaged file is a ValueError naming it."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        state = err
    if not isinstance(state, dict) or not RESUME_KEYS <= set(state):
        reason = f"{type(state).__name__}: {state}" if isinstance(state, Exception) else "not a resume checkpoint"
        raise ValueError(f"resume checkpoint {path} is damaged ({reason}); delete it to train from the start")
    return state


def train_fast(
    model: FastNet,
    dataset: datasets.Dataset,
    recipe: FastRecipe,
    device: str | torch.device = "auto",
    resume: str | os.PathLike[str] | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    precision: str = "auto",
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    describe: Callable[[nn.Module], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Train a FastNet (plain or band-limited) in place; returns one row per epoch.

    `precision` ('auto', 'float32', 'bfloat16'; see robustbench_bl.precision) is the forward's
    arithmetic; the weights and the optimizer's state stay float32. Each row records it.
    `resume` names a per-epoch checkpoint file: written after every epoch (state dicts and RNG
    state only, loaded with weights_only=True) and picked up again when present, so a killed run
    continues at its next epoch with the same result. `max_steps` stops early (smoke tests).
    `on_epoch(epoch, model)` runs once before training (epoch -1: as initialized, whitening set) and
    after each epoch, on the weights being trained (studies record layer statistics with it); the
    returned model holds the lookahead average instead. `describe(model)` adds fields to each
    epoch's row (the zoo records energy bands with it); they are kept in the resume checkpoint.
    """
    check_inputs(dataset.x, "dataset.x")
    dev = resolve_device(device)
    working = precision_.resolve(precision, dev)
    model.to(dev, memory_format=torch.channels_last).train()  # type: ignore[call-overload]  # torch's stubs omit memory_format; ~25% faster convolutions on CPUs
    _freeze(model)
    x, y = dataset.x.to(dev).contiguous(memory_format=torch.channels_last), dataset.y.to(dev)
    if len(y) < recipe.batch_size:
        raise ValueError(f"dataset has {len(y)} images, fewer than batch_size={recipe.batch_size}")
    steps_per_epoch = len(y) // recipe.batch_size  # the last incomplete batch is dropped
    total = recipe.epochs * steps_per_epoch
    generator = torch.Generator(device=dev).manual_seed(recipe.seed)
    optimizer = _optimizer(model, recipe)
    lookahead = _Lookahead(model)
    history: list[dict[str, Any]] = []
    first_epoch = 0
    path = Path(resume) if resume is not None else None
    if path is not None and path.is_file():
        state = _read_resume(path, dev)
        if state["recipe"] != asdict(recipe):
            raise ValueError(
                f"resume checkpoint {path} belongs to another recipe ({state['recipe']}); delete it to restart"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        lookahead.ema = state["lookahead"]
        generator.set_state(state["generator"].cpu())  # RNG states are CPU byte tensors on every device
        history, first_epoch = state["history"], state["epoch"] + 1
    if first_epoch == 0 and model.stem == "whiten":
        init_whitening(model, dataset.x[: recipe.whiten_images], recipe.whiten_eps)
        lookahead = _Lookahead(model)
    if on_epoch is not None and first_epoch == 0:
        on_epoch(-1, model)
    bar = tqdm(range(first_epoch, recipe.epochs), desc="train fastnet", disable=not progress, unit="epoch")
    for epoch in bar:
        if model.stem == "whiten" and model.whiten.bias is not None:
            model.whiten.bias.requires_grad_(epoch < recipe.whiten_bias_epochs)
        order = torch.randperm(len(y), generator=generator, device=dev)
        total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            if max_steps is not None and step >= max_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * lr_factor(step, total, recipe)
            idx = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
            xb = augment_batch(x[idx], generator, pad=recipe.translate, mode="reflect")
            with precision_.autocast(working, dev):
                logits = model(xb).float()
            loss = F.cross_entropy(logits, y[idx], label_smoothing=recipe.label_smoothing, reduction="sum")
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}, step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if (step + 1) % recipe.lookahead_every == 0:
                lookahead.update(model, recipe.lookahead_decay * ((step + 1) / total) ** 3)
            total_loss += loss.item()
            correct += int((logits.argmax(1) == y[idx]).sum())
            seen += len(idx)
        row = {
            "epoch": epoch,
            "loss": total_loss / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "epoch_seconds": time.perf_counter() - start,
            "precision": working,
            "threads": torch.get_num_threads(),
        }
        if describe is not None:
            row |= describe(model)
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_accuracy']:.3f}")
        if path is not None:
            state = dict(
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                lookahead=lookahead.ema,
                generator=generator.get_state(),
                history=history,
                epoch=epoch,
                recipe=asdict(recipe),
            )
            atomic_write(path, lambda p: torch.save(state, p))
        if on_epoch is not None:
            on_epoch(epoch, model)
        if max_steps is not None and (epoch + 1) * steps_per_epoch >= max_steps:
            break
    lookahead.update(model, 1.0)  # finish on the averaged weights
    model.eval()
    return history


def fit(
    model: nn.Module,
    dataset: datasets.Dataset,
    config: TrainConfig,
    device: str | torch.device = "auto",
    progress: bool = True,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> list[dict[str, Any]]:
    """Train `model` in place as `config` says: the FastNet recipe for optimizer 'fast' (its epochs,
    batch size and seed), the generic loop (`training.train`) otherwise; one row per epoch."""
    if config.optimizer != "fast":
        return train(model, dataset, config, device=device, progress=progress, on_epoch=on_epoch)
    if not isinstance(model, FastNet):
        raise ValueError(f"optimizer 'fast' trains FastNets only, got model {config.model!r}")
    recipe = FastRecipe(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed)
    return train_fast(model, dataset, recipe, device=device, progress=progress, on_epoch=on_epoch)
