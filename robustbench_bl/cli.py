"""What every command line shares: one-line errors (exit code 2) and argument types that check
their values at parse time, so a bad command costs seconds, not a training run; for the commands
that run experiments (the studies, `rbl attack`), the common options (`parse_args`); their output
folder is `runtime.output.RunFolder`. Heavy modules are imported where used, so `rbl --help`
stays quick."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import torch

from robustbench_bl.precision import PRECISIONS, flush_denormals

if TYPE_CHECKING:
    from robustbench_bl.data import Dataset


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line on stderr (exit code 2), like every other
    expected error of the command lines; --help still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


#: The largest integer option: seeds and counts go to torch and numpy as signed 64-bit integers.
MAX_INT = 2**63 - 1


def _int(text: str, minimum: int) -> int:
    """argparse type helper: an int in [minimum, MAX_INT]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    if value > MAX_INT:
        raise argparse.ArgumentTypeError(f"must be <= 2**63 - 1 (a signed 64-bit integer), got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0 (seeds)."""
    return _int(text, 0)


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (counts and budgets: zero of them would measure nothing)."""
    return _int(text, 1)


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def existing_file(text: str) -> str:
    """argparse type: the path of an existing file."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"must be an existing file, got {text!r}")
    return text


def device(text: str) -> torch.device:
    """argparse type: 'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ... that this machine has."""
    from robustbench_bl.training import resolve_device

    try:
        return resolve_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def writable_folder(path: str | os.PathLike[str], name: str) -> Path:
    """Create `path` if needed and prove it writable with a throwaway file; else a ValueError naming `name`."""
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"{name} must be a writable folder, got {str(path)!r} ({err.strerror or err})") from None
    return folder


def command_line(main: Callable[[Sequence[str]], object], argv: Sequence[str] | None = None) -> int:
    """Run a command's `main(argv)` and return its exit code: an expected error (ValueError,
    TypeError, OSError: bad input, a damaged or unreadable file) is one line on stderr and code 2.
    RBL_TRACEBACK=1 shows the whole traceback instead, for debugging. Run as the process's own command
    (`argv` None: sys.argv) it first makes float denormals count as zero (`precision.flush_denormals`);
    given `argv` (in-process, as the tests call it) it leaves the process's floating-point state alone."""
    if argv is None:
        flush_denormals()
    try:
        main(list(sys.argv[1:] if argv is None else argv))
    except (ValueError, TypeError, OSError) as err:
        if os.environ.get("RBL_TRACEBACK"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
        return 2
    return 0


def sample_test_images(dataset: str, root: str | None, n: int, seed: int) -> Dataset:
    """`n` class-balanced test images of `dataset` (the `--n` option): more than the source holds is
    an error naming --n and the source."""
    from robustbench_bl import data

    test = data.load(dataset, "test", root=root)
    if n > len(test):
        raise ValueError(f"--n must be <= the {len(test)} test images of {test.source}, got {n}")
    return test.at_most(n, seed=seed)


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
    from robustbench_bl.runtime.sweep import EXECUTORS

    parser = parser or ArgumentParser(prog=f"rbl study {name}", description=description)
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="quick",
        help="smoke: seconds; quick (default): <= 20 min on a 2-core CPU; paper: the papers' settings, for a GPU",
    )
    parser.add_argument(
        "--images",
        type=positive_int,
        default=None,
        help="test images instead of the preset's number (studies whose preset draws test images; a reference run "
        "asks for more, a look for fewer)",
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
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the gradient attacker's arithmetic; auto: bfloat16 where the hardware has it natively, else float32 "
        "(the judge is always float32)",
    )
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
            from robustbench_bl import data

            data.check_source(dataset, args.data, "--data")
            if args.preset == "paper" and not data.full_source(dataset, args.data):
                raise ValueError(
                    f"--preset paper trains on the full {dataset} training set, and only the packaged 1,000-image "
                    "sample is here (no --data, RBL_DATA or torchvision cache): give --data DIR, or use --preset quick"
                )
        elif args.data is not None:
            raise ValueError(f"--data is not used by {name}, which reads its data from elsewhere")
        writable_folder(args.out, "--out")
        from robustbench_bl.runtime.checkpoints import CheckpointStore

        writable_folder(
            args.checkpoints or CheckpointStore.default_root(),
            "--checkpoints" if args.checkpoints else "the checkpoint folder ($RBL_CHECKPOINTS or the user cache)",
        )
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.preset == "paper" and args.device.type == "cpu":
        logging.warning("--preset paper is the papers' setting, sized for a GPU: on a CPU it takes days")
    return args
