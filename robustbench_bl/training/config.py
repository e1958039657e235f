"""What determines a trained model: `TrainConfig` (its hash is the checkpoint key), the studies'
per-model recipes and training budgets, and building the model and its training data from a config."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from robustbench_bl import data as datasets
from robustbench_bl import models
from robustbench_bl.validation import check_choice, check_positive_int, check_range

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
        images = self.dataset in datasets.IMAGE_DATASETS
        if (models.INPUT_RANK[self.model] == 4) != images:
            accepted = [m for m in models.names() if (models.INPUT_RANK[m] == 4) == images]
            raise ValueError(
                f"model {self.model!r} does not take {'images' if images else 'time series'} ({self.dataset}); "
                f"for {self.dataset} use one of {accepted}"
            )
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
    "fastnet": dict(batch_size=1024, epochs=10, optimizer="fast"),  # the zoo's (training.fast.FastRecipe)
    "fastnet_nw": dict(batch_size=1024, epochs=10, optimizer="fast"),
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
    check_positive_int(available, "the training source's size (images available)")
    limit = min(train, available)
    return {"limit": limit, "epochs": max(epochs, round(epochs * train / limit))}


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
