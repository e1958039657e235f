"""Command line of the zoo: list the shipped models, show a card, retrain models reproducibly.

rbl zoo list                      (or python -m robustbench_bl.zoo list)
rbl zoo card fastnet-50
rbl zoo train [NAME ...] [--data DIR] [--out DIR] [--work DIR] [--precision auto|float32|bfloat16]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from robustbench_bl import data, precision, zoo
from robustbench_bl.cli import ArgumentParser, command_line, device, writable_folder


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="rbl zoo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="shipped models with their band, seed, widths, stem and clean accuracy")
    show = sub.add_parser("card", help="print a model's card as JSON")
    show.add_argument("name", choices=list(zoo.SPECS))
    train = sub.add_parser("train", help="train zoo models with the FastNet recipe (resumable)")
    train.add_argument(
        "names", nargs="*", metavar="NAME", help=f"models to train (default: all of {', '.join(zoo.SPECS)})"
    )
    train.add_argument("--data", default=None, help="CIFAR-10 folder (default: $RBL_DATA, the cache, ...)")
    train.add_argument("--out", default=str(zoo.WEIGHTS_DIR), help="where weights and cards go (default: the package)")
    train.add_argument("--work", default=None, help="folder of the per-epoch resume checkpoints (default: the cache)")
    train.add_argument("--device", type=device, default="auto", help="'auto', 'cpu', 'cuda', ...")
    train.add_argument(
        "--precision",
        choices=precision.PRECISIONS,
        default="auto",
        help="the forward's arithmetic; auto: bfloat16 where the hardware has it natively (float32 weights either way)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in zoo.names():
            c = zoo.card(name)
            band = f"energy {c['energy']}" if c["energy"] is not None else f"rate {c['compress_rate'] or 0}"
            full = c["accuracy"].get("full_test", {}).get("accuracy")
            shape = f"{'/'.join(map(str, c['widths']))} {c.get('stem', 'whiten')}"
            print(
                f"{name:15s} {band:12s} seed {c['seed']}  {shape:18s} sample {c['accuracy']['sample_test']['accuracy']:.4f}  "
                f"full {'-' if full is None else f'{full:.4f}'}"
            )
        return 0
    if args.command == "card":
        print(json.dumps(zoo.card(args.name), indent=2))
        return 0
    unknown = [n for n in args.names if n not in zoo.SPECS]
    if unknown:
        parser.error(f"unknown zoo model(s) {unknown}; accepted: {list(zoo.SPECS)}")
    try:  # everything a training run needs, checked before the first (long) training starts
        data.check_source("cifar10", args.data, "--data")
        writable_folder(args.out, "--out")
        if args.work is not None:
            writable_folder(args.work, "--work")
    except ValueError as err:
        parser.error(str(err))
    for name in args.names or list(zoo.SPECS):
        record = zoo.train(
            name,
            data_root=args.data,
            work_dir=args.work,
            out_dir=Path(args.out),
            device=args.device,
            precision=args.precision,
        )
        print(
            f"{name}: full test {record['accuracy'].get('full_test', {}).get('accuracy')}, "
            f"sample {record['accuracy']['sample_test']['accuracy']}, {record['train_seconds']:.0f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(command_line(main))
