"""Running an attack under a threat model and judging it: `run` returns per-example outcomes
from the one judge (`judge`: the defended majority vote); `craft_nonadaptive` crafts on the bare model."""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from robustbench_bl import precision as precision_
from robustbench_bl.attacks.registry import DECISION, GRADIENT, Attack, make, spec
from robustbench_bl.attacks.threats import Threat, threat_model
from robustbench_bl.channels import Channel
from robustbench_bl.channels import make as make_channel
from robustbench_bl.channels.base import SeededGenerators
from robustbench_bl.defense import Defended
from robustbench_bl.models.common import eval_mode, placement
from robustbench_bl.runtime.files import atomic_write
from robustbench_bl.validation import check_images, check_labels, check_positive_int, check_range


def as_defended(model_or_defended: nn.Module) -> Defended:
    """A Defended as given, or a bare model behind the identity channel."""
    if isinstance(model_or_defended, Defended):
        return model_or_defended
    if not isinstance(model_or_defended, nn.Module):
        raise TypeError(
            f"model_or_defended must be a torch.nn.Module or a Defended, got {type(model_or_defended).__name__}"
        )
    return Defended(model_or_defended)


def gradient_masking(defended: Defended, x: Tensor, y: Tensor, limit: int = 32) -> float:
    """Fraction of (up to `limit`) examples whose loss gradient through the defended model is zero
    or not finite while the bare model's is not: the channel masks gradients (AutoAttack's check)."""
    x, y = x[:limit], y[:limit]

    def grads(module: nn.Module) -> Tensor:
        leaf = x.detach().clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(module(leaf), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, leaf, allow_unused=True)
        return torch.zeros_like(leaf) if grad is None else grad.flatten(1)

    masked = lambda g: (g == 0).all(1) | ~torch.isfinite(g).all(1)
    probe = Defended(defended.model, defended.channel, votes=1, seed=0).eval()
    return (masked(grads(probe)) & ~masked(grads(defended.model))).float().mean().item()


@dataclass(frozen=True)
class Judgement:
    """What the defended vote says of adversarials over ascending epsilons, per example.

    `clean_correct[i]`: the vote is right on the clean input. `fooled[e, i]`: it was right there and
    is wrong on the adversarial found at epsilons[e] or a smaller one (a perturbation inside a
    smaller ball is inside every larger one). `l2`/`linf`: sizes of that smallest fooling
    perturbation (NaN if none). `robust` = clean_correct and not fooled: never above clean.
    """

    clean_correct: Tensor
    fooled: Tensor
    l2: Tensor
    linf: Tensor

    @property
    def robust(self) -> Tensor:
        """E x N: right on the clean input and not fooled at that epsilon."""
        return self.clean_correct & ~self.fooled


@torch.no_grad()
def judge(
    defended: Defended, x: Tensor, y: Tensor, adversarials: Sequence[Tensor], clean_labels: Tensor | None = None
) -> Judgement:
    """The one judge of every evaluation (`run`, `benchmark`, the channel studies): the defended
    model's majority vote on the clean inputs (or the given `clean_labels`) and on each batch of
    adversarials, one per epsilon in ascending order. An example is fooled at an epsilon if its
    clean vote is right and the vote on an adversarial at that or a smaller epsilon is wrong."""
    labels = defended.predict(x)[0] if clean_labels is None else clean_labels
    correct = labels == y
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    l2 = torch.full((len(x),), math.nan, device=x.device)
    linf = torch.full((len(x),), math.nan, device=x.device)
    rows: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    for adv in adversarials:
        new = correct & ~fooled & (defended.predict(adv)[0] != y)
        delta = (adv - x).flatten(1)
        l2 = torch.where(new, delta.norm(dim=1), l2)
        linf = torch.where(new, delta.abs().amax(dim=1), linf)
        fooled = fooled | new
        for out, value in zip(rows, (fooled, l2, linf)):
            out.append(value.cpu())
    empty = torch.zeros(0, len(x))
    stack = lambda values: torch.stack(values) if values else empty
    return Judgement(correct.cpu(), stack(rows[0]).bool(), stack(rows[1]), stack(rows[2]))


@dataclass(frozen=True)
class Outcome(Judgement):
    """A Judgement of one attack, with how it ran: `masked_fraction` (see `gradient_masking`) and
    `distortion` (the channel's mean L2 distortion on x)."""

    epsilons: tuple[float, ...] = ()
    seconds: float = 0.0
    norm: str = ""
    kind: str = GRADIENT
    gradient_path: str = ""
    masked_fraction: float = 0.0
    distortion: float = 0.0
    precision: str = "float32"
    attacked: int = 0

    def subset(self, index: slice | Tensor) -> Outcome:
        """The same outcome for the examples `index` selects."""
        return replace(
            self,
            clean_correct=self.clean_correct[index],
            fooled=self.fooled[:, index],
            l2=self.l2[:, index],
            linf=self.linf[:, index],
        )

    def extended(self, attack: str, more: Outcome | None, where: Tensor) -> Outcome:
        """The cumulative outcome after the next attack of a cascade (one epsilon): `more`, that
        attack's outcome on the examples `where` (indices) this one left robust, or None when none
        was left. Fooled where either fooled; a perturbation's size is the first attack's that fooled."""
        if more is None:
            path = "not run: every example was fooled before"
            return replace(self, seconds=0.0, kind=spec(attack).kind, gradient_path=path, attacked=0)
        fooled, l2, linf = self.fooled.clone(), self.l2.clone(), self.linf.clone()
        fooled[:, where] = more.fooled
        l2[:, where], linf[:, where] = more.l2, more.linf
        return replace(
            self,
            fooled=fooled,
            l2=l2,
            linf=linf,
            seconds=more.seconds,
            norm=more.norm,
            kind=more.kind,
            gradient_path=more.gradient_path,
            masked_fraction=more.masked_fraction,
            precision=more.precision,
            attacked=len(where),
        )


class RandomState:
    """Where an attack's random draws stand between batches: torch's global generator (random starts),
    the device's (CUDA) and the attacked module's seeded channel generators (EOT draws). Saved with
    each crafted batch, restored when a stopped run reads that batch back."""

    def __init__(self, device: torch.device, module: nn.Module) -> None:
        self.device = device
        generators = getattr(module, "generator", None)
        self.generators = generators if isinstance(generators, SeededGenerators) else None

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["device_rng"] = torch.cuda.get_rng_state(self.device)
        if self.generators is not None:
            state["channel_rng"] = self.generators.state()
        return state

    def restore(self, state: Mapping[str, Any]) -> None:
        torch.set_rng_state(state["torch_rng"])
        if "device_rng" in state:
            torch.cuda.set_rng_state(state["device_rng"], self.device)
        if self.generators is not None:
            self.generators.restore(state.get("channel_rng", {}))


def check_epsilons(epsilons: object) -> tuple[float, ...]:
    """A non-empty sequence of finite, non-negative numbers, returned sorted and without repeats."""
    if isinstance(epsilons, (int, float)):
        epsilons = [epsilons]
    if not isinstance(epsilons, Iterable) or isinstance(epsilons, str):
        raise TypeError(f"epsilons must be a number or a sequence of numbers, got {type(epsilons).__name__}")
    values = [check_range(e, "epsilons", 0.0, math.inf, high_inclusive=False) for e in epsilons]
    if not values:
        raise ValueError("epsilons must hold at least one value")
    return tuple(sorted(set(values)))


def attacker_precision(attack: Attack, precision: str, device: torch.device) -> str:
    """The arithmetic `attack` runs in: `precision` resolved for fixed-budget gradient attacks, float32
    for the rest. Score and decision attacks gain little, and minimization attacks (C&W, DeepFool)
    return points on the attacked model's decision boundary, where a bfloat16 model's boundary is not
    the float32 judge's."""
    working = precision_.resolve(precision, device)
    return working if attack.kind == GRADIENT and not attack.minimizes else "float32"


def check_crafted(crafted: Sequence[Tensor], threat: Threat, epsilons: tuple[float, ...], x: Tensor) -> None:
    """Adversarials crafted before fit a run: non-adaptive, one per epsilon, each shaped like x."""
    if threat.adaptive:
        raise ValueError(
            f"crafted_before needs the 'nonadaptive' threat (adversarials of the bare model), got {threat}"
        )
    if len(crafted) != len(epsilons) or any(tuple(a.shape) != tuple(x.shape) for a in crafted):
        shapes = [tuple(a.shape) for a in crafted]
        raise ValueError(
            f"crafted_before must hold one adversarial batch shaped like x {tuple(x.shape)} per epsilon "
            f"({len(epsilons)}), got shapes {shapes}"
        )


def run(
    model_or_defended: nn.Module,
    attack: str,
    x: Tensor,
    y: Tensor,
    threat: Threat | str = "nonadaptive",
    epsilons: float | Sequence[float] = (8 / 255,),
    eot_samples: int = 8,
    seed: int = 0,
    *,
    transfer: Channel | str | None = None,
    options: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    progress: bool = False,
    precision: str = "auto",
    crafted_before: Sequence[Tensor] | None = None,
    store: str | os.PathLike[str] | None = None,
) -> Outcome:
    """Attack under `threat`, then judge every adversarial by the defended model's majority vote.

    `crafted_before`: under the non-adaptive threat, the adversarials of all of `x` already crafted
    on the bare model (one per epsilon, as `craft_nonadaptive` makes them), judged here instead of
    attacked again: they do not depend on the defense, so a study of many defenses crafts them once
    (the Outcome's `seconds` then count no crafting).

    `store`: a folder where the adversarials are saved under a digest of everything that made them
    (model weights, attack, options, budgets, seed, precision, batching, what the attacker attacks as
    its gradient path says, x and y) and read back instead of crafted again. Attacks that are one and
    the same then run once: a transfer attack judged on many channels, BPDA+EOT on a deterministic
    channel (BPDA), EOT on one (white-box). `seconds` is then the crafting time measured when saved.
    Each batch is saved as it is crafted, with where the random draws stood after it, so a run that
    was stopped goes on from its last batch and crafts what it would have crafted.

    `precision` is the attacker's arithmetic (robustbench_bl.precision: 'auto' is bfloat16 where the
    hardware has it natively) for fixed-budget gradient attacks (see `attacker_precision`). The judge always votes with the model as it is (float32): the attacker's
    precision can weaken an attack, never make it look stronger.

    Seeded: the attack's random starts follow `seed`, the attacker's channel draws seed +
    ATTACKER_STREAM (so they never replay the judge's), the judge's draws `seed`.
    `transfer` crafts the attack against that channel (the second paper's generic attacker uses
    'laplace:<scale>') and judges it on the defended model's own channel.
    """
    defended = as_defended(model_or_defended)
    entry = spec(attack)
    threat = Threat.parse(threat)
    eps = check_epsilons(epsilons)
    eot_samples = check_positive_int(eot_samples, "eot_samples")
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_positive_int(seed, "seed", minimum=0)
    check_images(x, "x")
    if len(x) == 0:
        raise ValueError("x must hold at least one example to attack, got an empty batch (N = 0)")
    check_labels(y, len(x), None, "y")
    if isinstance(transfer, str):
        transfer = make_channel(transfer)
    if transfer is not None and not threat.adaptive:
        raise ValueError(
            "transfer needs an adaptive threat ('whitebox', 'bpda', 'eot' or 'bpda+eot'), got 'nonadaptive'"
        )
    if crafted_before is not None:
        check_crafted(crafted_before, threat, eps, x)
    crafted = make(attack, **(options or {}))
    device, dtype = placement(defended.model)
    working = attacker_precision(crafted, precision, device)
    x, y = (
        x.detach().to(device, dtype).contiguous(),
        y.to(device),
    )  # float16/float64, graph-attached, strided inputs as the model runs

    with eval_mode(defended.model), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        voter = defended.reseeded(seed)
        clean_labels, counts = voter.predict(x)
        check_labels(y, len(x), counts.shape[1], "y")
        masked = gradient_masking(defended, x, y)
        distortion = defended.channel.distortion(x, draws=1).mean().item()  # one draw: a mean over all of x
        view = precision_.for_attacker(defended.model, working, device)
        attacker = Defended(view, defended.channel, defended.votes, max_batch=defended.max_batch)
        chosen = threat_model(attacker, entry.kind == DECISION, threat, eot_samples, seed, transfer, batch_size)
        recipe = (attack, sorted((options or {}).items()), eps, seed, working, batch_size, chosen.gradient_path)
        path = None
        if store is not None and crafted_before is None:
            digest = batch_digest(defended.model, (*recipe, defended.max_batch), x, y)
            path = Path(store) / f"{attack}-run-{digest}.pt"
        given, seconds = crafted_before, 0.0
        if path is not None and path.is_file():
            whole = torch.load(path, weights_only=True)
            given, seconds = list(whole["adversarials"]), float(whole["seconds"])
        draws = RandomState(device, chosen.module)
        parts, made = [], []
        chunks = range(0, len(x), batch_size)
        # each batch of a run not yet saved whole, as it is crafted (read back by a stopped run)
        batch_files = {start: path.with_name(f"{path.stem}-{start}.pt") for start in chunks} if path else {}
        for start in tqdm(chunks, desc=f"{attack} [{threat}]", disable=not progress, unit="batch"):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            done = batch_files.get(start)
            if given is not None:
                adversarials = [a[start : start + batch_size].to(device, dtype) for a in given]
            elif done is not None and done.is_file():
                batch = torch.load(done, weights_only=True)
                adversarials = [a.to(device, dtype) for a in batch["adversarials"]]
                seconds += float(batch["seconds"])
                draws.restore(batch)  # the draws go on as if this batch had been crafted here
                made.append(batch["adversarials"])
            else:
                begin = time.perf_counter()
                adversarials = crafted(chosen.module, xb, yb, eps, seed)
                spent = time.perf_counter() - begin
                seconds += spent
                made.append(torch.stack(adversarials).detach().cpu())
                if done is not None:
                    done.parent.mkdir(parents=True, exist_ok=True)
                    batch = {"adversarials": made[-1], "seconds": torch.tensor(spent, dtype=torch.float64)}
                    atomic_write(done, partial(torch.save, {**batch, **draws.state()}))
            parts.append(judge(voter, xb, yb, adversarials, clean_labels[start : start + batch_size]))
        if path is not None and made:
            path.parent.mkdir(parents=True, exist_ok=True)
            whole = {"adversarials": torch.cat(made, 1), "seconds": torch.tensor(seconds, dtype=torch.float64)}
            atomic_write(path, partial(torch.save, whole))
            for file in batch_files.values():
                file.unlink(missing_ok=True)
    return Outcome(
        clean_correct=torch.cat([p.clean_correct for p in parts]),
        fooled=torch.cat([p.fooled for p in parts], 1),
        l2=torch.cat([p.l2 for p in parts], 1),
        linf=torch.cat([p.linf for p in parts], 1),
        epsilons=eps,
        seconds=seconds,
        norm=crafted.norm,
        kind=entry.kind,
        gradient_path=chosen.gradient_path,
        masked_fraction=masked,
        distortion=distortion,
        precision=working,
        attacked=len(x),
    )


def craft_nonadaptive(
    model: nn.Module,
    attack: str,
    x: Tensor,
    y: Tensor,
    epsilon: float | None,
    seed: int,
    options: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    precision: str = "auto",
    store: str | os.PathLike[str] | None = None,
) -> Tensor:
    """Adversarials against the bare model, what a non-adaptive attacker sends to every defense.

    They do not depend on the channel, so a sweep crafts them once and judges every channel on them
    (`judge`) instead of re-running the attack per channel. `epsilon=None` keeps a minimization
    attack (C&W) unbounded. Seeded like `attacks.run`, each batch from its own seed, so the same seed
    crafts the same adversarials however the work was split; `precision` as in `run` (gradient
    attacks only). `store`: a folder where each batch is saved as it completes, under a digest of
    everything that made it (model weights, attack, options, budget, seed, precision, the batch), and
    read back instead of crafted again: an attack of hours that is stopped resumes there.
    """
    crafted = make(attack, **(options or {}))
    device = placement(model)[0]
    working = attacker_precision(crafted, precision, device)
    view = precision_.for_attacker(model, working, device)
    recipe = (attack, sorted((options or {}).items()), epsilon, seed, working)
    chunks = []
    with eval_mode(view), torch.random.fork_rng():
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            path = None if store is None else Path(store) / f"{attack}-{batch_digest(model, recipe, xb, yb)}.pt"
            if path is not None and path.is_file():
                chunks.append(torch.load(path, weights_only=True).to(xb.device, xb.dtype))
                continue
            torch.manual_seed(seed + start)
            adv = crafted(view, xb, yb, [epsilon], seed)[0]
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, partial(torch.save, adv.detach().cpu()))
            chunks.append(adv)
    return torch.cat(chunks)


def batch_digest(model: nn.Module, recipe: tuple[Any, ...], x: Tensor, y: Tensor) -> str:
    """A digest of the model's weights and buffers, what crafts (`recipe`, by its repr) and the batch."""
    digest = hashlib.sha256(repr(recipe).encode())
    for name, tensor in [*model.state_dict().items(), ("x", x), ("y", y)]:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]
