"""The shipped zoo: every model loads offline, reproduces its card's accuracy on the packaged
sample exactly, discards at least its rate in every layer, and a tampered file is refused."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robustbench_bl import data, zoo
from robustbench_bl.studies.common import ZOO_EPOCHS, ZOO_STEMS, zoo_name
from robustbench_bl.training import recipe
from robustbench_bl.training.fast import FastRecipe, train_fast

CARD_FIELDS = {
    "architecture",
    "compress_rate",
    "energy",
    "discarded_per_layer",
    "seed",
    "recipe",
    "train_data",
    "epochs",
    "train_seconds",
    "accuracy",
    "weights",
    "versions",
}


def test_the_zoo_ships_every_model_it_names() -> None:
    assert zoo.names() == list(zoo.SPECS)


@pytest.mark.parametrize("model", ["fastnet", "fastnet_nw"])
def test_the_studies_train_a_fastnet_the_zoo_lacks_with_the_zoo_recipe(model: str) -> None:
    config = recipe(model, "cifar10")
    assert (config.epochs, config.batch_size, config.optimizer) == (FastRecipe.epochs, FastRecipe.batch_size, "fast")


@pytest.mark.parametrize("name", zoo.names())
def test_the_studies_find_each_shipped_model_by_what_its_card_says(name: str) -> None:
    card = zoo.card(name)
    spec = zoo.SPECS[name]
    assert zoo.find(card["compress_rate"], card["energy"], card["seed"], card["epochs"], spec.stem) == name
    if card["epochs"] > 2:  # a fully trained one: the length the studies' presets ask for
        assert card["epochs"] == ZOO_EPOCHS
        assert (
            zoo_name(
                recipe(
                    next(model for model, stem in ZOO_STEMS.items() if stem == spec.stem),
                    "cifar10",
                    compress_rate=card["compress_rate"] or 0.0,
                    energy=card["energy"],
                    seed=card["seed"],
                    epochs=card["epochs"],
                )
            )
            == name
        )


@pytest.mark.parametrize("name", zoo.names())
def test_model_reproduces_its_card_on_the_packaged_sample(name: str) -> None:
    card = zoo.card(name)
    assert CARD_FIELDS <= set(card)
    assert card["train_data"]["n"] == 50000 and card["accuracy"]["full_test"]["n"] == 10000
    model = zoo.load(name)
    assert not model.training
    sample = data.packaged_sample("test")
    got = zoo.measure(model, sample.x, sample.y)
    assert got["accuracy"] == card["accuracy"]["sample_test"]["accuracy"]
    assert got["n"] == card["accuracy"]["sample_test"]["n"] == 1000
    assert (
        card["accuracy"]["full_test"]["accuracy"] >= 0.65
    )  # above the 42-60% LeNets it replaces (1-epoch control: 66.8%)


#: The full offline CIFAR-10 copy beside the checkout (the team's machines and CI have it).
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "cifar10").is_dir(), reason="no offline CIFAR-10 copy beside the checkout")
@pytest.mark.parametrize("name", zoo.names())
def test_full_test_accuracy_agrees_with_the_card(name: str) -> None:
    """An independent count on the whole 10k test set: argmax of the loaded model in batches of the
    cards' size (energy bands depend on the batch), not zoo.measure."""
    test = data.load("cifar10", "test", root=SHARED, download=False)
    assert len(test) == 10000
    model = zoo.load(name)
    batch = zoo.card(name)["eval_batch_size"]
    with torch.no_grad():
        right = sum(
            int((model(test.x[i : i + batch]).argmax(1) == test.y[i : i + batch]).sum()) for i in range(0, 10000, batch)
        )
    assert right / 10000 == zoo.card(name)["accuracy"]["full_test"]["accuracy"]


@pytest.mark.parametrize("name", [n for n in zoo.names() if zoo.SPECS[n].energy is None])
def test_every_layer_discards_at_least_its_rate(name: str) -> None:
    rate = zoo.SPECS[name].compress_rate or 0.0
    discarded = zoo.card(name)["discarded_per_layer"]
    assert len(discarded) == 7
    for layer, fraction in discarded.items():
        assert fraction >= rate - 1e-9, layer
        if rate == 0:
            assert fraction == 0


def test_weights_are_float16_safetensors_without_pickle() -> None:
    for name in zoo.names():
        raw = (zoo.WEIGHTS_DIR / f"{name}.safetensors").read_bytes()
        (length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + length])  # safetensors: a JSON header, then raw tensor bytes
        dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
        assert dtypes <= {"F16", "I64"} and "F16" in dtypes
        assert not raw.startswith(b"\x80") and b"torch._utils" not in raw


def test_a_tampered_weight_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = zoo.names()[0]
    for suffix in (".safetensors", ".json"):
        shutil.copy(zoo.WEIGHTS_DIR / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    zoo.load(name)  # the copy is intact
    blob = bytearray((tmp_path / f"{name}.safetensors").read_bytes())
    blob[-3] ^= 0x01
    (tmp_path / f"{name}.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="do not match their card"):
        zoo.load(name)


def test_every_zoo_study_asks_for_the_length_of_the_zoo_it_runs_on(tmp_path: Path) -> None:
    """With RBL_ZOO_DIR at a zoo of another length (here 6-epoch cards), each study that takes its
    FastNets from the zoo asks for that length, so it finds them instead of training new ones."""
    for name in zoo.SPECS:
        shutil.copy(zoo.WEIGHTS_DIR / f"{name}.safetensors", tmp_path)
        card = zoo.card(name)
        if card["epochs"] == FastRecipe.epochs:
            card["epochs"] = 6
        (tmp_path / f"{name}.json").write_text(json.dumps(card))
    code = (
        "from robustbench_bl import studies\n"
        "for name in ('compression_mismatch', 'accuracy_vs_compression', 'noise_robustness'):\n"
        "    p = studies.module(name).PRESETS['quick']\n"
        "    print(name, getattr(p, 'epochs', None) or max(m[3] for m in p.models))\n"
    )
    for folder, epochs in ((zoo.WEIGHTS_DIR, FastRecipe.epochs), (tmp_path, 6)):
        env = {**os.environ, "RBL_ZOO_DIR": str(folder)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.split() == [
            w
            for name in ("compression_mismatch", "accuracy_vs_compression", "noise_robustness")
            for w in (name, str(epochs))
        ]


def test_unknown_or_missing_models_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="fastnet-0"):
        zoo.load("resnet-99")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"rbl zoo train fastnet-50"):
        zoo.card("fastnet-50")


def test_rbl_zoo_dir_replaces_the_shipped_folder(tmp_path: Path) -> None:
    for name in ("fastnet-50",):
        for suffix in (".json", ".safetensors"):
            shutil.copy(zoo.WEIGHTS_DIR / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    code = "from robustbench_bl import zoo; print(zoo.names(), zoo.find(0.5), zoo.load('fastnet-50').training)"
    env = {**os.environ, "RBL_ZOO_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0] == "['fastnet-50'] fastnet-50 False"


def test_find_maps_bands_and_seeds_to_names() -> None:
    assert zoo.find(0.0) == "fastnet-0" and zoo.find(None) == "fastnet-0"
    assert zoo.find(0.5, seed=1) == "fastnet-50-s1"
    assert zoo.find(energy=0.95) == "fastnet-e95"
    assert zoo.find(0.3) is None


#: A few batches of the real recipe on the packaged sample (2,000 images, 7 steps an epoch).
SMOKE_RECIPE = FastRecipe(epochs=1, batch_size=256, whiten_images=200)


def smoke_train(name: str, tmp_path: Path, max_steps: int = 2) -> dict[str, Any]:
    """zoo.train of `name` cut to `max_steps` steps, its card and weights written to tmp_path."""
    return zoo.train(
        name,
        data_root=data.SAMPLE_DIR,
        work_dir=tmp_path,
        out_dir=tmp_path,
        recipe=SMOKE_RECIPE,
        max_steps=max_steps,
        progress=False,
        device="cpu",
    )


def test_recipe_smoke_publishes_a_loadable_card(tmp_path: Path) -> None:
    """A few batches of the real recipe on the packaged sample, through zoo.train."""
    record = smoke_train("fastnet-50", tmp_path)
    assert record["train_data"]["n"] == 2000 and "full_test" not in record["accuracy"]
    assert record["weights"]["sha256"] == zoo.sha256(tmp_path / "fastnet-50.safetensors")
    assert json.loads((tmp_path / "fastnet-50.json").read_text())["recipe"]["batch_size"] == 256
    assert not (tmp_path / "fastnet-50.partial.pt").exists()
    assert min(record["discarded_per_layer"].values()) >= 0.5
    assert torch.isfinite(torch.tensor(record["history"][0]["loss"]))


def test_an_energy_models_card_records_its_bands_from_initialization_on(tmp_path: Path) -> None:
    """Fig. 4 on a zoo model: the card's bands at initialization are those of the network the training
    started from (seen through train_fast's on_epoch(-1)), and each epoch's row holds its bands."""
    record = smoke_train("fastnet-e95", tmp_path)
    train_set = data.load("cifar10", "train", root=data.SAMPLE_DIR)
    probe = train_set.x[: zoo.EVAL_BATCH], train_set.y[: zoo.EVAL_BATCH]
    started: dict[str, float] = {}

    def at_start(epoch: int, model: torch.nn.Module) -> None:
        if epoch == -1:
            started.update(zoo.measure(model, *probe)["discarded_per_layer"])

    train_fast(
        zoo.build("fastnet-e95"), train_set, SMOKE_RECIPE, device="cpu", progress=False, max_steps=1, on_epoch=at_start
    )
    assert record["bands_at_initialization"] == started and len(started) == 7 and max(started.values()) > 0
    assert set(record["history"][0]["discarded_per_layer"]) == set(started)
    assert json.loads((tmp_path / "fastnet-e95.json").read_text())["bands_at_initialization"] == started
    plain = smoke_train("fastnet-0", tmp_path, max_steps=1)
    assert "bands_at_initialization" not in plain and "discarded_per_layer" not in plain["history"][0]


def test_check_re_measures_a_card_and_flags_a_false_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from robustbench_bl.zoo.command import main

    monkeypatch.delenv("RBL_DATA", raising=False)
    monkeypatch.setattr(data, "_online", lambda name, timeout=3.0: False)
    name = "fastnet-50"
    for suffix in (".safetensors", ".json"):
        shutil.copy(zoo.WEIGHTS_DIR / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    assert main(["check", name, "--data", str(data.SAMPLE_DIR)]) == 0
    assert "(0 images apart): agrees" in capsys.readouterr().out
    card = json.loads((tmp_path / f"{name}.json").read_text())
    card["accuracy"]["sample_test"]["accuracy"] += 0.003  # three images more than the model gets right
    (tmp_path / f"{name}.json").write_text(json.dumps(card))
    assert main(["check", name, "--data", str(data.SAMPLE_DIR)]) == 1
    assert "(3 images apart): DISAGREES" in capsys.readouterr().out
    subset = tmp_path / "data" / "cifar10"  # images the card never saw
    subset.mkdir(parents=True)
    sample = data.packaged_sample("test")
    for split in ("train", "test"):
        x = (sample.x[:50].permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
        np.savez(subset / f"{split}.npz", x=x, y=sample.y[:50].numpy())
    assert main(["check", name, "--data", str(tmp_path / "data")]) == 1
    assert "its card has no accuracy on these images" in capsys.readouterr().out


def test_command_line_lists_models_and_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    from robustbench_bl.zoo.command import main

    assert main(["list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == zoo.names()
    rbl = Path(sys.executable).parent / "rbl"  # the console script `pip install` puts beside python
    done = subprocess.run([str(rbl), "zoo", "train", "nope"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"rbl zoo: error: unknown zoo model(s) ['nope']; accepted: {list(zoo.SPECS)} (see --help)"
    ]
