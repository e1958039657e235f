"""Attack a trained model behind a lossy channel under a threat model; print and store the rows.

    rbl attack --channel gauss:0.03 --votes 16 --attack pgd-linf,hopskipjump \
        --threat eot --eot-samples 8 --epsilons 0,2/255,8/255 --n 100
    rbl attack --preset smoke --channel cd:3 --threat bpda   # seconds

The model comes from the checkpoint store (trained on demand by --model and --preset); rows are
appended to <out>/results.jsonl (a cell already stored is not recomputed) and <out>/results.csv.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pandas as pd

from robustbench_bl import Defended, attacks, channels, data, models
from robustbench_bl.cli import ArgumentParser, command_line, parse_args, positive_int, sample_test_images
from robustbench_bl.runtime.checkpoints import CheckpointStore
from robustbench_bl.runtime.output import RunFolder
from robustbench_bl.runtime.sweep import run
from robustbench_bl.training import budget, recipe

NAME = "attacks"
#: Training of the attacked model when it is not stored yet, per --preset.
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(train=500, epochs=2),
    "quick": dict(train=10000, epochs=12),
    "paper": dict(train=50000, epochs=350, augment=True),
}


def epsilons(text: str) -> list[float]:
    """'0,2/255,8/255' -> [0.0, 0.00784..., 0.0313...]; fractions or decimals >= 0, comma-separated."""
    try:
        values = [float(Fraction(part.strip())) for part in text.split(",")]
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated numbers such as 0,2/255,8/255, got {text!r}"
        ) from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be >= 0 (a budget in the attack's norm), got {text!r}")
    return values


def channel_spec(text: str) -> str:
    """argparse type: a channel spec that `channels.make` accepts, e.g. gauss:0.03."""
    try:
        channels.make(text)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def attack_names(text: str) -> list[str]:
    """argparse type: comma-separated names of registered attacks."""
    names = [name.strip() for name in text.split(",")]
    for name in names:
        try:
            attacks.spec(name)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return names


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Every option checked at parse time: nothing is loaded or trained for a bad command line."""
    parser = ArgumentParser(prog="rbl attack", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet", choices=[m for m in models.names() if models.INPUT_RANK[m] == 4])
    parser.add_argument("--dataset", default="cifar10", choices=data.IMAGE_DATASETS)
    parser.add_argument(
        "--channel",
        type=channel_spec,
        default="identity",
        help=f"lossy channel, e.g. gauss:0.03 or cd:3; one of {channels.names()}",
    )
    parser.add_argument("--votes", type=positive_int, default=1, help="majority vote over this many channel draws")
    parser.add_argument(
        "--attack", type=attack_names, default=["pgd-linf"], help=f"comma-separated names from {attacks.names()}"
    )
    parser.add_argument("--threat", default="nonadaptive", choices=attacks.THREATS)
    parser.add_argument(
        "--epsilons", type=epsilons, default=[0.0, 2 / 255, 8 / 255], help="e.g. 0,2/255,8/255 (in each attack's norm)"
    )
    parser.add_argument("--eot-samples", type=positive_int, default=8, help="channel draws averaged per step under eot")
    parser.add_argument(
        "--transfer",
        type=channel_spec,
        default=None,
        help="craft against this channel instead (e.g. laplace:0.05), judge on --channel",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="step or query budget of every attack (default: the registry's)",
    )
    parser.add_argument("--n", type=positive_int, default=100, help="class-balanced test examples")
    args = parse_args(NAME, parser.description or "", argv, parser, dataset=None)
    if args.transfer is not None and not attacks.Threat.parse(args.threat).adaptive:
        parser.error(
            "--transfer needs an adaptive --threat ('whitebox', 'bpda', 'eot' or 'bpda+eot'), got 'nonadaptive'"
        )
    return args


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = arguments(argv)
    names = args.attack
    channel = channels.make(args.channel, seed=args.seed)
    # The test split first: a --n larger than the data is an error before any training.
    test = sample_test_images(args.dataset, args.data, args.n, args.seed)
    p = dict(PRESETS[args.preset])
    available = len(data.load(args.dataset, "train", root=args.data))
    size = budget(p.pop("train"), p.pop("epochs"), available)
    config = recipe(args.model, args.dataset, seed=args.seed, **size, **p)
    model, meta = CheckpointStore(args.checkpoints).get_or_train(
        config, data_root=args.data, device=args.device, progress=not args.quiet
    )
    defended = Defended(model, channel, votes=args.votes)
    model_key = config.key(str(meta["data_source"]))

    def measure(cell: dict[str, Any]) -> list[dict[str, Any]]:
        steps_option = attacks.spec(cell["attack"]).budget  # the attack's own name for its step budget
        options = {steps_option: args.steps} if args.steps is not None and steps_option is not None else {}
        frame = attacks.evaluate(
            defended,
            cell["attack"],
            test.x,
            test.y,
            args.threat,
            args.epsilons,
            args.eot_samples,
            args.seed,
            transfer=args.transfer,
            options=options,
            progress=not args.quiet,
            precision=args.precision,
        )
        return frame.assign(data_source=test.source_kind).to_dict("records")

    cells = [
        {
            "study": NAME,
            "dataset": args.dataset,
            "model": args.model,
            "model_key": model_key,
            "channel": args.channel,
            "votes": args.votes,
            "attack": name,
            "threat": args.threat,
            "epsilons": args.epsilons,
            "eot_samples": args.eot_samples,
            "transfer": args.transfer,
            "steps": args.steps,
            "seed": args.seed,
            "n": args.n,
        }
        for name in names
    ]
    stored = run(cells, measure, RunFolder.from_args(args).store, progress=not args.quiet, desc=NAME)
    mine = stored[
        stored.model_key.eq(model_key)
        & stored.attack.isin(names)
        & stored.threat.eq(args.threat)
        & stored.channel.eq(attacks.channel_label(channel))
        & stored.votes.eq(args.votes)
    ]
    table = attacks.flag_obfuscation(mine)
    print(report(table))
    return table


def report(table: pd.DataFrame) -> str:
    """Robust accuracy per attack (rows) and epsilon (columns), with clean accuracy and flags."""
    robust = table[table.metric == "robust_accuracy"].pivot_table(index="attack", columns="epsilon", values="value")
    robust.columns = [f"eps={e:.4g}" for e in robust.columns]
    clean = table[table.metric == "clean_accuracy"].groupby("attack").value.first().rename("clean")
    notes = table.groupby("attack")["warnings"].first().fillna("")
    first = table.groupby("attack").first()
    lines = [
        f"{first.channel.iloc[0]}, votes={first.votes.iloc[0]}, threat={first.threat.iloc[0]}, n={first.n.iloc[0]}"
    ]
    lines.append(pd.concat([clean, robust], axis=1).to_string(float_format=lambda v: f"{v:.3f}"))
    lines += [
        f"{attack} ({first.gradient_path[attack]}): {note}" if note else f"{attack}: {first.gradient_path[attack]}"
        for attack, note in notes.items()
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(command_line(main))
