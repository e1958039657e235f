"""Datasets as tensors: CIFAR-10 and MNIST images N x C x H x W in [0, 1], UCR series N x C x L.

Images are found, in order, under an explicit `root`, under $RBL_DATA, in the user cache (a
torchvision download when online) and, for CIFAR-10, in the small sample shipped with the package.
Each `Dataset` says which source it came from.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch

from robustbench_bl.validation import check_choice, check_images, check_labels, check_positive_int

log = logging.getLogger(__name__)

IMAGE_DATASETS = ("cifar10", "mnist")
SPLITS = ("train", "test")
UCR_DATASETS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "ACSF1", "BasicMotions")
SAMPLE_DIR = Path(__file__).parent / "_sample"

# Shape of one uint8 image in the npz layout (see ../shared/data/*/README.md).
_NPZ_IMAGE_SHAPE = {"cifar10": (32, 32, 3), "mnist": (28, 28)}
# Host of torchvision's download for each dataset: probed before a download is attempted.
_DOWNLOAD_HOST = {"cifar10": "www.cs.toronto.edu", "mnist": "ossci-datasets.s3.amazonaws.com"}


@dataclass(frozen=True)
class Dataset:
    """Inputs `x` (float32), integer labels `y` (int64) and where they came from."""

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor
    source: str
    num_classes: int

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y must hold as many examples, got {len(self.x)} inputs and {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def at_most(self, limit: int, seed: int | None = None) -> Dataset:
        """A class-balanced subset of `limit` examples, or the whole dataset when it is smaller."""
        check_positive_int(limit, "limit")
        if limit >= len(self):
            return self
        idx = torch.from_numpy(balanced_indices(self.y.numpy(), limit, seed))
        return Dataset(self.name, self.split, self.x[idx], self.y[idx], self.source, self.num_classes)

    @functools.cached_property
    def fingerprint(self) -> str:
        """'<source kind>:<16 hex digits of sha256 over the inputs and labels>': what was trained on.

        Two folders holding different files give different fingerprints, and a subset differs from
        its whole; checkpoint keys and zoo cards record it.
        """
        digest = hashlib.sha256()
        digest.update(repr((tuple(self.x.shape), str(self.x.dtype))).encode())
        digest.update(self.x.detach().cpu().contiguous().numpy().tobytes())
        digest.update(self.y.detach().cpu().contiguous().numpy().tobytes())
        return f"{self.source_kind}:{digest.hexdigest()[:16]}"

    @property
    def source_kind(self) -> str:
        """The source without its path: 'npz', 'torchvision', 'packaged', 'aeon' or 'user'."""
        return self.source.split(":", 1)[0]


#: What `user_data` accepts: (x, y) tensors, a Dataset of this module, or a torch Dataset of (image, label) pairs.
UserData = Union["Dataset", tuple[torch.Tensor, torch.Tensor], torch.utils.data.Dataset]


def user_data(data: object, name: str = "data") -> Dataset:
    """A user's own test images as a Dataset: an (x, y) pair of tensors (x N x C x H x W in [0, 1],
    y integer labels), a `Dataset` of this module (returned as it is), or any torch Dataset whose
    items are (image C x H x W tensor, integer label) pairs. The argument is checked and named."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
    elif isinstance(data, torch.utils.data.Dataset):
        x, y = _stack(data, name)
    else:
        raise TypeError(
            f"{name} must be an (x, y) pair of tensors, a robustbench_bl.data.Dataset or a torch Dataset of "
            f"(image, label) pairs, got {type(data).__name__}"
        )
    x = check_images(x, f"{name}'s images")
    y = check_labels(y, len(x), None, f"{name}'s labels")
    if len(y) == 0:
        raise ValueError(f"{name} holds no examples")
    if y.min() < 0:
        raise ValueError(f"{name}'s labels must be >= 0 (class indices), got {y.min().item()}")
    return Dataset("custom", "test", x.float(), y.long(), "user:in-memory", int(y.max()) + 1)


def _stack(data: torch.utils.data.Dataset, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The items of a torch Dataset of (image, label) pairs as two stacked tensors."""
    images, labels = [], []
    for i in range(len(data)):  # type: ignore[arg-type]
        item = data[i]
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], torch.Tensor)):
            raise TypeError(f"{name}[{i}] must be an (image tensor, label) pair, got {type(item).__name__}")
        images.append(item[0])
        labels.append(int(item[1]))
    if not images:
        raise ValueError(f"{name} holds no examples")
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        raise ValueError(f"{name}'s images must all have one shape, got {sorted(shapes)[:3]}")
    return torch.stack(images), torch.tensor(labels)


def cache_dir() -> Path:
    """Where downloads go: $XDG_CACHE_HOME/robustbench_bl (default ~/.cache/robustbench_bl)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "robustbench_bl"


def load(
    name: str,
    split: str = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int | None = None,
    download: bool = True,
) -> Dataset:
    """Load an image dataset ('cifar10' or 'mnist') as float tensors in [0, 1].

    `limit` keeps a class-balanced subset (the first examples of each class, or a random choice
    per class when `seed` is given). `download=False` never touches the network.
    """
    check_choice(name, "name", IMAGE_DATASETS)
    check_choice(split, "split", SPLITS)
    if limit is not None:
        check_positive_int(limit, "limit")
    x, y, source = _find(name, split, root, download)
    if len(y) == 0:
        given = "" if root is None else f"root={str(root)!r}: "
        raise ValueError(
            f"{given}{source} holds no {name} {split} images: add them, or point root / RBL_DATA elsewhere"
        )
    if limit is not None:
        idx = balanced_indices(y, limit, seed)
        x, y = x[idx], y[idx]
    return _dataset(name, split, x, y, source)


def _dataset(name: str, split: str, x: np.ndarray, y: np.ndarray, source: str) -> Dataset:
    """uint8 N x H x W (x C) images and labels as a Dataset of float images in [0, 1]."""
    images = torch.from_numpy(np.ascontiguousarray(x))
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    log.info("%s/%s: %d images from %s", name, split, len(y), source)
    return Dataset(name, split, images.float().div_(255), torch.from_numpy(y).long(), source, 10)


def packaged_sample(split: str = "test") -> Dataset:
    """The class-balanced CIFAR-10 sample shipped with the package (2,000 train / 1,000 test images)."""
    check_choice(split, "split", SPLITS)
    found = _npz("cifar10", split, SAMPLE_DIR / "cifar10", kind="packaged")
    if found is None:
        raise FileNotFoundError(f"the packaged CIFAR-10 sample is missing from {SAMPLE_DIR}; reinstall the package")
    return _dataset("cifar10", split, *found)


def cifar10(split: str = "train", **kwargs: object) -> Dataset:
    """CIFAR-10, 3 x 32 x 32; see `load` for the keyword arguments."""
    return load("cifar10", split, **kwargs)  # type: ignore[arg-type]


def mnist(split: str = "train", **kwargs: object) -> Dataset:
    """MNIST, 1 x 28 x 28; see `load` for the keyword arguments."""
    return load("mnist", split, **kwargs)  # type: ignore[arg-type]


def balanced_indices(y: np.ndarray, limit: int, seed: int | None = None) -> np.ndarray:
    """Indices of `limit` examples spread evenly over the classes of `y` (the first classes take the
    remainder); in dataset order, or drawn at random per class when `seed` is given."""
    classes = np.unique(y)
    if limit > len(y):
        raise ValueError(f"limit must be <= the {len(y)} examples available, got {limit}")
    per, extra = divmod(limit, len(classes))
    rng = np.random.default_rng(seed) if seed is not None else None
    chosen = []
    for i, c in enumerate(classes):
        members = np.flatnonzero(y == c)
        want = per + (i < extra)
        if want > len(members):
            raise ValueError(f"limit={limit} needs {want} examples of class {c}, only {len(members)} exist")
        if rng is not None:
            members = rng.permutation(members)
        chosen.append(members[:want])
    return np.sort(np.concatenate(chosen))


def _find(
    name: str, split: str, root: str | os.PathLike[str] | None, download: bool
) -> tuple[np.ndarray, np.ndarray, str]:
    """Return (uint8 images, labels, source) from the first source that has the dataset."""
    if root is not None:
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise ValueError(f"root must be an existing folder, got {str(root)!r}")
        found = _from_folder(name, split, folder)
        if found is None and download and _online(name):
            found = _torchvision(name, split, folder, download=True)
        if found is None:
            raise ValueError(
                f"root={str(root)!r} holds no {name} {split} data: expected torchvision's layout or "
                f"npz files ({split}.npz or {split}_*.npz with keys x, y) in {folder} or {folder / name}"
            )
        return found
    env = os.environ.get("RBL_DATA")
    if env:
        folder = Path(env).expanduser()
        found = _from_folder(name, split, folder)
        if found is not None:
            return found
        other = next(s for s in SPLITS if s != split)
        if has_split(name, other, folder):
            # Never mix sources: the user's train split with the packaged test split would be silently wrong.
            raise ValueError(
                f"RBL_DATA={env} holds {name} {other} data but no {split} split: add {split}.npz (or "
                f"{split}_*.npz) beside it in {folder / name}, or unset RBL_DATA"
            )
        log.warning("RBL_DATA=%s holds no %s data; trying the next source", env, name)
    found = _torchvision(name, split, cache_dir(), download=False)
    if found is None and download and _online(name):
        found = _torchvision(name, split, cache_dir(), download=True)
    if found is None and name == "cifar10":
        found = _npz(name, split, SAMPLE_DIR / name, kind="packaged")
    if found is None:
        raise FileNotFoundError(
            f"no {name} data found offline. Provide it in one of these ways: pass root=<folder> "
            f"(torchvision's layout or npz files as in shared/data/{name}/README.md); set "
            f"RBL_DATA=<folder holding {name}/>; or connect to the internet so torchvision can "
            f"download it into {cache_dir()}"
        )
    return found


def check_source(name: str, root: str | os.PathLike[str] | None = None, name_of_root: str = "root") -> None:
    """Check, without reading images, that `root` (or $RBL_DATA when root is None) holds both splits
    of `name` where it holds any: what a command line verifies before it loads or trains anything."""
    check_choice(name, "name", IMAGE_DATASETS)
    if root is not None:
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise ValueError(f"{name_of_root} must be an existing folder, got {str(root)!r}")
        missing = [split for split in SPLITS if not has_split(name, split, folder)]
        if missing:
            raise ValueError(
                f"{name_of_root}={str(root)!r} holds no {name} {' or '.join(missing)} data: expected npz files "
                f"(<split>.npz or <split>_*.npz with keys x, y) in {folder / name} or {folder}, or torchvision's layout"
            )
        return
    env = os.environ.get("RBL_DATA")
    if env:
        held = [split for split in SPLITS if has_split(name, split, Path(env).expanduser())]
        if len(held) == 1:
            raise ValueError(
                f"RBL_DATA={env} holds {name} {held[0]} data but not the other split; add it or unset RBL_DATA"
            )


def full_source(name: str, root: str | os.PathLike[str] | None = None) -> bool:
    """Whether `name` would load from more than the packaged sample: `root`, $RBL_DATA, the
    torchvision cache, or a download (checked without reading images)."""
    env = os.environ.get("RBL_DATA")
    folders = [Path(f).expanduser() for f in (root, env) if f] + [cache_dir()]
    return any(has_split(name, "train", folder) for folder in folders) or _online(name)


def has_split(name: str, split: str, folder: str | os.PathLike[str]) -> bool:
    """Whether `folder` holds files of `split` in a layout `load(name, root=folder)` reads (checked
    by name only, without reading them): the cheap up-front check of command lines."""
    folder = Path(folder).expanduser()
    if any(_npz_files(split, candidate) for candidate in (folder / name, folder)):
        return True
    if name == "cifar10":
        batches = folder / "cifar-10-batches-py"
        return (batches / ("data_batch_1" if split == "train" else "test_batch")).is_file()
    raw = folder / "MNIST" / "raw"
    return (raw / f"{'train' if split == 'train' else 't10k'}-images-idx3-ubyte").is_file()


def _from_folder(name: str, split: str, folder: Path) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Look for the npz layout in folder/name and folder, then torchvision's layout in folder."""
    for candidate, named in ((folder / name, True), (folder, False)):
        found = _npz(name, split, candidate, kind="npz", strict=named)
        if found is not None:
            return found
    return _torchvision(name, split, folder, download=False)


def _npz_files(split: str, folder: Path) -> list[Path]:
    """`split.npz`, else the parts `split_*.npz` in name order, in `folder`."""
    whole = folder / f"{split}.npz"
    return [whole] if whole.is_file() else sorted(folder.glob(f"{split}_*.npz"))


def _npz(
    name: str, split: str, folder: Path, kind: str, strict: bool = True
) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Read `split.npz` or the parts `split_*.npz` (concatenated in name order) from `folder`.

    Files of another known dataset's shape in a folder not named for `name` are not ours (None);
    any other damage or mismatch is a ValueError naming the file.
    """
    files = _npz_files(split, folder)
    if not files:
        return None
    xs, ys = [], []
    for file in files:
        x, y = _read_npz(file, name)
        if x.shape[1:] != _NPZ_IMAGE_SHAPE[name] or x.dtype != np.uint8:
            if not strict and x.dtype == np.uint8 and x.shape[1:] in _NPZ_IMAGE_SHAPE.values():
                return None  # another dataset's files beside the folders: let the next candidate answer
            raise ValueError(
                f"{file} holds images of shape {x.shape[1:]} and dtype {x.dtype}, but {name} needs uint8 "
                f"N x {' x '.join(map(str, _NPZ_IMAGE_SHAPE[name]))}; see shared/data/{name}/README.md"
            )
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys), f"{kind}:{folder.resolve()}"


def _read_npz(file: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of one npz file, checked: readable, both keys, as many labels as images, labels 0..9."""
    fix = f"replace it with a file in the layout of shared/data/{name}/README.md (keys x and y) or remove it"
    try:
        with np.load(file, allow_pickle=False) as archive:
            found = sorted(archive.files)
            arrays = {key: archive[key] for key in ("x", "y") if key in found}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        raise ValueError(f"{file} is not a readable npz file ({type(err).__name__}: {err}); {fix}") from None
    if len(arrays) < 2:
        raise ValueError(f"{file} has no key(s) {sorted({'x', 'y'} - set(arrays))} (found {found}); {fix}")
    x, y = arrays["x"], arrays["y"]
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{file} holds {len(x)} images but labels of shape {y.shape}; {fix}")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise ValueError(f"{file} holds labels outside the integers 0..9 (dtype {y.dtype}); {fix}")
    return x, y.astype(np.int64)


def _torchvision(name: str, split: str, folder: Path, download: bool) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Read torchvision's own layout under `folder` (downloading into it when asked)."""
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "mnist": datasets.MNIST}[name]
    try:
        ds = cls(str(folder), train=split == "train", download=download)
    except (RuntimeError, OSError) as err:
        if download:
            log.warning("torchvision could not download %s: %s", name, err)
        return None
    x = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
    y = np.asarray(ds.targets, dtype=np.int64)
    return x, y, f"torchvision:{folder.resolve()}"


def _online(name: str, timeout: float = 3.0) -> bool:
    """Whether the dataset's download host answers (skipped when RBL_OFFLINE is set)."""
    if os.environ.get("RBL_OFFLINE"):
        return False
    try:
        with socket.create_connection((_DOWNLOAD_HOST[name], 443), timeout=timeout):
            return True
    except OSError:
        return False


def ucr(name: str, split: str = "train", *, limit: int | None = None, seed: int | None = None) -> Dataset:
    """A UCR/UEA series dataset bundled with aeon, as float32 N x C x L with labels 0..K-1.

    Labels are numbered in the sorted order of the class names over train and test together,
    so both splits agree.
    """
    check_choice(name, "name", UCR_DATASETS)
    check_choice(split, "split", SPLITS)
    if limit is not None:
        check_positive_int(limit, "limit")
    x, labels = _aeon_split(name, split)
    _, other = _aeon_split(name, "test" if split == "train" else "train")
    classes = np.unique(np.concatenate([labels, other]))
    y = np.searchsorted(classes, labels).astype(np.int64)
    if limit is not None:
        idx = balanced_indices(y, limit, seed)
        x, y = x[idx], y[idx]
    series = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return Dataset(name, split, series, torch.from_numpy(y), "aeon:bundled", len(classes))


def _aeon_split(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split of a dataset bundled with aeon: (N x C x L float array, string labels)."""
    import warnings

    try:
        from aeon import datasets
    except ImportError as err:
        raise ImportError("UCR data needs aeon: pip install 'robustbench-bl[ucr]'") from err
    loader = {
        "GunPoint": "load_gunpoint",
        "ArrowHead": "load_arrow_head",
        "ItalyPowerDemand": "load_italy_power_demand",
        "OSULeaf": "load_osuleaf",
        "ACSF1": "load_acsf1",
        "BasicMotions": "load_basic_motions",
    }[name]
    with warnings.catch_warnings():
        # aeon 1.6 deprecates its bundled ACSF1 copy (still shipped); the data are what we need.
        warnings.filterwarnings("ignore", message=".*load_acsf1.*", category=FutureWarning)
        x, y = getattr(datasets, loader)(split=split)
    return np.asarray(x), np.asarray(y).astype(str)
