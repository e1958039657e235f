"""The checkpoint store that lets studies reuse trained models.

A checkpoint is a state dict (`.pt`, loaded with weights_only=True) beside a JSON file holding
the training configuration, the file's sha256 and the versions that produced it; its key is a
hash of the configuration and the data source, so the same request trains once.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_bl import data as datasets
from robustbench_bl.models.external import state_mismatch
from robustbench_bl.runtime import distributed
from robustbench_bl.runtime.files import atomic_write, sha256
from robustbench_bl.training.config import TrainConfig, build_model, load_train_data
from robustbench_bl.training.loop import resolve_device
from robustbench_bl.validation import read_json_record
from robustbench_bl.versions import versions


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
        atomic_write(weights, lambda p: torch.save(state, p))
        record = {
            "config": asdict(config),
            "data_source": data_source,
            "sha256": sha256(weights),
            "versions": versions(),
            "metrics": metrics,
        }
        atomic_write(meta, lambda p: p.write_text(json.dumps(record, indent=2, sort_keys=True)))
        return weights

    def metadata(self, config: TrainConfig, data_source: str) -> dict[str, Any]:
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
        actual = sha256(weights)
        if actual != expected:
            raise ValueError(
                f"checkpoint {weights} is corrupted or was modified: sha256 {actual} does not match the "
                f"recorded {expected}; delete it (and its .json) to retrain"
            )
        try:
            return torch.load(weights, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(
                f"checkpoint {weights} holds objects other than tensors, which are not loaded (nothing in it ran); "
                "delete it (and its .json) to retrain"
            ) from None

    def get_or_train(
        self,
        config: TrainConfig,
        *,
        data_root: str | os.PathLike[str] | None = None,
        device: str | torch.device = "auto",
        progress: bool = True,
    ) -> tuple[nn.Module, dict[str, Any]]:
        """The model for `config`: loaded when stored, else trained, evaluated and stored.

        Returns (model in eval mode on `device`, metadata with metrics and data source). Under
        torchrun every rank trains its share and rank 0 alone writes the checkpoint.
        """
        dataset = load_train_data(config, data_root)
        source = dataset.fingerprint
        model = build_model(config, dataset)
        if self.exists(config, source):
            state = self.load_state(config, source)
            if problem := state_mismatch(model, state):  # another architecture's weights under this name
                raise ValueError(
                    f"checkpoint {self.paths(config, source)[0]} does not fit the model of its config ({problem}); "
                    "delete it (and its .json) to retrain"
                )
            model.load_state_dict(state)
            return model.to(resolve_device(device)).eval(), self.metadata(config, source)
        start = time.perf_counter()
        from robustbench_bl.training.fast import fit

        history = fit(model, dataset, config, device=device, progress=progress)
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
