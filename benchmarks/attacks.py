"""Cost of attacking through Defended and of EOT, of Foolbox's gradients with and without frozen
weights, and accuracy and cost of the Hessian probe.

Prints markdown tables (medians over interleaved rounds) for benchmarks/README.md. Run:
    .venv/bin/python benchmarks/attacks.py [--repeats 7] [--images 64] [--eot-samples 8] [--threads 1]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial

import torch
from channels import interleaved_seconds, rows_against  # benchmarks/channels.py, beside this script
from torch import nn

from robustbench_bl import Defended, attacks, data, models
from robustbench_bl.channels import GaussianNoise, Identity
from robustbench_bl.cli import ArgumentParser, command_line, positive_int
from robustbench_bl.evaluation import probes
from robustbench_bl.training import TrainConfig, train


def trained_lenet() -> nn.Module:
    """LeNet after a few epochs on 1,000 packaged training images: a Hessian with real structure."""
    config = TrainConfig(
        model="lenet", epochs=10, batch_size=64, optimizer="adam", lr=2e-3, weight_decay=0.0, limit=1000
    )
    model = models.make("lenet")
    train(model, data.cifar10("train", limit=1000), config, device="cpu", progress=False)
    return model.eval()


def count_forwards(model: nn.Module, run: object) -> list[int]:
    """Batch sizes of every forward of `model` during `run()`."""
    sizes: list[int] = []
    handle = model.register_forward_hook(lambda _m, inputs, _o: sizes.append(len(inputs[0])))
    try:
        run()  # type: ignore[operator]
    finally:
        handle.remove()
    return sizes


def attack_costs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, repeats: int) -> None:
    pgd = attacks.make(
        "pgd-linf", steps=40, losses=("ce",)
    )  # one 40-step run: the cost of the plumbing, not of restarts
    identity = Defended(model, Identity(), votes=1).eval()
    eot = attacks.threat_model(
        Defended(model, GaussianNoise(0.03), votes=k), False, attacks.Threat.parse("eot"), k, 0, batch_size=len(x)
    )
    repeated_x, repeated_y = x.repeat(k, 1, 1, 1), y.repeat(k)
    bare_label = f"PGD-40, bare lenet, N={len(x)}"
    runs = {
        bare_label: lambda: pgd(model, x, y, [8 / 255]),
        "PGD-40, Defended(lenet, Identity(), votes=1)": lambda: pgd(identity, x, y, [8 / 255]),
        f"PGD-40, bare lenet on the {k} x N repeated batch": lambda: pgd(model, repeated_x, repeated_y, [8 / 255]),
        f"PGD-40 under eot, gauss:0.03, k={k}": lambda: pgd(eot.module, x, y, [8 / 255]),
    }
    times = interleaved_seconds(runs, repeats)
    sizes = count_forwards(model, runs[f"PGD-40 under eot, gauss:0.03, k={k}"])
    print("| measurement | median ms | speed vs bare PGD-40 (median of per-round ratios) |\n|---|---:|---:|")
    for label, seconds, ratio in rows_against(bare_label, times, {}):
        print(f"| {label} | {seconds * 1e3:.1f} | {ratio} |")
    defended_cost = statistics.median(
        d / b for d, b in zip(times["PGD-40, Defended(lenet, Identity(), votes=1)"], times[bare_label])
    )
    print(f"\nDefended/bare cost ratio: {defended_cost:.2f}x (target <= 1.2x)")
    print(
        f"eot: {len(sizes)} model forwards for 40 steps, batch sizes {sorted(set(sizes))} (k x N = {k * len(x)}): one batched forward per step\n"
    )


def frozen_weights(x: torch.Tensor, y: torch.Tensor, repeats: int) -> None:
    """Foolbox's C&W-L2 on a full-width FastNet (random weights time like trained ones) through the
    registry (weights frozen for the attack) against `craft` alone (weights differentiated too, as
    Foolbox's `loss.backward()` does), and the package's minimal PGD, whose `autograd.grad` needs no freezing."""
    torch.manual_seed(0)
    model = models.FastNet().eval()
    runs: dict[str, Callable[[], object]] = {}
    for name, options in (
        ("cw-l2", {"steps": 10, "binary_search_steps": 1}),
        ("pgd-linf-minimal", {"steps": 10, "tries": 1}),
    ):
        attack = attacks.make(name, **options)
        runs[f"{name}, weights differentiated"] = partial(attack.craft, model, x, y, [None], 0)
        runs[f"{name}, weights frozen (the registry)"] = partial(attack, model, x, y, [None])
    times = interleaved_seconds(runs, repeats)
    print(
        f"\n| attack on a full-width FastNet, N={len(x)} | median ms | speed vs differentiated weights |\n|---|---:|---:|"
    )
    for name in ("cw-l2", "pgd-linf-minimal"):
        pair = {k: v for k, v in times.items() if k.startswith(name)}
        for label, seconds, ratio in rows_against(f"{name}, weights differentiated", pair, {}):
            print(f"| {label} | {seconds * 1e3:.1f} | {ratio} |")


def hessian_probe(model: nn.Module, x: torch.Tensor, small: int) -> None:
    """Lanczos (tol 1e-3, <= 50 products) against the exact Hessian's eigenvalues, per example."""
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Softplus(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 7 * 7, 10))
    cases = {
        f"small softplus CNN, 3 x {small} x {small}": (cnn, nn.functional.interpolate(x, size=small, mode="area")),
        "trained lenet, 3 x 32 x 32": (model, x),
    }
    print(
        "| model | examples | HVPs (max) | Lanczos ms/example | exact Hessian ms/example | max relative error |\n|---|---:|---:|---:|---:|---:|"
    )
    for label, (net, images) in cases.items():
        start = time.perf_counter()
        hvp, leaf = probes.hessian_operator(net, images)
        v0 = torch.randn(leaf.flatten(1).shape, generator=torch.Generator().manual_seed(0))
        values, products = probes.top_eigenvalue(hvp, v0, 50, 1e-3)
        lanczos = (time.perf_counter() - start) / len(images)
        start, exact = time.perf_counter(), []
        for xi in images:
            label_i = net(xi[None]).argmax()
            f = lambda z: net(z.view(1, *xi.shape)).softmax(-1)[0, label_i]
            eig = torch.linalg.eigvalsh(torch.autograd.functional.hessian(f, xi.flatten(), vectorize=True))
            exact.append(eig[eig.abs().argmax()])
        full = (time.perf_counter() - start) / len(images)
        error = ((values - torch.stack(exact)).abs() / torch.stack(exact).abs()).max().item()
        print(
            f"| {label} | {len(images)} | {products} | {lanczos * 1e3:.1f} | {full * 1e3:.1f} | {error:.2e} (target <= 1e-2) |"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument("--images", type=positive_int, default=64)
    parser.add_argument("--eot-samples", type=positive_int, default=8)
    parser.add_argument(
        "--hessian-images", type=positive_int, default=4, help="examples whose exact 3072 x 3072 Hessian is formed"
    )
    parser.add_argument("--small", type=positive_int, default=16, help="side of the small input for the small CNN")
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="torch threads (1: steadier on a shared machine)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    test = data.cifar10("test").at_most(args.images, seed=0)
    model = trained_lenet()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} interleaved rounds\n")
    attack_costs(model, test.x, test.y, args.eot_samples, args.repeats)
    frozen_weights(test.x[:32], test.y[:32], args.repeats)
    hessian_probe(model, test.x[: args.hessian_images], args.small)


if __name__ == "__main__":
    sys.exit(command_line(main))
