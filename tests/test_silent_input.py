"""The bad inputs a fuzzing pass found accepted silently or answered with a deep traceback: each is
now one clear error naming the argument or file (issue 28's list), and none runs unpickled code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_bl import Defended, data, models, zoo
from robustbench_bl.channels import Channel
from robustbench_bl.evaluation import probes
from robustbench_bl.runtime.checkpoints import CheckpointStore
from robustbench_bl.runtime.files import sha256
from robustbench_bl.spectral import bandlimit
from robustbench_bl.training import TrainConfig, budget, recipe
from robustbench_bl.training.config import build_model, load_train_data


class NaNChannel(Channel):
    """A user's channel gone wrong: every output pixel NaN."""

    name = "nan-test"
    bounds = (0.0, 1.0)
    sweep = (0.0, 1.0)

    def _lossy(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.full_like(x, math.nan)


class Payload:
    """A pickle that would run code when loaded without weights_only."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran",))


def small_model() -> nn.Module:
    return models.make("lenet").eval()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: Defended(small_model()).foolbox(bounds=(1, 0)),
            ValueError,
            "bounds must be (low, high) with low < high",
        ),
        (
            lambda: Defended(small_model()).foolbox(bounds=(0,)),  # type: ignore[arg-type]
            TypeError,
            "bounds must be a (low, high) pair",
        ),
        (lambda: bandlimit(nn.Sequential(nn.Linear(4, 2)), 0.5), ValueError, "has no nn.Conv1d/2d/3d"),
        (
            lambda: probes.hessian_top_eigenvalue(small_model(), torch.rand(2, 3, 32, 32), seed=-1),
            ValueError,
            "seed must be >= 0",
        ),
        (lambda: probes.taylor_bound(math.nan, 1.0, 0.1), ValueError, "m1 must be finite"),
        (lambda: probes.taylor_bound(1.0, math.nan, 0.1), ValueError, "m2 must be finite"),
        (
            lambda: probes.taylor_bound(torch.ones(3), torch.ones(2), 0.1),
            ValueError,
            "one value per example (or one for all), got shapes (3,), (2,) and ()",
        ),
        (lambda: TrainConfig(model="fcn1d", dataset="cifar10"), ValueError, "model 'fcn1d' does not take images"),
        (lambda: TrainConfig(model="lenet", dataset="GunPoint"), ValueError, "model 'lenet' does not take time series"),
        (lambda: budget(1000, 5, 0), ValueError, "the training source's size (images available) must be >= 1"),
        (
            lambda: Defended(small_model(), NaNChannel(0.5)).predict(torch.rand(2, 3, 32, 32)),
            ValueError,
            "returned NaN",
        ),
    ],
)
def test_silent_acceptances_are_clear_errors(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        call()  # type: ignore[operator]
    assert message in str(caught.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")
def test_zoo_load_on_cuda_without_a_gpu_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no CUDA device is available"):
        zoo.load("fastnet-0", device="cuda")


def test_an_empty_data_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "cifar10").mkdir()
    for split in ("train", "test"):
        np.savez(tmp_path / "cifar10" / f"{split}.npz", x=np.zeros((0, 32, 32, 3), np.uint8), y=np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="holds no cifar10 train images"):
        data.load("cifar10", "train", root=tmp_path)


def stored(tmp_path: Path) -> tuple[CheckpointStore, TrainConfig, str]:
    """A store holding a (untrained) LeNet checkpoint for a tiny config on the packaged sample."""
    config = recipe("lenet", "cifar10", epochs=1, limit=20)
    dataset = load_train_data(config)
    store = CheckpointStore(tmp_path)
    store.save(build_model(config, dataset), config, dataset.fingerprint, {"history": []})
    return store, config, dataset.fingerprint


def rewrite(store: CheckpointStore, config: TrainConfig, source: str, state: object) -> None:
    """Replace the weights file and fix its recorded sha256, as an attacker with write access would."""
    weights, meta = store.paths(config, source)
    torch.save(state, weights)
    record = json.loads(meta.read_text())
    record["sha256"] = sha256(weights)
    meta.write_text(json.dumps(record))


def test_a_checkpoint_rewritten_as_a_malicious_pickle_is_refused_without_running_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, config, source = stored(tmp_path)
    rewrite(store, config, source, {"conv1.weight": Payload()})
    with pytest.raises(ValueError) as caught:
        store.get_or_train(config, progress=False)
    assert "holds objects other than tensors" in str(caught.value) and "weights_only=False" not in str(caught.value)
    assert "code ran" not in capsys.readouterr().out


def test_a_checkpoint_of_another_architecture_is_named(tmp_path: Path) -> None:
    store, config, source = stored(tmp_path)
    rewrite(store, config, source, models.make("resnet18").state_dict())
    with pytest.raises(ValueError, match="does not fit the model of its config"):
        store.get_or_train(config, progress=False)
