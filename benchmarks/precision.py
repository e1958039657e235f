"""Attack and training steps in float32 and bfloat16 autocast, plain FastNets against band-limited ones.

An attack step is what every gradient attack repeats: forward and backward to the input, through the
project's attacker (`precision.for_attacker`). A training step is the zoo recipe's: forward under
`precision.autocast`, summed label-smoothed loss, backward, Nesterov SGD, channels_last. Variants are
timed round-robin in every round after a warm-up; cells are medians, ratios are medians of per-round
ratios against the first row. `--load` runs a two-thread matrix-product job beside the measurement
(band-limited layers issue many small ops and once suffered most under load). Run:
    .venv/bin/python benchmarks/precision.py [--repeats 3] [--threads 2] [--load] [--only attack train strength]
`--only strength` checks that the bfloat16 attacker is as strong as the float32 one (same images,
float32 judge, paired interval): [--images 500] [--eps 8/255] [--steps 100].
"""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from channels import interleaved_seconds, rows_against  # benchmarks/channels.py, beside this script
from torch import nn

from robustbench_bl import attacks, data, models, precision, zoo
from robustbench_bl.cli import ArgumentParser, command_line, positive_int
from robustbench_bl.evaluation import stats
from robustbench_bl.spectral import bandlimit
from robustbench_bl.training.fast import FastRecipe, _optimizer

LOAD = "import torch\ntorch.set_num_threads(2)\na = torch.randn(768, 768)\nwhile True:\n    a @ a"


def fastnet(widths: tuple[int, ...], rate: float) -> nn.Module:
    """A FastNet at `widths`, band-limited at `rate` (0: plain); random weights time like trained ones."""
    torch.manual_seed(0)
    model = models.FastNet(widths=widths)
    return bandlimit(model, compress_rate=rate) if rate else model


def attack_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, working: str, view: bool = True) -> Callable:
    """One step through the attacker's view of `model` (channels_last input, `working` precision), or
    (view=False) through the model as it is, as the attacker ran it before."""
    attacker = precision.for_attacker(model.eval(), working, "cpu") if view else model.eval()

    def step() -> None:
        leaf = x.clone().requires_grad_(True)
        F.cross_entropy(attacker(leaf), y, reduction="sum").backward()

    return step


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, working: str) -> Callable:
    model.to(memory_format=torch.channels_last).train()  # type: ignore[call-overload]  # as train_fast
    optimizer = _optimizer(model, FastRecipe(batch_size=len(x)))
    x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with precision.autocast(working, "cpu"):
            logits = model(x).float()
        loss = F.cross_entropy(logits, y, label_smoothing=0.2, reduction="sum")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def strength(names: Sequence[str], n: int, eps: float, steps: int, seed: int = 0) -> None:
    """Robust accuracy under the bfloat16 attacker minus under the float32 one, on the same images,
    judged in float32 either way, with a 95% paired-bootstrap interval (target: at most +0.01)."""
    test = data.cifar10("test", limit=n, seed=seed)
    print(f"\nAttack strength, {n} test images ({test.source_kind}), eps {eps * 255:g}/255, {steps} steps\n")
    print("| model | attack | robust, float32 attacker | robust, bfloat16 attacker | bf16 - float32 [95%] |")
    print("|---|---|---:|---:|---:|")
    for name in names:
        model = zoo.load(name)
        for attack in ("pgd-linf", "apgd-ce-linf"):
            robust = {
                working: attacks.run(
                    model,
                    attack,
                    test.x,
                    test.y,
                    epsilons=[eps],
                    options={"steps": steps},
                    seed=seed,
                    precision=working,
                )
                .robust[0]
                .numpy()
                for working in ("float32", "bfloat16")
            }
            est, low, high = stats.paired_bootstrap(robust, lambda a: a["bfloat16"] - a["float32"], seed=seed)
            print(
                f"| {name} | {attack} | {robust['float32'].mean():.3f} | {robust['bfloat16'].mean():.3f} | "
                f"{est:+.3f} [{low:+.3f}, {high:+.3f}] |"
            )


def table(title: str, times: dict[str, list[float]], plain: dict[str, str], unit: int) -> None:
    """Markdown: each variant's median, its speed against the first row, and a band-limited variant's
    against its plain twin (`plain`: label -> the plain label), all medians of per-round ratios."""
    print(f"\n{title}\n\n| variant | median s | images / s | vs first row | vs plain, same precision |")
    print("|---|---:|---:|---:|---:|")
    for label, seconds, ratio in rows_against(next(iter(times)), times, {}):
        twin = ""
        if label in plain:
            twin = rows_against(plain[label], {plain[label]: times[plain[label]], label: times[label]}, {})[1][2]
        print(f"| {label} | {seconds:.3f} | {unit / seconds:,.0f} | {ratio} | {twin} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--batch", type=positive_int, default=256, help="attack-step batch")
    parser.add_argument("--train-batch", type=positive_int, default=512)
    parser.add_argument("--precisions", nargs="+", choices=["float32", "bfloat16"], default=["float32", "bfloat16"])
    parser.add_argument("--only", nargs="+", choices=["attack", "train", "strength"], default=["attack", "train"])
    parser.add_argument("--images", type=positive_int, default=500, help="test images of the strength check")
    parser.add_argument("--eps", type=float, default=8 / 255, help="Linf budget of the strength check")
    parser.add_argument("--steps", type=positive_int, default=100, help="attack steps of the strength check")
    parser.add_argument("--load", action="store_true", help="run a two-thread matmul job beside the measurement")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
        f"native bf16: {precision.native_bf16('cpu')} (auto -> {precision.resolve('auto', 'cpu')}), "
        f"load beside: {args.load}, {args.repeats} rounds"
    )
    background = subprocess.Popen([sys.executable, "-c", LOAD]) if args.load else None
    try:
        if "attack" in args.only:
            x, y = torch.rand(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
            trained = {name: zoo.load(name) for name in ("fastnet-0", "fastnet-50")}
            nets = {
                **{f"{name} (zoo, {'/'.join(map(str, net.widths))})": net for name, net in trained.items()},
                "FastNet 64/256/256": fastnet((64, 256, 256), 0.0),
                "FastNet 64/256/256, 50%": fastnet((64, 256, 256), 0.5),
            }
            runs, plain = {}, {}
            for working in args.precisions:
                for (name, net), twin in zip(nets.items(), (None, 0, None, 2)):
                    runs[f"{name}, {working}"] = attack_step(net, x, y, working)
                    if twin is not None:
                        plain[f"{name}, {working}"] = f"{list(nets)[twin]}, {working}"
            runs["fastnet-0 (zoo), float32, the model as it is (no channels_last view)"] = attack_step(
                zoo.load("fastnet-0"), x, y, "float32", view=False
            )
            runs["LeNet, float32"] = attack_step(models.make("lenet"), x, y, "float32")
            times = interleaved_seconds(runs, args.repeats)
            table(f"Attack step (forward + backward to the input), batch {args.batch}", times, plain, args.batch)
        if "train" in args.only:
            x, y = torch.rand(args.train_batch, 3, 32, 32), torch.randint(0, 10, (args.train_batch,))
            runs, plain = {}, {}
            for working in args.precisions:
                for widths in ((64, 128, 128), (64, 256, 256)):
                    base = f"FastNet {'/'.join(map(str, widths))}"
                    runs[f"{base}, {working}"] = train_step(fastnet(widths, 0.0), x, y, working)
                    runs[f"{base}, 50%, {working}"] = train_step(fastnet(widths, 0.5), x, y, working)
                    plain[f"{base}, 50%, {working}"] = f"{base}, {working}"
            times = interleaved_seconds(runs, args.repeats)
            table(
                f"Training step (zoo recipe, channels_last), batch {args.train_batch}", times, plain, args.train_batch
            )
        if "strength" in args.only:
            strength(["fastnet-0", "fastnet-50"], args.images, args.eps, args.steps)
    finally:
        if background is not None:
            background.kill()


if __name__ == "__main__":
    command_line(main)
