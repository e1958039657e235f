"""Plumbing every study script shares: presets, the common command line, output folder, store.

A study script defines its presets and a `main(args)`; `parse_args` gives it --preset, --data,
--device, --out, --seed and --executor, `Study` holds the results store and figure paths under
--out, and `trained_models` loads the data and the models. Under torchrun, every rank trains its
share and only rank 0 goes on to the sweep.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from robustbench_bl import data, zoo
from robustbench_bl.cli import ArgumentParser, device, non_negative_float, non_negative_int, writable_folder
from robustbench_bl.runtime.results import ResultsStore
from robustbench_bl.runtime.sweep import EXECUTORS, Executor, make_executor
from robustbench_bl.studies.bands import layer_fractions
from robustbench_bl.training import CheckpointStore, TrainConfig

PRESETS = ("smoke", "quick", "paper")
STUDY_MODELS = ("fastnet", "lenet", "resnet18", "densenet121")


def parse_args(
    name: str,
    description: str,
    argv: Sequence[str] | None = None,
    parser: argparse.ArgumentParser | None = None,
    dataset: str | None = "cifar10",
) -> argparse.Namespace:
    """Parse the common study options (plus any already added to `parser`) and check every one of
    them, the data source of `dataset` (None: the script's --dataset, else no data read from
    --data) and the writability of the output and checkpoint folders,
    before the study loads data or trains: a bad argument costs seconds, not a training run."""
    parser = parser or ArgumentParser(prog=f"rbl study {name}", description=description)
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="quick",
        help="smoke: seconds; quick (default): <= 10 min on a 2-core CPU; paper: the seeds' settings, for a GPU",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="data folder (torchvision layout or npz files); default: $RBL_DATA, a download, or the packaged CIFAR-10 sample",
    )
    parser.add_argument(
        "--device", type=device, default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ..."
    )
    parser.add_argument("--out", default=f"results/{name}", help=f"output folder (default results/{name}/)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed (>= 0) for training, sampling and noise draws"
    )
    try:
        parser.add_argument(
            "--model",
            choices=STUDY_MODELS,
            default=None,
            help="CIFAR-10 model instead of the preset's ('fastnet': the shipped zoo where it has the band, else trained)",
        )
    except argparse.ArgumentError:
        pass  # the script defines its own --model (attacks/attack.py)
    parser.add_argument(
        "--checkpoints", default=None, help="checkpoint folder (default $RBL_CHECKPOINTS or the user cache)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where sweep cells run: in this process, or as Ray tasks (RAY_ADDRESS or a local instance)",
    )
    parser.add_argument(
        "--ray-address", default=None, help="Ray cluster address (default $RAY_ADDRESS, else a local instance)"
    )
    parser.add_argument(
        "--num-gpus", type=non_negative_float, default=0.0, help="GPUs each Ray task reserves (fractions share a GPU)"
    )
    args = parser.parse_args(argv)
    args.study = name
    try:
        dataset = dataset or getattr(args, "dataset", None)  # a script's own --dataset option names it
        if dataset is not None:
            data.check_source(dataset, args.data, "--data")
        elif args.data is not None:
            raise ValueError(f"--data is not used by {name}, which reads its data from elsewhere")
        writable_folder(args.out, "--out")
        writable_folder(
            args.checkpoints or CheckpointStore.default_root(),
            "--checkpoints" if args.checkpoints else "the checkpoint folder ($RBL_CHECKPOINTS or the user cache)",
        )
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return args


def preset(presets: Mapping[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The chosen preset's settings, with the model replaced when --model was given."""
    chosen = dict(presets[args.preset])
    if getattr(args, "model", None) is not None:
        chosen["model"] = args.model
    return chosen


@dataclass
class Study:
    """A study's output folder: `results.jsonl` (the store), `results.csv`, `finding.txt` and figures."""

    name: str
    out: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Study:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        return cls(args.study, out)

    @staticmethod
    def executor(args: argparse.Namespace) -> Executor:
        """The sweep executor the command line asks for."""
        if args.executor == "ray":
            return make_executor("ray", address=args.ray_address, num_gpus=args.num_gpus)
        return make_executor("local")

    @property
    def store(self) -> ResultsStore:
        return ResultsStore(self.out / "results.jsonl")

    def conclude(self, finding: str, figures: Sequence[Path] = ()) -> None:
        """Print the study's finding, keep it as `finding.txt` beside its results (for `rbl report`)
        and say which files the study wrote."""
        print(finding)
        (self.out / "finding.txt").write_text(finding + "\n", encoding="utf-8")
        print(
            f"wrote {self.store.path.with_suffix('.csv')}, {self.out / 'finding.txt'}, {', '.join(map(str, figures))}"
        )

    def figure(self, stem: str | None = None) -> Path:
        """Stem (no suffix) of a figure in the output folder."""
        return self.out / (stem or self.name)


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
        name = zoo.find(cfg.compress_rate, cfg.energy, cfg.seed) if cfg.model == "fastnet" else None
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


def discarded_per_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Each band-limited layer's fraction of the one-sided spectrum discarded on `x`, as JSON for
    result rows ('{}' for a model of plain convolutions)."""
    return json.dumps({name: round(1 - kept, 6) for name, kept in layer_fractions(model, x).items()})
