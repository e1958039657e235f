"""Command line of the zoo: list the shipped models, show a card, retrain models reproducibly.

rbl zoo list                      (or python -m robustbench_bl.zoo list)
rbl zoo card fastnet-50
rbl zoo train [NAME ...] [--data DIR] [--out DIR] [--work DIR] [--precision auto|float32|bfloat16]
rbl zoo check [NAME ...] [--data DIR]   (re-measure each card's accuracy; exit 1 on a disagreement)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from robustbench_bl import data, precision, zoo
from robustbench_bl.cli import ArgumentParser, command_line, device, writable_folder
from robustbench_bl.training import evaluate


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="rbl zoo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="shipped models with their band, seed, widths, stem and clean accuracy")
    show = sub.add_parser("card", help="print a model's card as JSON")
    show.add_argument("name", choices=list(zoo.SPECS))
    check = sub.add_parser(
        "check", help="re-measure shipped models on a test set and compare with the accuracy their cards record there"
    )
    check.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: every shipped one)")
    check.add_argument(
        "--data", default=None, help="CIFAR-10 folder (default: $RBL_DATA, the cache, else the packaged sample)"
    )
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
    if args.command == "check":
        return check(args.names or zoo.names(), args.data)
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


#: Images a re-measurement may differ by from the card (float reduction order across thread counts).
CHECK_TOLERANCE = 2


def check(names: Sequence[str], root: str | None) -> int:
    """Re-measure each model on the CIFAR-10 test split at `root` with the library's own evaluation
    (not the code that wrote the cards), in the cards' batch size, and compare with the accuracy
    the card records for the same images (found by the digest of the data's fingerprint, whatever
    folder kind holds them). 0 when all agree."""
    test = data.load("cifar10", "test", root=root)
    print(f"test data: {len(test)} images from {test.source} ({test.fingerprint})")
    failed = 0
    for name in names:
        recorded = [a for a in zoo.card(name)["accuracy"].values() if isinstance(a, dict)]
        digest = test.fingerprint.split(":")[-1]
        match = next((a for a in recorded if str(a.get("source", "")).split(":")[-1] == digest), None)
        if match is None:
            print(f"{name}: its card has no accuracy on these images (it has: {[a['source'] for a in recorded]})")
            failed += 1
            continue
        measured = evaluate(zoo.load(name), test.x, test.y, batch_size=zoo.EVAL_BATCH)
        differ = round(abs(measured - match["accuracy"]) * len(test))
        verdict = "agrees" if differ <= CHECK_TOLERANCE else "DISAGREES"
        print(f"{name}: measured {measured:.4f}, card {match['accuracy']:.4f} ({differ} images apart): {verdict}")
        failed += differ > CHECK_TOLERANCE
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(command_line(main))
