"""What every command line shares: one-line errors (exit code 2) and argument types that check
their values at parse time, so a bad command costs seconds, not a training run."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import torch


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line on stderr (exit code 2), like every other
    expected error of the command lines; --help still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0 (seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (counts and budgets: zero of them would measure nothing)."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


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
        chosen = resolve_device(text)
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} asks for CUDA, but no CUDA device is available")
    return chosen


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
    RBL_TRACEBACK=1 shows the whole traceback instead, for debugging."""
    try:
        main(list(sys.argv[1:] if argv is None else argv))
    except (ValueError, TypeError, OSError) as err:
        if os.environ.get("RBL_TRACEBACK"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
        return 2
    return 0
