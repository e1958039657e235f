"""Regression tests for the reliability review: every case that was silently wrong or crashed
inside torch / numpy / zipfile now gives a valid result or a ValueError/TypeError naming what is
wrong (the checkpoint-key cases live in test_training.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import robustbench_bl as rbl
from robustbench_bl import attacks, channels, data, models
from robustbench_bl.evaluation import probes
from robustbench_bl.runtime import sweep
from robustbench_bl.runtime.checkpoints import CheckpointStore
from robustbench_bl.runtime.results import ResultsStore
from robustbench_bl.spectral import (
    BandLimitedConv1d,
    BandLimitedConv2d,
    band_limited_conv1d,
    band_limited_conv2d,
    bandlimit,
)
from robustbench_bl.spectral.layers import BAND_LIMITED
from robustbench_bl.training import TrainConfig, evaluate, predict

EMPTY = torch.rand(0, 3, 32, 32)


@pytest.fixture(scope="module")
def lenet() -> nn.Module:
    torch.manual_seed(0)
    return models.make("lenet").eval()


# --- data files -------------------------------------------------------------------------------


def _cifar_folder(root: Path, split: str, x: np.ndarray, y: np.ndarray) -> Path:
    folder = root / "cifar10"
    folder.mkdir(exist_ok=True)
    np.savez(folder / f"{split}.npz", x=x, y=y)
    return folder / f"{split}.npz"


def test_npz_with_fewer_labels_than_images_names_the_file(tmp_path: Path) -> None:
    file = _cifar_folder(tmp_path, "test", np.zeros((5, 32, 32, 3), np.uint8), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=f"{file} holds 5 images but labels of shape"):
        data.cifar10("test", root=tmp_path, download=False)


def test_dataset_refuses_different_lengths() -> None:
    with pytest.raises(ValueError, match="x and y must hold as many examples, got 3 inputs and 2 labels"):
        data.Dataset("cifar10", "test", torch.zeros(3, 3, 32, 32), torch.zeros(2, dtype=torch.long), "npz:x", 10)


@pytest.mark.parametrize("via", ["root", "RBL_DATA"])
def test_wrongly_shaped_cifar_folder_is_an_error_not_the_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    file = _cifar_folder(tmp_path, "test", np.zeros((5, 28, 28), np.uint8), np.zeros(5, np.int64))
    root = tmp_path if via == "root" else None
    if via == "RBL_DATA":
        monkeypatch.setenv("RBL_DATA", str(tmp_path))
    with pytest.raises(
        ValueError, match=rf"{file} holds images of shape \(28, 28\).*cifar10 needs uint8 N x 32 x 32 x 3"
    ):
        data.cifar10("test", root=root, download=False)


def test_other_datasets_files_beside_the_folders_are_skipped(tmp_path: Path) -> None:
    """npz files directly in a folder that hold MNIST are not CIFAR-10's: not ours, not an error."""
    np.savez(tmp_path / "test.npz", x=np.zeros((10, 28, 28), np.uint8), y=np.arange(10))
    assert len(data.mnist("test", root=tmp_path, download=False)) == 10
    with pytest.raises(ValueError, match="holds no cifar10 test data"):
        data.cifar10("test", root=tmp_path, download=False)


def test_rbl_data_missing_a_split_is_not_mixed_with_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _cifar_folder(tmp_path, "train", np.zeros((10, 32, 32, 3), np.uint8), np.arange(10))
    monkeypatch.setenv("RBL_DATA", str(tmp_path))
    assert data.cifar10("train", download=False).source_kind == "npz"
    with pytest.raises(ValueError, match="holds cifar10 train data but no test split"):
        data.cifar10("test", download=False)
    with pytest.raises(ValueError, match="holds cifar10 train data but not the other split"):
        data.check_source("cifar10")


@pytest.mark.parametrize(
    "content,match",
    [
        (b"PK\x03\x04 not really a zip", "is not a readable npz file .BadZipFile"),
        (b"", "is not a readable npz file .EOFError"),
        (None, r"has no key\(s\) \['y'\]"),
        ("labels", "holds labels outside the integers 0..9"),
    ],
)
def test_damaged_npz_names_the_file_and_the_fix(tmp_path: Path, content: bytes | str | None, match: str) -> None:
    folder = tmp_path / "cifar10"
    folder.mkdir()
    file = folder / "test.npz"
    if content is None:
        np.savez(file, x=np.zeros((2, 32, 32, 3), np.uint8))
    elif content == "labels":
        np.savez(file, x=np.zeros((2, 32, 32, 3), np.uint8), y=np.array([3, 10]))
    else:
        file.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match) as info:
        data.cifar10("test", root=tmp_path, download=False)
    assert str(file) in str(info.value) and "README.md" in str(info.value)


# --- models and layers ------------------------------------------------------------------------


class _Shared(nn.Module):
    """One conv used under three names (twice in one parent, once in a child)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.again = self.conv
        self.inner = nn.Sequential(self.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.again(self.conv(x)))


def test_bandlimit_keeps_a_shared_conv_shared() -> None:
    torch.manual_seed(0)
    model = _Shared()
    x = torch.rand(2, 3, 8, 8)
    expected = model(x)
    bandlimit(model, compress_rate=0.0)
    assert isinstance(model.conv, BandLimitedConv2d) and model.conv is model.again is model.inner[0]
    assert len(list(model.parameters())) == 2  # still one weight and one bias
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("energy", [None, 0.9])
def test_spectral_convs_on_an_empty_batch(energy: float | None) -> None:
    weight = torch.randn(4, 3, 3, 3, requires_grad=True)
    rate = None if energy else 0.5
    y = band_limited_conv2d(EMPTY, weight, padding=1, compress_rate=rate, energy=energy)
    assert y.shape == F.conv2d(EMPTY, weight, padding=1).shape == (0, 4, 32, 32)
    y.sum().backward()
    assert weight.grad is not None and not weight.grad.any()
    assert band_limited_conv1d(torch.rand(0, 3, 20), torch.randn(4, 3, 5), compress_rate=0.5).shape == (0, 4, 16)
    assert BandLimitedConv2d(3, 4, 3, compress_rate=0.5)(EMPTY).shape == (0, 4, 30, 30)
    assert BandLimitedConv1d(3, 4, 3)(torch.rand(0, 3, 9)).shape == (0, 4, 7)


# --- channels and the defended classifier -----------------------------------------------------


@pytest.mark.parametrize("spec", ["fft:0.5", "jpeg:50", "svd:0.5", "cd:3", "gauss:0.1", "identity"])
def test_channels_on_empty_batches_and_half_precision(spec: str) -> None:
    channel = channels.make(spec, seed=0)
    assert channel(EMPTY).shape == EMPTY.shape
    x = torch.rand(2, 3, 16, 16)
    half = channel(x.half())
    assert half.dtype == torch.float16 and half.shape == x.shape
    if not channel.stochastic:  # computed in float32, then rounded to half
        torch.testing.assert_close(half.float(), channel(x.half().float()), atol=2e-3, rtol=0)


def test_defended_on_an_empty_batch(lenet: nn.Module) -> None:
    defended = rbl.Defended(lenet, channels.make("gauss:0.1"), votes=4, seed=0)
    labels, counts = defended.predict(EMPTY)
    assert labels.shape == (0,) and counts.shape == (0, 10)
    assert defended(EMPTY).shape == (0, 10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_defended_runs_other_precisions_in_the_models(lenet: nn.Module, dtype: torch.dtype) -> None:
    x = torch.rand(4, 3, 32, 32)
    defended = rbl.Defended(lenet)
    labels, _ = defended.predict(x.to(dtype))
    assert torch.equal(labels, defended.predict(x.to(dtype).float())[0])
    assert defended(x.to(dtype)).dtype == torch.float32


def test_attacks_refuse_an_empty_batch(lenet: nn.Module) -> None:
    with pytest.raises(ValueError, match="x must hold at least one example to attack"):
        attacks.evaluate(rbl.Defended(lenet), "fgsm", EMPTY, torch.zeros(0, dtype=torch.long), epsilons=[0.01])


def test_attacks_accept_float64_and_graph_attached_inputs(lenet: nn.Module) -> None:
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64, requires_grad=True) * 1  # non-leaf, float64
    rows = attacks.evaluate(rbl.Defended(lenet), "fgsm", x.clamp(0, 1), torch.arange(4), epsilons=[0.0, 0.05])
    assert rows[rows.metric == "robust_accuracy"].value.notna().all()


# --- training ---------------------------------------------------------------------------------


def test_evaluate_checks_labels_against_the_models_classes(lenet: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 9\], got range \[3, 12\]"):
        evaluate(lenet, torch.rand(2, 3, 32, 32), torch.tensor([3, 12]))
    with pytest.raises(ValueError, match="at least one example"):
        evaluate(lenet, EMPTY, torch.zeros(0, dtype=torch.long))


def test_evaluate_and_predict_restore_the_callers_mode() -> None:
    torch.manual_seed(0)
    model = models.make("lenet").train()
    x = torch.rand(3, 3, 32, 32)
    evaluate(model, x, torch.tensor([0, 1, 2]))
    predict(model, x.double())
    assert model.training
    model.eval()
    predict(model, x)
    assert not model.training


def test_damaged_checkpoint_metadata_names_the_file(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    config = TrainConfig(model="lenet", epochs=1, limit=20)
    store.get_or_train(config, progress=False, device="cpu")
    (meta,) = tmp_path.glob("*.json")
    for damage in ("{broken", "[1, 2]", "\udcff"):
        meta.write_bytes(damage.encode("utf-8", "surrogateescape"))
        with pytest.raises(ValueError, match=f"checkpoint metadata {meta} is damaged.*delete it"):
            store.get_or_train(config, progress=False, device="cpu")


# --- results store and sweeps -----------------------------------------------------------------


def test_results_store_skips_damaged_lines_and_writes_only_good_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ResultsStore(tmp_path / "r.jsonl")
    store.append({"a": 1}, [{"metric": "m", "value": 1.0}])
    damage = [
        b"\xff\xfe not utf-8\n",
        b"[1, 2, 3]\n",
        b'{"key": 5, "cell": {}, "rows": []}\n',
        b'{"key": "k", "cell": {}, "rows": "text"}\n',
        b'{"key": "k", "cell": {}, "rows": [1]}\n',
        b"{not json\n",
    ]
    with open(store.path, "ab") as fh:
        fh.writelines(damage)
    store.append({"a": 2}, [{"metric": "m", "value": 2.0}])
    with caplog.at_level(logging.WARNING, logger="robustbench_bl.runtime.results"):
        table = store.frame()
    assert table.to_dict("records") == [{"a": 1, "metric": "m", "value": 1.0}, {"a": 2, "metric": "m", "value": 2.0}]
    assert sum("skipping a damaged line" in r.message for r in caplog.records) == len(damage)
    assert store.keys() == {
        json.loads(line)["key"] for line in store.path.read_text("utf-8", "replace").splitlines()[:1]
    } | {json.loads(store.path.read_bytes().splitlines()[-1])["key"]}
    csv = store.to_csv().read_text()
    assert csv.splitlines() == ["a,metric,value", "1,m,1.0", "2,m,2.0"]


def test_sweep_cell_returning_no_rows_fails_that_cell_only(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "s.jsonl")

    def measure(cell: dict) -> list[dict] | None:
        return None if cell["a"] == 2 else [{"metric": "m", "value": cell["a"]}]

    with pytest.raises(
        sweep.SweepError, match=r"(?s)1 cell.*measure must return a list of dicts \(tidy rows\), got NoneType"
    ):
        sweep.run(sweep.grid(a=[1, 2, 3]), measure, store, progress=False)  # type: ignore[arg-type]
    assert sorted(store.frame().value) == [1, 3]


# --- probes -----------------------------------------------------------------------------------


def test_m2_on_cupy_band_limited_layers_says_why(lenet: nn.Module) -> None:
    banded = bandlimit(models.make("lenet"), compress_rate=0.5).eval()
    assert probes.hessian_top_eigenvalue(banded, torch.rand(2, 3, 32, 32), iters=5).shape == (2,)  # torch backend
    assert probes.gradient_norm(banded, torch.rand(2, 3, 32, 32)).shape == (2,)
    layer = banded.get_submodule("1")
    assert isinstance(layer, BAND_LIMITED)
    layer.backend = "cupy"
    with pytest.raises(ValueError, match=r"backend=.cupy. \(1\).*set backend=.torch."):
        probes.hessian_top_eigenvalue(banded, torch.rand(2, 3, 32, 32))


# --- other stored files: training resume state, zoo cards -------------------------------------


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 damaged", "not a dict", "missing keys"])
def test_damaged_resume_checkpoint_names_the_file(tmp_path: Path, content: bytes | str) -> None:
    from robustbench_bl.training.fast import FastRecipe, train_fast

    path = tmp_path / "run.pt"
    if content == "not a dict":
        torch.save([1, 2], path)
    elif content == "missing keys":
        torch.save({"recipe": {}}, path)
    else:
        path.write_bytes(content)  # type: ignore[arg-type]
    recipe = FastRecipe(epochs=1, batch_size=16, whiten_images=16)
    with pytest.raises(ValueError, match=f"resume checkpoint {path} is damaged .*delete it"):
        train_fast(
            models.FastNet(widths=(8, 8, 8)),
            data.packaged_sample("train").at_most(32),
            recipe,
            device="cpu",
            resume=path,
            progress=False,
        )


def test_damaged_zoo_card_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robustbench_bl import zoo

    name = zoo.names()[0]
    (tmp_path / f"{name}.safetensors").write_bytes(b"")
    (tmp_path / f"{name}.json").write_text("{damaged")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ValueError, match=f"zoo card {tmp_path / name}.json is damaged.*reinstall"):
        zoo.load(name)
