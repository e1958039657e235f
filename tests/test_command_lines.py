"""Every command line (the 12 studies and the attack command) checks its arguments before it
loads data or trains: a bad argument is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from robustbench_bl import data, studies
from robustbench_bl.attacks import command
from robustbench_bl.cli import command_line

SCRIPTS = (*studies.NAMES, "attack")
SWEEP_OPTION = {"adaptive_vs_nonadaptive", "leaderboard"}


class Loaded(BaseException):
    """Raised where a command line starts reading data: validation must come first."""


def load_script(name: str) -> ModuleType:
    return command if name == "attack" else studies.module(name)


@pytest.fixture(scope="module")
def scripts() -> dict[str, ModuleType]:
    return {name: load_script(name) for name in SCRIPTS}


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any read of image or UCR data raises Loaded (not an Exception, so nothing catches it)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise Loaded

    monkeypatch.setattr(data, "_find", refuse)
    monkeypatch.setattr(data, "_aeon_split", refuse)


def run(main: Callable[..., object], argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit code, stderr) of the command line as `python script.py argv` runs it."""
    try:
        code = command_line(main, argv)
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


def common_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Bad arguments every study accepts: (argv, text the one-line error must contain)."""
    empty = tmp / "empty"
    empty.mkdir(exist_ok=True)
    blocker = tmp / "a-file"
    blocker.write_text("not a folder")
    cases = {
        "seed negative": (["--seed", "-1"], "--seed: must be >= 0"),
        "seed not int": (["--seed", "one"], "--seed: must be an integer"),
        "seed too large": (["--seed", str(2**70)], "--seed: must be <= 2**63 - 1"),
        "device mps": (["--device", "mps"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'mps'"),
        "device meta": (["--device", "meta"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'meta'"),
        "preset unknown": (["--preset", "fast"], "--preset: invalid choice"),
        "data missing": (["--data", str(tmp / "nowhere")], "--data must be an existing folder"),
        "data empty": (["--data", str(empty)], "holds no cifar10 train or test data"),
        "out unwritable": (["--out", str(blocker / "out")], "--out must be a writable folder"),
        "checkpoints unwritable": (["--checkpoints", str(blocker / "ck")], "--checkpoints must be a writable folder"),
        "device unknown": (["--device", "tpu9"], "device"),
        "num-gpus negative": (["--num-gpus", "-1"], "--num-gpus: must be a finite number >= 0"),
        "executor unknown": (["--executor", "slurm"], "--executor: invalid choice"),
    }
    if not torch.cuda.is_available():
        cases["device without CUDA"] = (["--device", "cuda"], "asks for CUDA, but no CUDA device is available")
    return cases


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_bad_common_arguments_are_one_line_before_loading(
    script: str, scripts: dict[str, ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_loading: None
) -> None:
    for case, (argv, expected) in common_cases(tmp_path).items():
        if script == "ucr" and case.startswith("data"):
            argv, expected = ["--data", str(tmp_path)], "--data is not used by ucr"
        code, err = run(
            scripts[script].main, [*argv, "--out", str(tmp_path / "out")] if "--out" not in argv else argv, capsys
        )
        assert code == 2, f"{script} {case}: exit code {code}, stderr {err!r}"
        assert err.count("\n") == 1 and "Traceback" not in err, f"{script} {case}: {err!r}"
        assert expected in err, f"{script} {case}: {err!r}"


ATTACK_CASES = {
    "votes zero": (["--votes", "0"], "--votes: must be >= 1"),
    "eot-samples zero": (["--eot-samples", "0"], "--eot-samples: must be >= 1"),
    "steps zero": (["--steps", "0"], "--steps: must be >= 1"),
    "steps negative": (["--steps", "-1"], "--steps: must be >= 1, got -1"),
    "n negative": (["--n", "-5"], "--n: must be >= 1, got -5"),
    "n zero": (["--n", "0"], "--n: must be >= 1"),
    "epsilon negative": (["--epsilons", "0,-2/255"], "--epsilons: must be >= 0"),
    "epsilon division by zero": (["--epsilons", "1/0"], "--epsilons: must be comma-separated numbers"),
    "channel unknown": (["--channel", "blur:2"], "--channel"),
    "channel strength": (["--channel", "gauss:-1"], "GaussianNoise strength must be in"),
    "attack unknown": (["--attack", "fgsm,pgd"], "attack must be one of"),
    "transfer unknown": (["--transfer", "nope:1", "--threat", "bpda"], "--transfer"),
    "transfer nonadaptive": (["--transfer", "laplace:0.05"], "--transfer needs an adaptive --threat"),
    "threat unknown": (["--threat", "greybox"], "--threat: invalid choice"),
}


@pytest.mark.parametrize("case", list(ATTACK_CASES))
def test_bad_attack_arguments_are_one_line_before_loading(
    case: str, scripts: dict[str, ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_loading: None
) -> None:
    argv, expected = ATTACK_CASES[case]
    code, err = run(scripts["attack"].main, [*argv, "--out", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err, f"{case}: {code} {err!r}"


@pytest.mark.parametrize("script", sorted(SWEEP_OPTION))
def test_missing_sweep_file(
    script: str, scripts: dict[str, ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_loading: None
) -> None:
    code, err = run(
        scripts[script].main, ["--channel-sweep", str(tmp_path / "none.csv"), "--out", str(tmp_path)], capsys
    )
    assert code == 2 and "--channel-sweep: must be an existing file" in err


def test_too_many_test_images_fail_before_training(
    scripts: dict[str, ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(*args: object, **kwargs: object) -> None:
        raise Loaded

    monkeypatch.setattr("robustbench_bl.runtime.checkpoints.CheckpointStore.get_or_train", no_training)
    code, err = run(scripts["attack"].main, ["--n", "5000", "--out", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "--n must be <= the 1000 test images of packaged:" in err


@pytest.mark.parametrize("script", ["noise_robustness", "attack"])
def test_the_paper_preset_without_the_full_data_is_refused(
    script: str,
    scripts: dict[str, ModuleType],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_loading: None,
) -> None:
    """Only the packaged sample here: `--preset paper` would train for 8,750 epochs on 1,000 images."""
    monkeypatch.delenv("RBL_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_online", lambda name, timeout=3.0: False)
    code, err = run(
        scripts[script].main, ["--preset", "paper", "--device", "cpu", "--out", str(tmp_path / "o")], capsys
    )
    assert code == 2 and err.count("\n") == 1 and "--preset paper trains on the full cifar10 training set" in err


def test_rbl_data_with_one_split_is_refused_up_front(
    scripts: dict[str, ModuleType],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_loading: None,
) -> None:
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "train.npz", x=np.zeros((10, 32, 32, 3), np.uint8), y=np.arange(10))
    monkeypatch.setenv("RBL_DATA", str(tmp_path))
    code, err = run(scripts["noise_robustness"].main, ["--preset", "smoke", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "holds cifar10 train data but not the other split" in err


def test_damaged_data_is_one_line_naming_the_file(
    scripts: dict[str, ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / "train.npz").write_bytes(b"PK\x03\x04 damaged")
    (folder / "test.npz").write_bytes(b"")
    code, err = run(
        scripts["noise_robustness"].main,
        ["--preset", "smoke", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1 and "is not a readable npz file" in err and str(folder) in err


def test_traceback_on_request(scripts: dict[str, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / "train.npz").write_bytes(b"")
    (folder / "test.npz").write_bytes(b"")
    monkeypatch.setenv("RBL_TRACEBACK", "1")
    with pytest.raises(ValueError, match="is not a readable npz file"):
        command_line(
            scripts["noise_robustness"].main,
            ["--preset", "smoke", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
        )


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["train", "fastnet-1"], "unknown zoo model(s) ['fastnet-1']"),
        (["train", "--data", "/does/not/exist"], "--data must be an existing folder"),
        (["train", "--out", "{blocker}/weights"], "--out must be a writable folder"),
        (["train", "--work", "{blocker}/work"], "--work must be a writable folder"),
        (["train", "--device", "tpu9"], "device"),
        pytest.param(
            ["train", "--device", "cuda"],
            "no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA"),
        ),
        (["card", "fastnet-1"], "argument name: invalid choice"),
        (["fit"], "invalid choice: 'fit'"),
    ],
)
def test_zoo_command_line_checks_before_training(
    argv: list[str],
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_loading: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from robustbench_bl import zoo
    from robustbench_bl.zoo.command import main

    monkeypatch.setattr(zoo, "train", lambda *a, **k: pytest.fail("trained despite a bad argument"))
    (tmp_path / "blocker").write_text("a file, not a folder")
    code, err = run(main, [a.replace("{blocker}", str(tmp_path / "blocker")) for a in argv], capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err, err


def test_rbl_lists_its_commands_and_dispatches(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_loading: None
) -> None:
    from robustbench_bl.__main__ import COMMANDS, main

    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and all(f"  {name}" in out for name in COMMANDS)
    assert command_line(main, ["study"]) == 0 and "noise_robustness" in capsys.readouterr().out
    code, err = run(main, ["study", "nope"], capsys)
    assert code == 2 and err.count("\n") == 1 and "study must be one of" in err
    code, err = run(main, ["frob"], capsys)
    assert code == 2 and "invalid choice: 'frob'" in err
    # The arguments after the study's name reach the study's own parser, which checks them first.
    code, err = run(main, ["study", "conv_error", "--preset", "huge", "--out", str(tmp_path)], capsys)
    assert code == 2 and "invalid choice: 'huge'" in err and err.startswith("rbl study conv_error: error:")
    with pytest.raises(Loaded):
        main(["study", "conv_error", "--preset", "smoke", "--out", str(tmp_path), "--quiet"])
