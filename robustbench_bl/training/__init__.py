"""Training, evaluation and the checkpoint store that lets studies reuse trained models.

A checkpoint is a state dict (`.pt`, loaded with weights_only=True) beside a JSON file holding
the training configuration, the file's sha256 and the versions that produced it; its key is a
hash of the configuration and the data source, so the same request trains once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
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
from robustbench_bl import models
from robustbench_bl.models.common import eval_mode, placement, run_model
from robustbench_bl.runtime import distributed
from robustbench_bl.validation import (
    check_choice,
    check_images,
    check_labels,
    check_positive_int,
    check_range,
    read_json_record,
)
from robustbench_bl.versions import versions

#: "fast" is the whole FastNet recipe (training.fast.FastRecipe with this config's epochs, batch
#: size and seed; lr, momentum, weight decay and schedule are the recipe's own).
OPTIMIZERS = ("sgd", "adam", "fast")
SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model; its hash is the checkpoint key."""

    model: str = "lenet"
    dataset: str = "cifar10"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    augment: bool = False
    limit: int | None = None
    compress_rate: float | None = None
    energy: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice(self.model, "model", models.names())
        check_choice(self.dataset, "dataset", datasets.IMAGE_DATASETS + datasets.UCR_DATASETS)
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.schedule, "schedule", SCHEDULES)
        check_range(self.lr, "lr", 0.0, math.inf, low_inclusive=False)
        if self.limit is not None:
            check_positive_int(self.limit, "limit")
        if self.compress_rate is not None and self.energy is not None:
            raise ValueError("give compress_rate or energy, not both")
        if self.compress_rate is not None:
            check_range(self.compress_rate, "compress_rate", 0.0, 1.0, high_inclusive=False)
        if self.energy is not None:
            check_range(self.energy, "energy", 0.0, 1.0, low_inclusive=False)

    def key(self, data_source: str) -> str:
        """16 hex digits of sha256 over the configuration and the training data's fingerprint
        (`Dataset.fingerprint`: the source kind and a hash of the images and labels)."""
        blob = json.dumps({"config": asdict(self), "data": data_source}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: The training recipe per model that the studies share, so one request maps to one checkpoint.
#: FCN: Adam without weight decay, batch 16, as Wang et al. (2017) train it.
RECIPES: dict[str, dict[str, object]] = {
    "lenet": dict(batch_size=128, lr=0.05),
    "resnet18": dict(batch_size=128, lr=0.1, augment=True),
    "densenet121": dict(batch_size=128, lr=0.1, augment=True),
    "fcn1d": dict(batch_size=16, optimizer="adam", lr=1e-3, weight_decay=0.0),
    "fastnet": dict(batch_size=512, epochs=6, optimizer="fast"),
}


def recipe(
    model: str, dataset: str, *, compress_rate: float | None = 0.0, energy: float | None = None, **settings: Any
) -> TrainConfig:
    """The studies' TrainConfig for `model`: its RECIPES entry, overridden by `settings` (epochs,
    limit, seed, lr, ...). compress_rate 0 without energy trains plain convolutions."""
    check_choice(model, "model", list(RECIPES))
    return TrainConfig(
        model=model,
        dataset=dataset,
        compress_rate=compress_rate or None,
        energy=energy,
        **{**RECIPES[model], **settings},
    )


def budget(train: int, epochs: int, available: int) -> dict[str, int]:
    """`limit` and `epochs` for a preset asking for `train` images and `epochs` epochs from a source
    holding `available`: a smaller source (the packaged sample) gets proportionally more epochs, so
    training sees as many examples and takes as long."""
    limit = min(train, available)
    return {"limit": limit, "epochs": max(epochs, round(epochs * train / limit))}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_model(config: TrainConfig, dataset: datasets.Dataset) -> nn.Module:
    """A freshly initialized model for `dataset`, band-limited when the config asks for it."""
    torch.manual_seed(config.seed)
    in_channels = dataset.x.shape[1]
    model = models.make(config.model, dataset.num_classes, in_channels, image_size=dataset.x.shape[-1])
    if config.compress_rate is not None or config.energy is not None:
        from robustbench_bl.spectral import bandlimit

        model = bandlimit(model, compress_rate=config.compress_rate, energy=config.energy)
    return model


def load_train_data(config: TrainConfig, root: str | os.PathLike[str] | None = None) -> datasets.Dataset:
    """The training split the config names (class-balanced `limit`, seeded)."""
    if config.dataset in datasets.UCR_DATASETS:
        return datasets.ucr(config.dataset, "train", limit=config.limit, seed=config.seed)
    return datasets.load(config.dataset, "train", root=root, limit=config.limit, seed=config.seed)


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
    `on_epoch(epoch, model)` runs after each epoch (studies use it to record layer statistics).
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class CheckpointStore:
    """Trained models on disk, keyed by their training configuration.

    Default folder: $RBL_CHECKPOINTS, else the user cache (robustbench_bl/checkpoints).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root if root is not None else self.default_root()).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def default_root() -> Path:
        """$RBL_CHECKPOINTS, else robustbench_bl/checkpoints in the user cache."""
        return Path(os.environ.get("RBL_CHECKPOINTS") or datasets.cache_dir() / "checkpoints")

    def paths(self, config: TrainConfig, data_source: str) -> tuple[Path, Path]:
        """(state dict file, metadata file) for a configuration."""
        stem = f"{config.model}-{config.dataset}-{config.key(data_source)}"
        return self.root / f"{stem}.pt", self.root / f"{stem}.json"

    def exists(self, config: TrainConfig, data_source: str) -> bool:
        weights, meta = self.paths(config, data_source)
        return weights.is_file() and meta.is_file()

    def save(self, model: nn.Module, config: TrainConfig, data_source: str, metrics: dict[str, object]) -> Path:
        """Store the state dict, then its metadata (config, sha256, versions, metrics)."""
        weights, meta = self.paths(config, data_source)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        _atomic_write(weights, lambda p: torch.save(state, p))
        record = {
            "config": asdict(config),
            "data_source": data_source,
            "sha256": _sha256(weights),
            "versions": versions(),
            "metrics": metrics,
        }
        _atomic_write(meta, lambda p: p.write_text(json.dumps(record, indent=2, sort_keys=True)))
        return weights

    def metadata(self, config: TrainConfig, data_source: str) -> dict[str, object]:
        """The stored JSON record of a checkpoint; a damaged one is a ValueError naming the file."""
        weights, meta = self.paths(config, data_source)
        return read_json_record(meta, "checkpoint metadata", "sha256", str, f"delete it and {weights.name} to retrain")

    def load_state(self, config: TrainConfig, data_source: str) -> dict[str, torch.Tensor]:
        """The stored state dict, after checking that it was trained for this config on this data
        and that its sha256 matches; never unpickles code."""
        weights, _ = self.paths(config, data_source)
        record = self.metadata(config, data_source)
        if record.get("config") != asdict(config) or record.get("data_source") != data_source:
            raise ValueError(
                f"checkpoint {weights} was trained for another request (config {record.get('config')}, data "
                f"{record.get('data_source')}), not for config {asdict(config)} on data {data_source}; "
                "delete it (and its .json) to retrain"
            )
        expected = record["sha256"]
        actual = _sha256(weights)
        if actual != expected:
            raise ValueError(
                f"checkpoint {weights} is corrupted or was modified: sha256 {actual} does not match the "
                f"recorded {expected}; delete it (and its .json) to retrain"
            )
        return torch.load(weights, map_location="cpu", weights_only=True)

    def get_or_train(
        self,
        config: TrainConfig,
        *,
        data_root: str | os.PathLike[str] | None = None,
        device: str | torch.device = "auto",
        progress: bool = True,
    ) -> tuple[nn.Module, dict[str, object]]:
        """The model for `config`: loaded when stored, else trained, evaluated and stored.

        Returns (model in eval mode on `device`, metadata with metrics and data source). Under
        torchrun every rank trains its share and rank 0 alone writes the checkpoint.
        """
        dataset = load_train_data(config, data_root)
        source = dataset.fingerprint
        model = build_model(config, dataset)
        if self.exists(config, source):
            model.load_state_dict(self.load_state(config, source))
            return model.to(resolve_device(device)).eval(), self.metadata(config, source)
        start = time.perf_counter()
        if config.optimizer == "fast":
            from robustbench_bl.models.fastnet import FastNet
            from robustbench_bl.training.fast import FastRecipe, train_fast

            if not isinstance(model, FastNet):
                raise ValueError(f"optimizer 'fast' trains FastNets only, got model {config.model!r}")
            recipe = FastRecipe(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed)
            history = train_fast(model, dataset, recipe, device=device, progress=progress)
        else:
            history = train(model, dataset, config, device=device, progress=progress)
        metrics: dict[str, object] = {
            "train_seconds": time.perf_counter() - start,
            "train_size": len(dataset),
            "data_source": dataset.source,
            "ranks": distributed.rank_world()[1],
            "history": history,
        }
        if distributed.is_main():
            self.save(model, config, source, metrics)
        distributed.barrier()  # under torchrun, the other ranks wait until rank 0 has written
        return model.eval(), self.metadata(config, source)
