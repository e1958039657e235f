"""Data sources (npz folder, RBL_DATA, torchvision layout, packaged sample), limit, errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_bl import data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _fake_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n, dtype=np.int64) % 10


@pytest.fixture
def npz_root(tmp_path: Path) -> Path:
    """root/cifar10/{train_0,train_1,test}.npz in the shared layout (train in two parts)."""
    folder = tmp_path / "cifar10"
    folder.mkdir()
    for name, seed in (("train_0", 0), ("train_1", 1), ("test", 2)):
        x, y = _fake_cifar(30, seed)
        np.savez_compressed(folder / f"{name}.npz", x=x, y=y)
    return tmp_path


def test_npz_root_layout_and_values(npz_root: Path) -> None:
    ds = data.cifar10("train", root=npz_root, download=False)
    parts = [np.load(npz_root / "cifar10" / f"train_{i}.npz") for i in (0, 1)]
    raw = np.concatenate([p["x"] for p in parts])
    assert ds.x.shape == (60, 3, 32, 32) and ds.x.dtype == torch.float32
    assert ds.source_kind == "npz"
    # pixel (i, c, h, w) of the tensor is raw[i, h, w, c] / 255
    np.testing.assert_allclose(ds.x[7, 2, 5, 9].item(), raw[7, 5, 9, 2] / 255, rtol=1e-6)
    np.testing.assert_array_equal(ds.x.permute(0, 2, 3, 1).mul(255).round().byte().numpy(), raw)
    assert ds.y.tolist() == np.concatenate([p["y"] for p in parts]).tolist()


def test_npz_files_directly_in_root(npz_root: Path) -> None:
    ds = data.cifar10("test", root=npz_root / "cifar10", download=False)
    assert len(ds) == 30 and ds.split == "test"


def test_rbl_data_env(npz_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBL_DATA", str(npz_root))
    ds = data.cifar10("test", download=False)
    assert ds.source == f"npz:{(npz_root / 'cifar10').resolve()}"


def test_rbl_data_without_the_dataset_falls_through_to_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBL_DATA", str(tmp_path))
    assert data.cifar10("test", download=False).source_kind == "packaged"


@pytest.mark.skipif(not (SHARED / "mnist" / "test.npz").exists(), reason="../shared/data is not beside the checkout")
def test_rbl_data_shared_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBL_DATA", str(SHARED))
    ds = data.mnist("test", limit=20, download=False)
    assert ds.x.shape == (20, 1, 28, 28) and ds.source_kind == "npz"
    assert 0 <= ds.x.min() and ds.x.max() <= 1


def test_packaged_sample_is_class_balanced() -> None:
    train = data.cifar10("train", download=False)
    test = data.cifar10("test", download=False)
    assert train.source_kind == test.source_kind == "packaged"
    assert train.x.shape == (2000, 3, 32, 32) and len(test) == 1000
    assert torch.bincount(train.y).tolist() == [200] * 10
    assert torch.bincount(test.y).tolist() == [100] * 10
    assert (data.SAMPLE_DIR / "README.md").read_text().count("JPEG") >= 1
    total = sum(f.stat().st_size for f in (data.SAMPLE_DIR / "cifar10").glob("*.npz"))
    assert total <= 10 * 2**20


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (the MNIST format) as torchvision reads it."""
    code = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_layout(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        # torchvision also looks for the .gz it would download; a copy keeps it from trying
        for kind in ("images-idx3", "labels-idx1"):
            src = raw / f"{prefix}-{kind}-ubyte"
            (raw / f"{src.name}.gz").write_bytes(gzip.compress(src.read_bytes()))
    ds = data.mnist("test", root=tmp_path, download=False)
    assert ds.source_kind == "torchvision"
    np.testing.assert_array_equal(ds.x[:, 0].mul(255).round().byte().numpy(), images)
    assert ds.y.tolist() == labels.tolist()


def test_mnist_missing_names_the_ways_to_provide_it() -> None:
    with pytest.raises(FileNotFoundError, match=r"root=.*RBL_DATA.*internet"):
        data.mnist("train", download=False)


@pytest.mark.parametrize("limit,expected", [(10, [1] * 10), (25, [3] * 5 + [2] * 5), (60, [6] * 10)])
def test_limit_is_class_balanced(npz_root: Path, limit: int, expected: list[int]) -> None:
    ds = data.cifar10("train", root=npz_root, limit=limit, download=False)
    assert len(ds) == limit
    assert torch.bincount(ds.y, minlength=10).tolist() == expected


def test_limit_seed() -> None:
    a = data.cifar10("train", limit=50, seed=1, download=False)
    b = data.cifar10("train", limit=50, seed=1, download=False)
    c = data.cifar10("train", limit=50, seed=2, download=False)
    first = data.cifar10("train", limit=50, download=False)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert torch.equal(first.x, data.cifar10("train", download=False).x[:50])  # y[i] == i % 10 in the sample


def test_at_most() -> None:
    ds = data.cifar10("test", download=False)
    assert ds.at_most(5000) is ds
    assert torch.bincount(ds.at_most(30).y).tolist() == [3] * 10


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(name="svhn"), ValueError, "name must be one of"),
        (dict(name="cifar10", split="val"), ValueError, "split must be one of"),
        (dict(name="cifar10", root="/does/not/exist"), ValueError, "root must be an existing folder"),
        (dict(name="cifar10", limit=0), ValueError, "limit must be >= 1"),
        (dict(name="cifar10", limit=2.5), TypeError, "limit must be an int"),
        (dict(name="cifar10", limit=10**6), ValueError, "limit must be <="),
    ],
)
def test_bad_input(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        data.load(download=False, **kwargs)


def test_root_without_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no cifar10 train data"):
        data.cifar10("train", root=tmp_path, download=False)


@pytest.mark.parametrize("name,channels,length,classes", [("GunPoint", 1, 150, 2), ("BasicMotions", 6, 100, 4)])
def test_ucr(name: str, channels: int, length: int, classes: int) -> None:
    pytest.importorskip("aeon")
    train, test = data.ucr(name, "train"), data.ucr(name, "test")
    assert train.x.shape[1:] == (channels, length) and train.x.dtype == torch.float32
    assert train.num_classes == test.num_classes == classes
    assert set(train.y.tolist()) == set(test.y.tolist()) == set(range(classes))


def test_ucr_unknown_name() -> None:
    with pytest.raises(ValueError, match="GunPoint"):
        data.ucr("NotADataset")
