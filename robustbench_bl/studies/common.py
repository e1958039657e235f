"""The models and bands the studies share: a study's test images and trained models
(`trained_models`: the zoo where it has the band and seed, else the checkpoint store) and the
per-layer band of a model for result rows. Under torchrun, every rank trains its share.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from robustbench_bl import data, zoo
from robustbench_bl.runtime.checkpoints import CheckpointStore
from robustbench_bl.studies.bands import layer_fractions
from robustbench_bl.training import TrainConfig
from robustbench_bl.training.fast import FastRecipe

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Trained(Generic[K]):
    """A study's CIFAR-10 test images and its trained models, with their checkpoint keys and metadata."""

    test: data.Dataset
    models: dict[K, nn.Module]
    keys: dict[K, str]
    meta: dict[K, dict[str, Any]]


def trained_models(
    args: argparse.Namespace, test_size: int, configs: Callable[[int], Mapping[K, TrainConfig]]
) -> Trained[K]:
    """Load CIFAR-10 from the study's data source (saying which), then get each model that
    `configs(train_size)` names: FastNets from the zoo when it ships that band and seed (no
    training), everything else from the checkpoint store, trained on first use."""
    train = data.cifar10("train", root=args.data)
    test = data.cifar10("test", root=args.data).at_most(test_size, seed=args.seed)
    print(f"data: train from {train.source} ({len(train)} images), test {len(test)} from {test.source}")
    store = CheckpointStore(args.checkpoints)
    wanted = configs(len(train))
    got: dict[K, tuple[nn.Module, dict[str, Any]]] = {}
    keys: dict[K, str] = {}
    for k, cfg in wanted.items():
        name = zoo_name(cfg)
        if name is not None:
            card = zoo.card(name)
            meta = {
                "zoo": name,
                "metrics": {"train_size": card["train_data"]["n"], "data_source": card["train_data"]["source"]},
            }
            got[k] = (zoo.load(name, args.device), meta)
            keys[k] = f"zoo:{name}:{card['weights']['sha256'][:12]}"
            print(
                f"model {k}: zoo model {name} (full test accuracy {card['accuracy'].get('full_test', {}).get('accuracy')})"
            )
        else:
            got[k] = store.get_or_train(cfg, data_root=args.data, device=args.device, progress=not args.quiet)
            keys[k] = cfg.key(train.fingerprint)
    return Trained(test, {k: model for k, (model, _) in got.items()}, keys, {k: meta for k, (_, meta) in got.items()})


#: The training length, in epochs, of the zoo's fully trained FastNets (the plain model's card, else the
#: recipe's): the studies' presets name zoo models by it (fewer epochs: the early-stopped controls).
ZOO_EPOCHS = zoo.card("fastnet-0")["epochs"] if "fastnet-0" in zoo.names() else FastRecipe.epochs
#: The zoo's first layer of each FastNet variant the studies train.
ZOO_STEMS = {"fastnet": "whiten", "fastnet_nw": "learned"}


def zoo_name(cfg: TrainConfig) -> str | None:
    """The zoo model of this architecture, band and seed that saw as many training examples (a budget
    scales the epochs up on a smaller source), else the zoo's full-length one, else None."""
    if cfg.model not in ZOO_STEMS:
        return None
    stem = ZOO_STEMS[cfg.model]
    epochs = round(cfg.epochs * (cfg.limit or zoo.TRAIN_SIZE) / zoo.TRAIN_SIZE)
    return zoo.find(cfg.compress_rate, cfg.energy, cfg.seed, epochs, stem) or zoo.find(
        cfg.compress_rate, cfg.energy, cfg.seed, stem=stem
    )


def zoo_only(configs: Mapping[K, TrainConfig]) -> dict[K, TrainConfig]:
    """The configurations whose model the zoo ships (a preset's optional models: never trained by a
    study, too long on a CPU); says which were left out."""
    shipped = {k: cfg for k, cfg in configs.items() if zoo_name(cfg) is not None}
    if missing := [k for k in configs if k not in shipped]:
        print(f"not in this zoo, left out (not trained): {', '.join(map(str, missing))}")
    return shipped


def discarded_per_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Each band-limited layer's fraction of the one-sided spectrum discarded on `x`, as JSON for
    result rows ('{}' for a model of plain convolutions)."""
    return json.dumps({name: round(1 - kept, 6) for name, kept in layer_fractions(model, x).items()})
