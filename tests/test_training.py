"""Training, evaluation and the checkpoint store (keys, round trip, corruption, no unpickling)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustbench_bl import data, training
from robustbench_bl.runtime import files
from robustbench_bl.runtime.checkpoints import CheckpointStore
from robustbench_bl.training import TrainConfig

SMALL = TrainConfig(model="lenet", epochs=2, limit=100, batch_size=50, lr=0.01)


def test_same_config_same_key_and_every_field_matters() -> None:
    assert SMALL.key("npz") == TrainConfig(model="lenet", epochs=2, limit=100, batch_size=50, lr=0.01).key("npz")
    others = [
        TrainConfig(model="lenet", epochs=3, limit=100, batch_size=50, lr=0.01),
        TrainConfig(model="lenet", epochs=2, limit=100, batch_size=50, lr=0.01, seed=1),
        TrainConfig(model="lenet", epochs=2, limit=100, batch_size=50, lr=0.01, compress_rate=0.5),
    ]
    keys = {SMALL.key("npz"), SMALL.key("packaged")} | {c.key("npz") for c in others}
    assert len(keys) == 5


def test_get_or_train_round_trip_trains_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(tmp_path)
    model, meta = store.get_or_train(SMALL, progress=False)
    fingerprint = training.load_train_data(SMALL).fingerprint
    assert meta["data_source"] == fingerprint and fingerprint.startswith("packaged:")
    assert meta["metrics"]["train_size"] == 100
    _, record = store.paths(SMALL, fingerprint)
    assert json.loads(record.read_text())["config"]["epochs"] == 2

    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("a stored model was trained again"))
    again, _ = store.get_or_train(SMALL, progress=False)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0)


def test_corrupted_checkpoint_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.get_or_train(SMALL, progress=False)
    weights, _ = store.paths(SMALL, training.load_train_data(SMALL).fingerprint)
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="corrupted or was modified: sha256"):
        store.get_or_train(SMALL, progress=False)


def _write_npz(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    folder.mkdir(parents=True)
    np.savez(folder / "train.npz", x=x, y=y)


def test_a_model_trained_on_one_folder_is_not_reused_for_another(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40) % 10
    _write_npz(tmp_path / "a", x, y)
    _write_npz(tmp_path / "b", 255 - x, y)  # same layout and size, other images
    config = TrainConfig(model="lenet", epochs=1, batch_size=20)
    store = CheckpointStore(tmp_path / "store")
    _, meta_a = store.get_or_train(config, data_root=tmp_path / "a", progress=False)
    _, meta_b = store.get_or_train(config, data_root=tmp_path / "b", progress=False)
    assert meta_a["data_source"] != meta_b["data_source"]
    assert len(list((tmp_path / "store").glob("*.pt"))) == 2


def test_a_checkpoint_of_another_config_under_the_key_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    other = TrainConfig(model="lenet", epochs=3, limit=100, batch_size=50, lr=0.01)
    store.get_or_train(other, progress=False)
    fingerprint = training.load_train_data(SMALL).fingerprint
    for src, dst in zip(store.paths(other, fingerprint), store.paths(SMALL, fingerprint)):
        dst.write_bytes(src.read_bytes())  # planted under SMALL's key, sha256 intact
    with pytest.raises(ValueError, match="trained for another request"):
        store.get_or_train(SMALL, progress=False)


class _Exploit:
    """Unpickling this would run code; weights_only loading must refuse it."""

    def __reduce__(self):
        return (Path.touch, (Path("/tmp/rbl-exploit-ran"),))


def test_loading_never_unpickles_code(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    model = torch.nn.Linear(2, 2)
    store.save(model, SMALL, "npz:0", {})
    weights, meta = store.paths(SMALL, "npz:0")
    torch.save({"weight": _Exploit()}, weights)
    # re-record the hash so that only weights_only stands between the file and code execution
    record = json.loads(meta.read_text())
    record["sha256"] = files.sha256(weights)
    meta.write_text(json.dumps(record))
    marker = Path("/tmp/rbl-exploit-ran")
    marker.unlink(missing_ok=True)
    with pytest.raises(ValueError, match="holds objects other than tensors") as refused:
        store.load_state(SMALL, "npz:0")
    assert "weights_only=False" not in str(refused.value)  # no advice to turn the protection off
    assert not marker.exists()


def test_train_lowers_the_loss_and_is_seeded() -> None:
    ds = data.cifar10("train", limit=200, download=False)
    config = TrainConfig(model="lenet", epochs=6, batch_size=50, lr=0.02, limit=200)
    runs = []
    for _ in range(2):
        model = training.build_model(config, ds)
        history = training.train(model, ds, config, device="cpu", progress=False)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert history[-1]["loss"] < history[0]["loss"]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_augment_batch_is_a_shifted_crop_or_its_flip() -> None:
    x = torch.rand(6, 3, 8, 8)
    out = training.augment_batch(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):
        crops = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)


def test_evaluate_matches_a_hand_count() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(10, 1, 2, 2)
    y = torch.randint(0, 3, (10,))
    expected = (model(x).argmax(1) == y).float().mean().item()
    assert training.evaluate(model, x, y, batch_size=3) == pytest.approx(expected)


@pytest.mark.parametrize(
    "x,error,match",
    [
        (torch.rand(2, 3, 4, 4) * 2, ValueError, r"values in \[0, 1\]"),
        (torch.rand(3, 4, 4), None, None),
        (torch.rand(3, 4), ValueError, "N x C x H x W"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), TypeError, "floating-point"),
        (torch.full((2, 3, 4, 4), float("nan")), ValueError, "NaN"),
        (torch.full((2, 3, 4, 4), float("inf")), ValueError, r"values in \[0, 1\]"),
        (torch.full((3, 4, 4), float("inf")), ValueError, "NaN or infinite"),
    ],
)
def test_evaluate_checks_inputs(x: torch.Tensor, error: type | None, match: str | None) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))
    y = torch.zeros(len(x), dtype=torch.long)
    if error is None:
        training.evaluate(model, x, y)  # N x C x L series: any real values
    else:
        with pytest.raises(error, match=match):
            training.evaluate(model, x, y)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(model="vgg"), "model must be one of"),
        (dict(dataset="svhn"), "dataset must be one of"),
        (dict(optimizer="rmsprop"), "optimizer must be one of"),
        (dict(lr=0.0), r"lr must be in \(0.0"),
        (dict(compress_rate=1.0), r"compress_rate must be in \[0.0, 1.0\)"),
        (dict(compress_rate=0.5, energy=0.9), "not both"),
        (dict(energy=0.0), r"energy must be in \(0.0, 1.0\]"),
    ],
)
def test_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    "train,epochs,available,expected",
    [
        (10000, 12, 50000, {"limit": 10000, "epochs": 12}),
        (10000, 12, 2000, {"limit": 2000, "epochs": 60}),
        (200, 1, 2000, {"limit": 200, "epochs": 1}),
    ],
)
def test_budget_keeps_the_examples_seen(train: int, epochs: int, available: int, expected: dict) -> None:
    got = training.budget(train, epochs, available)
    assert got == expected
    assert got["limit"] * got["epochs"] >= min(train, available) * epochs


def test_recipe_is_the_model_recipe_with_overrides() -> None:
    config = training.recipe("resnet18", "cifar10", compress_rate=0.5, epochs=3, lr=0.2)
    assert config == TrainConfig(model="resnet18", epochs=3, batch_size=128, lr=0.2, augment=True, compress_rate=0.5)
    assert training.recipe("lenet", "cifar10", compress_rate=0.0).compress_rate is None  # 0%: plain convolutions
    fcn = training.recipe("fcn1d", "GunPoint", energy=0.9, lr=3e-3)
    assert (fcn.optimizer, fcn.lr, fcn.energy, fcn.compress_rate, fcn.batch_size) == ("adam", 3e-3, 0.9, None, 16)
    with pytest.raises(ValueError, match="model must be one of"):
        training.recipe("vgg", "cifar10")
