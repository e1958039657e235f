"""Cost of the shipped zoo: load time, time to evaluate 1,000 images, and training time per model.

Loading and evaluating alternate over the models within each round (load from other processes hits
them alike); medians over rounds, with each model's time relative to the plain fastnet-0 in the
same round. Evaluating is the cards' `zoo.measure` (batches of 500); beside it `predict` in batches
of `--small-batch` against 500 (a CPU's caches favour the smaller batch), with how many predictions
differ. Training times come from the cards (measured while the model trained). Run:
    .venv/bin/python benchmarks/zoo.py [--repeats 5] [--images 1000] [--small-batch 125]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence

import torch

from robustbench_bl import data, zoo
from robustbench_bl.cli import ArgumentParser, command_line, positive_int
from robustbench_bl.training.inference import predict


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--images", type=positive_int, default=1000)
    parser.add_argument("--small-batch", type=positive_int, default=125)
    args = parser.parse_args(argv)
    test = data.packaged_sample("test").at_most(args.images)
    names = zoo.names()
    load_s: dict[str, list[float]] = {n: [] for n in names}
    eval_s: dict[str, list[float]] = {n: [] for n in names}
    batch_ratio: dict[str, list[float]] = {n: [] for n in names}
    differ: dict[str, int] = {}
    for round_ in range(args.repeats + 1):  # round 0 warms up
        for name in names:
            start = time.perf_counter()
            model = zoo.load(name)
            loaded = time.perf_counter()
            zoo.measure(model, test.x, test.y)
            done = time.perf_counter()
            large = predict(model, test.x, batch_size=500)
            between = time.perf_counter()
            small = predict(model, test.x, batch_size=args.small_batch)
            end = time.perf_counter()
            differ[name] = int((large != small).sum())
            if round_:
                load_s[name].append(loaded - start)
                eval_s[name].append(done - loaded)
                batch_ratio[name].append((between - done) / (end - between))
    base = eval_s[names[0]]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} rounds, {len(test)} images\n")
    small = f"batch {args.small_batch} vs 500: speed, predictions that differ"
    print(f"| model | load s | evaluate s | evaluate vs fastnet-0 | {small} | train min (card) | train s / epoch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        card = zoo.card(name)
        ratio = statistics.median(b / t for b, t in zip(base, eval_s[name]))
        print(
            f"| {name} | {statistics.median(load_s[name]):.3f} | {statistics.median(eval_s[name]):.2f} | {ratio:.2f}x | "
            f"{statistics.median(batch_ratio[name]):.2f}x, {differ[name]} | "
            f"{card['train_seconds'] / 60:.1f} | {statistics.median(h['epoch_seconds'] for h in card['history']):.0f} |"
        )


if __name__ == "__main__":
    sys.exit(command_line(main))
