"""Speed of majority voting, of the batched SVD channel and of the judge's forward batch size, as
ratios measured side by side in one run.

Prints a markdown table (medians over repeats) for benchmarks/README.md. The last block votes a
full-width FastNet (random weights time like trained ones) behind Gaussian noise on `--judge-images`
images, as a study's judge does, at the old default max_batch=1024 (one forward of all the images
per draw) against the default None (slices of 128 on a CPU). Run:
    .venv/bin/python benchmarks/channels.py [--repeats 7] [--model lenet] [--images 128] [--max-batch 1024] [--judge-images 1000]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from robustbench_bl import Defended, data, models
from robustbench_bl.channels import GaussianNoise, SVDCompression
from robustbench_bl.cli import ArgumentParser, command_line, positive_int


def interleaved_seconds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times of each run over `repeats` rounds, after a warm-up round.

    The runs alternate within each round, so load from other processes on a shared machine hits
    the runs being compared alike, and per-round ratios cancel most of it.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeats + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if round_:
                times[name].append(time.perf_counter() - start)
    return times


def rows_against(baseline: str, times: dict[str, list[float]], targets: dict[str, str]) -> list[tuple[str, float, str]]:
    """(label, median seconds, median over rounds of baseline time / time) for every run."""
    rows = []
    for name, seconds in times.items():
        ratio = statistics.median(b / t for b, t in zip(times[baseline], seconds, strict=True))
        rows.append((name, statistics.median(seconds), f"{ratio:.2f}x{targets.get(name, '')}"))
    return rows


def numpy_svd_loop(images: np.ndarray, rank: int) -> np.ndarray:
    """The baseline: one np.linalg.svd call per image (over its channels), rank-k reconstruction."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        u, s, vh = np.linalg.svd(image, full_matrices=False)
        out[i] = np.clip((u[..., :rank] * s[..., None, :rank]) @ vh[..., :rank, :], 0, 1)
    return out


def torch_svd(images: torch.Tensor, rank: int) -> torch.Tensor:
    """Batched torch.linalg.svd with the same reconstruction, for comparison with the channel's eigh."""
    u, s, vh = torch.linalg.svd(images, full_matrices=False)
    return ((u[..., :rank] * s[..., None, :rank]) @ vh[..., :rank, :]).clamp(0, 1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument("--model", default="lenet", choices=models.names())
    parser.add_argument("--votes", type=positive_int, default=32)
    parser.add_argument("--images", type=positive_int, default=128, help="CIFAR-10 test images in the voting batch")
    parser.add_argument("--max-batch", type=positive_int, default=1024)
    parser.add_argument("--judge-images", type=positive_int, default=1000)
    args = parser.parse_args(argv)

    x = data.cifar10("test").at_most(args.images, seed=0).x
    model = models.make(args.model).eval()
    channel = GaussianNoise(0.05, seed=0)
    defended = Defended(model, channel, votes=args.votes, max_batch=args.max_batch).eval()
    noisy = channel(x.repeat(args.votes, 1, 1, 1))  # the same T x N images, drawn beforehand
    shape = f"T={args.votes} x N={len(x)}"
    bare = f"bare {args.model} on the {args.votes * len(x)} noisy images"
    vote = f"Defended.predict, {shape}, gauss"
    with torch.no_grad():
        voting = interleaved_seconds(
            {
                bare: lambda: [model(chunk) for chunk in noisy.split(args.max_batch)],
                vote: lambda: defended.predict(x),
                f"Defended.forward, {shape}, gauss": lambda: defended(x),
            },
            args.repeats,
        )

    svd = SVDCompression(0.5)
    rank = svd.rank_kept(32, 32)
    loop, channel_svd = f"numpy svd loop over {len(x)} images", f"SVDCompression(0.5), {len(x)} x 3 x 32 x 32"
    svds = interleaved_seconds(
        {
            loop: lambda: numpy_svd_loop(x.numpy(), rank),
            channel_svd: lambda: svd(x),
            "batched torch.linalg.svd, same truncation": lambda: torch_svd(x, rank),
        },
        args.repeats,
    )
    judged = data.cifar10("test").at_most(args.judge_images, seed=0).x
    fastnet = models.make("fastnet").eval()
    old, new = (f"FastNet vote, 4 draws x N={len(judged)}, max_batch={b}" for b in ("1024", "None (128 on a CPU)"))
    judging = interleaved_seconds(
        {
            old: lambda: Defended(fastnet, channel, votes=4, seed=0, max_batch=1024).eval().predict(judged),
            new: lambda: Defended(fastnet, channel, votes=4, seed=0).eval().predict(judged),
        },
        args.repeats,
    )
    rows = rows_against(bare, voting, {vote: " (target >= 0.8x)"})
    rows += rows_against(loop, svds, {channel_svd: " (target >= 5x)"})
    rows += rows_against(old, judging, {})

    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {threads} threads, {args.repeats} interleaved rounds, max_batch={args.max_batch}\n"
    )
    print("| measurement | median ms | speed vs baseline (median of per-round ratios) |\n|---|---:|---:|")
    for label, seconds, ratio in rows:
        print(f"| {label} | {seconds * 1e3:.1f} | {ratio} |")


if __name__ == "__main__":
    sys.exit(command_line(main))
