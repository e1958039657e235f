"""The attack step with float denormals kept against flushed to zero (`precision.flush_denormals`,
which every command calls first), on the zoo's plain FastNet.

Whether a thread flushes denormals is fixed when torch starts its threads, so each measurement is a
fresh interpreter (`--child`), the two settings alternating round by round; cells are medians over
rounds of each child's median step, the ratio the median of per-round ratios kept / flushed. Run:
    .venv/bin/python benchmarks/denormals.py [--rounds 3] [--threads 2] [--steps 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

import torch
from precision import attack_step  # benchmarks/precision.py, beside this script

from robustbench_bl import precision, zoo
from robustbench_bl.cli import ArgumentParser, command_line, positive_int

#: The attacker's view in each working precision, and the model as it is (no channels_last view).
VARIANTS = {
    "fastnet-0, attacker's view, float32": ("float32", True),
    "fastnet-0, attacker's view, bfloat16": ("bfloat16", True),
    "fastnet-0 as it is, float32": ("float32", False),
}


def child(flush: bool, threads: int, steps: int) -> None:
    """Print each variant's median step seconds, one line each, in a process that set the flag first."""
    torch.set_num_threads(threads)
    if flush:
        precision.flush_denormals()
    torch.manual_seed(0)
    x, y = torch.rand(256, 3, 32, 32), torch.randint(0, 10, (256,))
    model = zoo.load("fastnet-0")
    for working, view in VARIANTS.values():
        step = attack_step(model, x, y, working, view)
        step()  # warm-up
        seconds = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - start)
        print(statistics.median(seconds))


def measure(flush: bool, threads: int, steps: int) -> list[float]:
    argv = [sys.executable, __file__, "--child", "flush" if flush else "keep", "--threads", str(threads)]
    out = subprocess.run([*argv, "--steps", str(steps)], capture_output=True, text=True, check=True).stdout
    return [float(line) for line in out.split()]


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--steps", type=positive_int, default=3)
    parser.add_argument("--child", choices=("keep", "flush"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> None:
    args = parse(argv)
    kept, flushed = [], []
    for _ in range(args.rounds):
        kept.append(measure(False, args.threads, args.steps))
        flushed.append(measure(True, args.threads, args.steps))
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds, batch 256, "
        f"native bf16: {precision.native_bf16('cpu')}\n"
    )
    print("| variant | denormals kept, s | flushed, s | kept / flushed |")
    print("|---|---:|---:|---:|")
    for i, name in enumerate(VARIANTS):
        ratio = statistics.median(k[i] / f[i] for k, f in zip(kept, flushed, strict=True))
        print(
            f"| {name} | {statistics.median(k[i] for k in kept):.3f} | "
            f"{statistics.median(f[i] for f in flushed):.3f} | {ratio:.2f}x |"
        )


if __name__ == "__main__":
    if (args := parse(sys.argv[1:])).child:  # not through command_line, which would flush in both
        child(args.child == "flush", args.threads, args.steps)
    else:
        sys.exit(command_line(main))
