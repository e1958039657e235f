"""The `rbl` command (also `python -m robustbench_bl`): run a study, attack a defended model, use
the zoo, or write an HTML report of results. Errors are one line on stderr with exit code 2.

    rbl study noise_robustness --preset smoke    # any study; rbl study NAME --help for its options
    rbl attack --channel gauss:0.03 --attack pgd-linf --threat eot
    rbl benchmark --model mypackage.nets:make_net --weights net.safetensors --channel cd:3
    rbl zoo list | card NAME | train [NAME ...]
    rbl report results/                          # results/report.html
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from robustbench_bl import __version__
from robustbench_bl.cli import ArgumentParser, command_line
from robustbench_bl.studies import NAMES


def _study(argv: Sequence[str]) -> object:
    from robustbench_bl import studies

    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: rbl study NAME [options]   (rbl study NAME --help: the study's options)\n\nstudies:\n  "
            + "\n  ".join(NAMES)
        )
        return None
    return studies.module(argv[0]).main(list(argv[1:]))


def _attack(argv: Sequence[str]) -> object:
    from robustbench_bl.attacks import command

    return command.main(list(argv))


def _benchmark(argv: Sequence[str]) -> object:
    from robustbench_bl.evaluation import command

    return command.main(list(argv))


def _zoo(argv: Sequence[str]) -> object:
    from robustbench_bl.zoo import command

    return command.main(list(argv))


def _report(argv: Sequence[str]) -> object:
    from robustbench_bl import report

    parser = ArgumentParser(prog="rbl report", description="Write one self-contained HTML page for a results folder.")
    parser.add_argument("dir", help="a study's --out folder, or a folder of them (e.g. results/)")
    parser.add_argument("--out", default=None, help="the HTML file to write (default DIR/report.html)")
    args = parser.parse_args(argv)
    print(f"wrote {report.write(args.dir, args.out)}")
    return None


#: Command name -> (what it does, its entry taking the remaining arguments).
COMMANDS: dict[str, tuple[str, Callable[[Sequence[str]], object]]] = {
    "study": ("run a study: rbl study NAME [--preset smoke|quick|paper] ...", _study),
    "attack": ("attack a trained model behind a lossy channel under a threat model", _attack),
    "benchmark": (
        "the fixed protocol on a zoo model or your own (package.module:factory); one JSON result",
        _benchmark,
    ),
    "zoo": ("the shipped trained models: list, card NAME, train [NAME ...]", _zoo),
    "report": ("write one HTML page of a results folder: rbl report DIR [--out FILE]", _report),
}


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="rbl",
        description="robustbench_bl: run a study, attack or benchmark a defended model, use the model zoo, or write an HTML report of results.",
        epilog="commands:\n"
        + "\n".join(f"  {name:10s}{text}" for name, (text, _) in COMMANDS.items())
        + "\n\nrbl COMMAND --help: the command's options",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("--version", action="version", version=f"robustbench_bl {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> object:
    """Dispatch `rbl COMMAND ...` to the command's own parser with the remaining arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv or argv[0].startswith("-"):
        parser.parse_args(argv)  # --help, --version, or the usage error of a missing command
        return None
    parser.parse_args(argv[:1])
    return COMMANDS[argv[0]][1](argv[1:])


def run() -> None:
    """Console-script entry point: exit with the command's code (2 on an expected error)."""
    sys.exit(command_line(main))


if __name__ == "__main__":
    run()
