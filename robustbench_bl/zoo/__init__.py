"""The model zoo: FastNets trained on the full offline CIFAR-10, shipped inside the package.

Each model is a safetensors file (float16, no pickle) beside a JSON card that records how it was
made and what it scores; `load` refuses a file whose sha256 differs from its card's. Retrain and
audit them with `rbl zoo train [NAME ...]`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robustbench_bl import data as datasets
from robustbench_bl.models.common import eval_mode, placement
from robustbench_bl.models.fastnet import FastNet
from robustbench_bl.runtime.files import sha256
from robustbench_bl.spectral.layers import recording_bands
from robustbench_bl.training import resolve_device
from robustbench_bl.training.fast import FastRecipe, init_whitening, train_fast
from robustbench_bl.validation import check_choice, read_json_record
from robustbench_bl.versions import versions

#: Where the zoo's weights and cards live: the shipped ones, or $RBL_ZOO_DIR (a folder of models
#: trained with `rbl zoo train --out DIR`, e.g. a zoo still training) when set at import.
WEIGHTS_DIR = Path(os.environ.get("RBL_ZOO_DIR") or Path(__file__).parent / "weights")
#: Training images of every zoo model (the full CIFAR-10 training split).
TRAIN_SIZE = 50000
#: The widths a zoo model is trained at (airbench's).
WIDTHS = (64, 256, 256)
#: Batch size of every evaluation on a card: energy-based bands depend on the batch they see.
EVAL_BATCH = 500


@dataclass(frozen=True)
class ZooSpec:
    """What distinguishes one zoo model: its band (static rate or retained energy), its seed, its
    training length (fewer epochs: an early-stopped, less accurate plain model as a control) and its
    first layer (`stem`: the frozen whitening, or a learned convolution as the whitening-free control)."""

    compress_rate: float | None = None
    energy: float | None = None
    seed: int = 0
    epochs: int = FastRecipe.epochs
    stem: str = "whiten"


#: The fixed set, all at airbench's widths 64/256/256:
#: - static compression 0 / 25 / 50 / 85 % (Table 1's curve and its far end), energy-based at 0.95;
#: - a second seed of 0 % and 50 %, so that a compression effect can be told apart from seed noise;
#: - plain models trained for 1 and 2 epochs (the same schedule, compressed): controls of lower clean
#:   accuracy, so that "band-limited" can be told apart from "less accurate";
#: - 'nw' (no whitening) at 0 / 50 / 85 %: a learned first convolution instead of the frozen
#:   whitening, which amplifies the JPEG-poor high-frequency chroma directions ~40x; the noise claim
#:   must hold without it too.
SPECS: dict[str, ZooSpec] = {
    "fastnet-0": ZooSpec(),
    "fastnet-25": ZooSpec(compress_rate=0.25),
    "fastnet-50": ZooSpec(compress_rate=0.5),
    "fastnet-85": ZooSpec(compress_rate=0.85),
    "fastnet-e95": ZooSpec(energy=0.95),
    "fastnet-0-s1": ZooSpec(seed=1),
    "fastnet-50-s1": ZooSpec(compress_rate=0.5, seed=1),
    "fastnet-0-1ep": ZooSpec(epochs=1),
    "fastnet-0-2ep": ZooSpec(epochs=2),
    "fastnet-nw-0": ZooSpec(stem="learned"),
    "fastnet-nw-50": ZooSpec(compress_rate=0.5, stem="learned"),
    "fastnet-nw-85": ZooSpec(compress_rate=0.85, stem="learned"),
}


def names() -> list[str]:
    """The zoo models shipped with this installation (weights and card present), in SPECS order."""
    return [n for n in SPECS if _files(n)[0].is_file() and _files(n)[1].is_file()]


def find(
    compress_rate: float | None = None,
    energy: float | None = None,
    seed: int = 0,
    epochs: int | None = None,
    stem: str = "whiten",
) -> str | None:
    """The shipped zoo model trained at this band, seed and stem, or None (a rate of 0 means plain).
    `epochs`: the training length its card records; None: the fully trained one, whatever its length
    (a zoo trained before the recipe's length changed is shorter than SPECS plans)."""
    band = (compress_rate or None, energy, seed, stem)
    for name in names():
        spec = SPECS[name]
        if (spec.compress_rate, spec.energy, spec.seed, spec.stem) != band:
            continue
        if epochs == card(name)["epochs"] or (epochs is None and spec.epochs == FastRecipe.epochs):
            return name
    return None


def _files(name: str, folder: Path | None = None) -> tuple[Path, Path]:
    """(weights, card) of a model in `folder` (default: WEIGHTS_DIR, looked up at call time)."""
    folder = WEIGHTS_DIR if folder is None else folder
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def _check_shipped(name: object) -> str:
    check_choice(name, "name", list(SPECS))
    if name not in names():
        raise ValueError(
            f"zoo model {name!r} is not shipped with this installation (shipped: {names()}); "
            f"train it with: rbl zoo train {name}"
        )
    return str(name)


def card(name: str) -> dict[str, Any]:
    """The model's card: architecture, band, per-layer fraction discarded, seed, recipe, training
    data fingerprint, epochs, train time, clean accuracies and library versions."""
    return read_json_record(_files(_check_shipped(name))[1], "zoo card", "weights", dict, "reinstall the package")


def build(name: str, widths: tuple[int, ...] = WIDTHS) -> FastNet:
    """A freshly initialized (untrained) network of the named zoo model, band-limited as it says
    (`widths`: the blocks' widths; `load` passes the card's, so older, narrower models still load)."""
    check_choice(name, "name", list(SPECS))
    spec = SPECS[name]
    torch.manual_seed(spec.seed)
    model = FastNet(widths=widths, stem=spec.stem)
    if spec.compress_rate is not None or spec.energy is not None:
        from robustbench_bl.spectral import bandlimit

        bandlimit(model, compress_rate=spec.compress_rate, energy=spec.energy)
    return model


def load(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """The trained model in eval mode on `device`, after checking its file against the card."""
    name = _check_shipped(name)
    weights, _ = _files(name)
    expected = card(name)["weights"]["sha256"]
    actual = sha256(weights)
    if actual != expected:
        raise ValueError(
            f"zoo weights {weights} do not match their card: sha256 {actual}, card says {expected}; "
            "the file was modified or damaged; reinstall the package or retrain with "
            f"rbl zoo train {name}"
        )
    model = build(name, tuple(card(name)["widths"]))
    state = {k: v.to(model.state_dict()[k].dtype) for k, v in load_file(weights).items()}
    model.load_state_dict(state)
    return model.to(resolve_device(device)).eval()


@torch.no_grad()
def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, flip: bool = False) -> dict[str, Any]:
    """Accuracy over batches of EVAL_BATCH and each convolution's mean fraction of the one-sided
    spectrum discarded (0 for a plain nn.Conv2d); `flip` also reports, from the same pass, the
    accuracy with logits averaged over the image and its mirror ('accuracy_flip_tta'). Runs in eval
    mode and restores the model's mode afterwards."""
    with eval_mode(model):
        return _measure(model, x, y, flip)


def _measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, flip: bool) -> dict[str, Any]:
    dev = placement(model)[0]
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    discarded: dict[str, list[float]] = {n: [] for n in convs}
    correct = correct_flip = 0
    for i in range(0, len(x), EVAL_BATCH):
        xb, yb = x[i : i + EVAL_BATCH].to(dev), y[i : i + EVAL_BATCH]
        with recording_bands(model) as record:
            logits = model(xb)
        for n in convs:
            discarded[n].append(1.0 - record[n][-1] if record.get(n) else 0.0)
        correct += int((logits.argmax(1).cpu() == yb).sum())
        if flip:
            correct_flip += int(((logits + model(xb.flip(-1))).argmax(1).cpu() == yb).sum())
    out = {
        "accuracy": correct / max(len(y), 1),
        "n": len(y),
        "discarded_per_layer": {n: round(sum(v) / max(len(v), 1), 6) for n, v in discarded.items()},
    }
    if flip:
        out["accuracy_flip_tta"] = correct_flip / max(len(y), 1)
    return out


def publish(
    name: str,
    model: FastNet,
    recipe: FastRecipe,
    history: list[dict[str, float]],
    train_seconds: float,
    train_set: datasets.Dataset,
    out_dir: Path | None = None,
    data_root: str | os.PathLike[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store `model` as float16 safetensors and write its card, with accuracies measured on the
    stored (float16-rounded) weights: on the full offline test set when one is found, and on the
    packaged test sample. `extra`: further fields of the card."""
    weights, card_file = _files(name, out_dir)
    weights.parent.mkdir(parents=True, exist_ok=True)
    full_precision = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    stored = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in full_precision.items()}
    save_file(stored, str(weights))
    model.cpu().eval()
    test_sample = datasets.packaged_sample("test")
    full_test = _full_test_set(data_root)
    accuracy: dict[str, Any] = {}
    if full_test is not None:
        accuracy["full_test_float32"] = measure(model, full_test.x, full_test.y)["accuracy"]
    model.load_state_dict({k: v.to(full_precision[k].dtype) for k, v in stored.items()})
    sample = measure(model, test_sample.x, test_sample.y)
    accuracy["sample_test"] = {"accuracy": sample["accuracy"], "n": sample["n"], "source": test_sample.fingerprint}
    if full_test is not None:
        full = measure(model, full_test.x, full_test.y, flip=True)
        accuracy["full_test"] = {"accuracy": full["accuracy"], "n": full["n"], "source": full_test.fingerprint}
        accuracy["full_test_flip_tta"] = full["accuracy_flip_tta"]
    spec = SPECS[name]
    record = {
        "name": name,
        "architecture": "fastnet",
        "widths": list(model.widths),
        "stem": model.stem,
        "compress_rate": spec.compress_rate,
        "energy": spec.energy,
        "discarded_per_layer": (full if full_test is not None else sample)["discarded_per_layer"],
        "seed": spec.seed,
        "recipe": asdict(recipe),
        "epochs": recipe.epochs,
        "train_data": {"source": train_set.source, "fingerprint": train_set.fingerprint, "n": len(train_set)},
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "precision": sorted({h.get("precision", "float32") for h in history}),
        "history": history,
        "accuracy": accuracy,
        "eval_batch_size": EVAL_BATCH,
        "weights": {
            "file": weights.name,
            "sha256": sha256(weights),
            "dtype": "float16",
            "bytes": weights.stat().st_size,
        },
        "versions": versions(),
    } | (extra or {})
    card_file.write_text(json.dumps(record, indent=2) + "\n")
    return record


def epoch_bands(probe: tuple[torch.Tensor, torch.Tensor]) -> Callable[[nn.Module], dict[str, Any]]:
    """A `train_fast(describe=...)` that records each epoch's per-layer discarded fraction on the probe
    batch (the first EVAL_BATCH training images, one batch as the card's accuracies are measured)."""
    return lambda model: {"discarded_per_layer": measure(model, *probe)["discarded_per_layer"]}


def bands_at_initialization(
    name: str, recipe: FastRecipe, train_set: datasets.Dataset, probe: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, float]:
    """Per-layer discarded fraction on the probe batch of the model as its training started: the same
    seeded initialization and whitening (so a resumed training reports it too)."""
    model = build(name)
    if model.stem == "whiten":
        init_whitening(model, train_set.x[: recipe.whiten_images], recipe.whiten_eps)
    return measure(model, *probe)["discarded_per_layer"]


def _full_test_set(root: str | os.PathLike[str] | None = None) -> datasets.Dataset | None:
    """The whole 10,000-image test set from `root`, $RBL_DATA or the cache, or None (never downloads)."""
    try:
        test = datasets.load("cifar10", "test", root=root, download=False)
    except (FileNotFoundError, ValueError):
        return None
    return test if len(test) >= 10000 else None  # not the packaged sample or another subset


def train(
    name: str,
    *,
    data_root: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    recipe: FastRecipe | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    precision: str = "auto",
) -> dict[str, Any]:
    """Train the named zoo model with the FastNet recipe and publish it to `out_dir`; returns its card.

    Training resumes from `work_dir`/NAME.partial.pt (default: the user cache) after a kill.
    `max_steps` cuts training short (smoke tests); such a model is never meant to be shipped.
    """
    check_choice(name, "name", list(SPECS))
    recipe = recipe if recipe is not None else FastRecipe(seed=SPECS[name].seed, epochs=SPECS[name].epochs)
    work = Path(work_dir) if work_dir is not None else datasets.cache_dir() / "zoo"
    work.mkdir(parents=True, exist_ok=True)
    train_set = datasets.load("cifar10", "train", root=data_root)
    model = build(name)
    partial = work / f"{name}.partial.pt"
    probe = train_set.x[:EVAL_BATCH], train_set.y[:EVAL_BATCH]
    history = train_fast(
        model,
        train_set,
        recipe,
        device=device,
        resume=partial,
        progress=progress,
        max_steps=max_steps,
        precision=precision,
        describe=None if SPECS[name].energy is None else epoch_bands(probe),
    )
    seconds = sum(h["epoch_seconds"] for h in history)  # epochs run before a resume count too
    # Fig. 4 of the first paper on an energy model: its bands from the start (and per epoch in history).
    extra = (
        {}
        if SPECS[name].energy is None
        else {"bands_at_initialization": bands_at_initialization(name, recipe, train_set, probe)}
    )
    out = None if out_dir is None else Path(out_dir)
    record = publish(name, model, recipe, history, seconds, train_set, out, data_root, extra)
    partial.unlink(missing_ok=True)
    return record


__all__ = [
    "EVAL_BATCH",
    "SPECS",
    "TRAIN_SIZE",
    "WEIGHTS_DIR",
    "WIDTHS",
    "ZooSpec",
    "build",
    "card",
    "find",
    "load",
    "measure",
    "names",
    "publish",
    "train",
]
