"""The strong protocol against an independent reference, per lossy channel at its tuned strength.

Per channel, the defended model's robust accuracy at Linf eps under: the package's PGD against the
bare model (nonadaptive), APGD-CE through BPDA (bpda), APGD-CE with exact gradients and EOT (eot),
`robustbench_bl.benchmark` (strongest: worst case over APGD-CE, APGD-DLR, PGD, Square and
HopSkipJump under the threat it picks), and an independent reference written here, not with the
package's attacks: 100 steps of eps/4 with cosine decay, 3 restarts (CE, margin, CE), best iterate,
straight-through gradients averaged over EOT draws. Every adversarial is judged by the same
majority vote. Target: strongest <= reference + 0.01 on every channel. Rows are stored as they
finish (a rerun resumes); the table is printed in markdown.

    RBL_DATA=../shared/data python benchmarks/protocol.py --model lenet --n 100   # ~30 min, 2-core CPU
    python benchmarks/protocol.py --model fastnet-0 --n 64 --channels cd,gauss --eps 8/255
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from spectral import print_table  # benchmarks/spectral.py, beside this script
from torch import Tensor, nn

import robustbench_bl
from robustbench_bl import Defended, attacks, data, zoo
from robustbench_bl.channels import Channel
from robustbench_bl.channels import make as make_channel
from robustbench_bl.cli import ArgumentParser, command_line, positive_int
from robustbench_bl.evaluation.benchmark import threat_for
from robustbench_bl.runtime.checkpoints import CheckpointStore
from robustbench_bl.runtime.results import ResultsStore
from robustbench_bl.runtime.sweep import run
from robustbench_bl.studies.channel_setup import CHANNELS, default_strength
from robustbench_bl.training import TrainConfig, budget

#: Budgets of the protocol's gradient-free attacks, reduced to fit a CPU (stated in the table).
OPTIONS = {"square-linf": {"n_queries": 500}, "hopskipjump": {"steps": 4, "max_gradient_eval_steps": 100}}


class StraightThroughEOT(nn.Module):
    """Log of the mean softmax of `model` over `draws` channel draws, differentiated as if the
    channel were the identity: the reference's own BPDA+EOT, independent of attacks.threat_model."""

    def __init__(self, model: nn.Module, channel: Channel, draws: int, seed: int) -> None:
        super().__init__()
        self.model, self.channel, self.draws = model, channel, draws
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: Tensor) -> Tensor:
        probs = 0
        for _ in range(self.draws):
            passed = self.channel(x.detach(), self.generator)
            probs = probs + self.model(x + (passed - x).detach()).softmax(-1)
        return (probs / self.draws).clamp_min(1e-30).log()


def _margin(scores: Tensor, y: Tensor) -> Tensor:
    other = scores.clone()
    other[torch.arange(len(y)), y] = -math.inf
    return scores[torch.arange(len(y)), y] - other.amax(1)


def reference_pgd(
    module: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 100, restarts: int = 3, seed: int = 0
) -> Tensor:
    """Linf PGD, best iterate kept (lowest margin), restarts with CE, margin, CE losses."""
    generator = torch.Generator().manual_seed(seed)
    best = x.clone()
    with torch.no_grad():
        best_margin = _margin(module(x), y)
    for restart in range(restarts):
        delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
        for t in range(steps + 1):
            adv = (x + delta).clamp(0, 1).requires_grad_(True)
            scores = module(adv)
            margin = _margin(scores.detach(), y)
            better = margin < best_margin
            best[better], best_margin[better] = adv.detach()[better], margin[better]
            if t == steps:
                break
            loss = (
                -_margin(scores, y).sum() if restart == 1 else nn.functional.cross_entropy(scores, y, reduction="sum")
            )
            (grad,) = torch.autograd.grad(loss, adv)
            step = eps / 4 * 0.5 * (1 + math.cos(math.pi * t / steps))
            delta = ((x + (delta + step * grad.sign()).clamp(-eps, eps)).clamp(0, 1) - x).detach()
    return best


def epsilon(text: str) -> float:
    """argparse type: a budget such as 2/255 or 0.01, > 0."""
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"must be a number such as 2/255, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text!r}")
    return value


def load_model(name: str, root: str | None) -> nn.Module:
    """A zoo model by name, or the attack command line's quick LeNet from the checkpoint store."""
    if name == "lenet":  # attacks/attack.py's quick preset: 10,000 images, 12 epochs (scaled on the sample)
        config = TrainConfig(model="lenet", **budget(10000, 12, len(data.cifar10("train", root=root))))
        return CheckpointStore().get_or_train(config, data_root=root, device="cpu")[0]
    return zoo.load(name)


def measure(cell: dict[str, Any], model: nn.Module, root: str | None) -> list[dict[str, Any]]:
    """The row of one channel: clean and robust accuracy under every column's attack."""
    test = data.load("cifar10", "test", root=root, limit=cell["n"], seed=cell["seed"])
    x, y, eps = test.x.contiguous(), test.y, cell["eps"]
    channel = make_channel(cell["channel"])
    defended = Defended(model, channel, cell["votes"])
    judge = Defended(model, channel, cell["votes"], seed=cell["seed"]).eval()

    def robust(attack: str, threat: str) -> float:
        out = attacks.run(
            defended, attack, x, y, threat, [eps], cell["eot_samples"], cell["seed"], options=OPTIONS.get(attack)
        )
        return out.robust[0].float().mean().item()

    eot = "bpda+eot" if channel.stochastic else "bpda"
    row: dict[str, Any] = {
        "clean": (judge.predict(x)[0] == y).float().mean().item(),
        "nonadaptive": robust("pgd-linf", "nonadaptive"),
        "bpda": robust("apgd-ce-linf", eot),
        "eot": robust("apgd-ce-linf", "eot" if channel.stochastic else "whitebox"),
    }
    result = robustbench_bl.benchmark(
        model,
        channel,
        cell["votes"],
        eps=eps,
        n=cell["n"],
        repeats=1,
        seed=cell["seed"],
        eot_samples=cell["eot_samples"],
        data_root=root,
        options=OPTIONS,
    )
    row["strongest"] = result.robust_accuracy
    row["protocol_threat"] = result.row["threat"]
    row["gradient_free_wins"] = result.row["flag_decision_beats_gradient"]
    with torch.random.fork_rng():
        module = StraightThroughEOT(
            model, channel, cell["eot_samples"] if channel.stochastic else 1, cell["seed"] + 7
        ).eval()
        adversarial = reference_pgd(module, x, y, eps, seed=cell["seed"])
    row["reference"] = attacks.judge(judge, x, y, [adversarial]).robust[0].float().mean().item()
    return [{"metric": "robust_accuracy", **row}]


def previous_default(model: nn.Module, cells: list[dict[str, Any]], root: str | None) -> list[dict[str, Any]]:
    """The package's strongest threat before the strong protocol: Foolbox's PGD-Linf (40 steps of
    eps/30, last iterate) under the threat `benchmark` picks, on the same images and judge."""
    attacks.REGISTRY["foolbox-pgd-linf"] = attacks.AttackSpec(
        "foolbox", "LinfProjectedGradientDescentAttack", {"steps": 40}
    )
    rows = []
    for cell in cells:
        test = data.load("cifar10", "test", root=root, limit=cell["n"], seed=cell["seed"])
        defended = Defended(model, make_channel(cell["channel"]), cell["votes"])
        threat = threat_for(defended, test.x, test.y)
        out = attacks.run(
            defended, "foolbox-pgd-linf", test.x, test.y, threat, [cell["eps"]], cell["eot_samples"], cell["seed"]
        )
        rows.append(
            {"channel": cell["channel"], "threat": threat.name, "previous_default": out.robust[0].float().mean().item()}
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet", choices=["lenet", *zoo.names()])
    parser.add_argument("--channels", default=",".join(CHANNELS), help=f"comma-separated, from {CHANNELS}")
    parser.add_argument("--n", type=positive_int, default=100, help="class-balanced test images")
    parser.add_argument("--eps", type=epsilon, default=2 / 255, help="Linf budget, e.g. 2/255 (default) or 8/255")
    parser.add_argument("--eot", type=positive_int, default=4, help="EOT draws per step for stochastic channels")
    parser.add_argument("--votes", type=positive_int, default=8, help="the judge's majority vote (stochastic channels)")
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (default: $RBL_DATA or the packaged sample)")
    parser.add_argument("--out", default="results/protocol", help="results folder (resumable)")
    parser.add_argument(
        "--previous", action="store_true", help="also the previous default (Foolbox PGD, 40 steps, last iterate)"
    )
    args = parser.parse_args(argv)
    names = [c.strip() for c in args.channels.split(",")]
    unknown = set(names) - set(CHANNELS)
    if unknown:
        parser.error(f"--channels: unknown {sorted(unknown)}; accepted: {CHANNELS}")
    torch.set_num_threads(2)
    model = load_model(args.model, args.data).eval()
    store = ResultsStore(Path(args.out) / "results.jsonl")
    cells = [
        {
            "model": args.model,
            "channel": f"{c}:{default_strength(c)}",
            "n": args.n,
            "eps": args.eps,
            "seed": 0,
            "eot_samples": args.eot,
            "votes": args.votes if make_channel(f"{c}:{default_strength(c)}").stochastic else 1,
        }
        for c in names
    ]
    table = run(cells, lambda cell: measure(cell, model, args.data), store, desc="protocol")
    table = table.merge(pd.DataFrame(cells), on=list(cells[0]))
    table["met"] = table.strongest <= table.reference + 0.01
    columns = [
        "channel",
        "votes",
        "clean",
        "nonadaptive",
        "bpda",
        "eot",
        "strongest",
        "reference",
        "met",
        "protocol_threat",
        "gradient_free_wins",
    ]
    print_table(table[columns].to_dict("records"), digits=3)
    if args.previous:
        print_table(previous_default(model, cells, args.data), digits=3)


if __name__ == "__main__":
    sys.exit(command_line(main))
