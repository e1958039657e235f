"""Named Foolbox 3 attacks run under an explicit threat model against a defended classifier.

`run` returns per-example outcomes (what `benchmark` combines); `evaluate` turns them into tidy
result rows with AutoAttack-style flags that say when an evaluation is suspect.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from robustbench_bl._foolbox import import_foolbox
from robustbench_bl.channels import Channel, Compose, make as make_channel
from robustbench_bl.defense import Defended
from robustbench_bl.models.common import eval_mode, placement
from robustbench_bl.validation import check_choice, check_images, check_labels, check_positive_int, check_range
from robustbench_bl.versions import versions

#: How the attacker sees the defense (DESIGN, "the attacker's gradient path is explicit"):
#: nonadaptive attacks the bare model; whitebox differentiates Defended as built (one draw a step);
#: bpda replaces the channel by the identity in backward; eot averages eot_samples draws a step.
THREATS = ("nonadaptive", "whitebox", "bpda", "eot", "bpda+eot")
GRADIENT, DECISION = "gradient", "decision"


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: the Foolbox class, our defaults, whether it needs gradients, the
    constructor argument that sets its query or step budget (None if it has none), and whether it
    walks from adversarial starting points (see `_from_starting_points`)."""

    foolbox_class: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    kind: str = GRADIENT
    budget: str | None = "steps"
    starts: bool = False


REGISTRY: dict[str, AttackSpec] = {
    "fgsm": AttackSpec("LinfFastGradientAttack", budget=None),
    "pgd-linf": AttackSpec("LinfProjectedGradientDescentAttack", {"steps": 40}),
    "pgd-l2": AttackSpec("L2ProjectedGradientDescentAttack", {"steps": 40}),
    "cw-l2": AttackSpec("L2CarliniWagnerAttack", {"steps": 100, "binary_search_steps": 5}),
    "deepfool-linf": AttackSpec("LinfDeepFoolAttack", {"steps": 50}),
    "boundary": AttackSpec("BoundaryAttack", {"steps": 1000}, DECISION, starts=True),
    "hopskipjump": AttackSpec("HopSkipJumpAttack", {"steps": 16, "max_gradient_eval_steps": 1000}, DECISION, starts=True),
    "additive-uniform": AttackSpec("LinfRepeatedAdditiveUniformNoiseAttack", {"repeats": 100}, DECISION, "repeats"),
    "additive-gaussian": AttackSpec("L2RepeatedAdditiveGaussianNoiseAttack", {"repeats": 100}, DECISION, "repeats"),
    "blended-uniform": AttackSpec("LinearSearchBlendedUniformNoiseAttack", {"directions": 1000, "steps": 100}, DECISION),
    "salt-and-pepper": AttackSpec("SaltAndPepperNoiseAttack", {"steps": 200}, DECISION),
    "gaussian-blur": AttackSpec("GaussianBlurAttack", {"steps": 100}, DECISION),
}
#: Foolbox attacks that take their distance as an argument; ours measure in L2.
_NEEDS_DISTANCE = ("blended-uniform", "gaussian-blur")


def names() -> list[str]:
    """Registered attack names, sorted."""
    return sorted(REGISTRY)


def spec(name: str) -> AttackSpec:
    """The registry entry for `name`; an unknown name lists the valid ones."""
    return REGISTRY[check_choice(name, "attack", names())]


def make(name: str, **options: Any) -> Any:
    """A Foolbox attack by name with our defaults, overridden by `options` (e.g. steps=10)."""
    entry = spec(name)
    fb = import_foolbox()
    cls = getattr(fb.attacks, entry.foolbox_class)
    kwargs = {**entry.defaults, **options}
    if name in _NEEDS_DISTANCE:
        kwargs.setdefault("distance", fb.distances.l2)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"options for attack {name!r} ({entry.foolbox_class}) are invalid: {err}") from None


def norm_of(attack: Any) -> str:
    """'L2' or 'Linf' (or 'L<p>'): the norm in which a Foolbox attack measures perturbations."""
    p = attack.distance.p
    return "Linf" if math.isinf(p) else f"L{p:g}"


def channel_label(channel: Channel) -> str:
    """A channel as the string `channels.make` reads ('gauss:0.03'); parts joined by '+' for Compose."""
    if isinstance(channel, Compose):
        return "+".join(channel_label(part) for part in channel.parts)  # type: ignore[arg-type]
    return f"{channel.name}:{channel.strength}"


def straight_through(channel: Channel) -> Channel:
    """`channel` in 'bpda' gradient mode, without touching the caller's channel: a one-part Compose
    applies it in forward (same draws, same generator) and is the identity in backward."""
    wrapper = Compose(channel)
    wrapper.gradient = "bpda"
    return wrapper


class Vote(nn.Module):
    """A defended classifier's majority vote as scores (vote counts), for attacks that only query
    decisions: argmax of the counts is Defended.predict's label, ties to the lowest class.

    Every query uses the same draws (common random numbers, from `seed`), so the vote is a fixed
    function of the queried batch that boundary-walking attacks can follow; the judge of the
    adversarials still votes with fresh draws.
    """

    def __init__(self, defended: Defended, seed: int) -> None:
        super().__init__()
        self.defended = defended
        self.seed = seed

    def forward(self, x: Tensor) -> Tensor:
        d = self.defended
        frozen = Defended(d.model, d.channel, d.votes, seed=self.seed, max_batch=d.max_batch).eval()
        return frozen.predict(x)[1].to(x.dtype)


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker queries or differentiates, and a sentence saying so for the report."""

    module: nn.Module
    gradient_path: str


def threat_model(
    defended: Defended,
    kind: str,
    threat: str,
    eot_samples: int,
    seed: int,
    transfer: Channel | None = None,
    batch_size: int = 256,
) -> ThreatModel:
    """The model the attack runs on under `threat`; with `transfer`, crafted against that channel instead."""
    if threat == "nonadaptive":
        return ThreatModel(defended.model, "bare model (the defense is ignored)")
    channel = transfer if transfer is not None else defended.channel
    where = f"Defended with {channel_label(channel)}, votes={defended.votes}"
    if kind == DECISION:
        voter = Defended(defended.model, channel, defended.votes, max_batch=defended.max_batch)
        return ThreatModel(Vote(voter, seed).eval(), f"queries the majority vote of {where}")
    draws = eot_samples if "eot" in threat else 1
    if "bpda" in threat:
        channel = straight_through(channel)
    mode = "straight-through (bpda)" if "bpda" in threat else "exact"
    path = f"{mode} gradient of {channel_label(channel)}, mean softmax over {draws} draw(s) per step"
    # max_batch = draws x batch makes each EOT step one batched forward.
    attacked = Defended(defended.model, channel, votes=draws, seed=seed, max_batch=draws * batch_size)
    return ThreatModel(attacked.eval(), path)


def as_defended(model_or_defended: nn.Module) -> Defended:
    """A Defended as given, or a bare model behind the identity channel."""
    if isinstance(model_or_defended, Defended):
        return model_or_defended
    if not isinstance(model_or_defended, nn.Module):
        raise TypeError(f"model_or_defended must be a torch.nn.Module or a Defended, got {type(model_or_defended).__name__}")
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

    masked = lambda g: (g == 0).all(1) | ~torch.isfinite(g).all(1)  # noqa: E731
    probe = Defended(defended.model, defended.channel, votes=1, seed=0).eval()
    return (masked(grads(probe)) & ~masked(grads(defended.model))).float().mean().item()


@dataclass(frozen=True)
class Outcome:
    """Per-example results of one attack over ascending epsilons.

    `fooled[e, i]`: the defended vote on some adversarial found at epsilons[e] or a smaller one is
    wrong, for an example the defended vote classified right (a perturbation inside a smaller ball
    is inside every larger one). `l2`/`linf`: sizes of that smallest fooling perturbation (NaN if none).
    `masked_fraction`: see `gradient_masking`; `distortion`: the channel's mean L2 distortion on x.
    """

    epsilons: tuple[float, ...]
    clean_correct: Tensor
    fooled: Tensor
    l2: Tensor
    linf: Tensor
    seconds: float
    norm: str
    kind: str
    gradient_path: str
    masked_fraction: float
    distortion: float

    @property
    def robust(self) -> Tensor:
        """E x N: right on the clean input and not fooled at that epsilon; never more than clean."""
        return self.clean_correct & ~self.fooled


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


def run(
    model_or_defended: nn.Module,
    attack: str,
    x: Tensor,
    y: Tensor,
    threat: str = "nonadaptive",
    epsilons: float | Sequence[float] = (8 / 255,),
    eot_samples: int = 8,
    seed: int = 0,
    *,
    transfer: Channel | str | None = None,
    options: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> Outcome:
    """Attack under `threat`, then judge every adversarial by the defended model's majority vote.

    Seeded: the attack's random starts, the attacker's draws and the judge's draws all follow `seed`.
    `transfer` crafts the attack against that channel (the second seed's generic attacker uses
    'laplace:<scale>') and judges it on the defended model's own channel.
    """
    defended = as_defended(model_or_defended)
    entry = spec(attack)
    threat = check_choice(threat, "threat", THREATS)
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
    if transfer is not None and threat == "nonadaptive":
        raise ValueError("transfer needs an adaptive threat ('whitebox', 'bpda', 'eot' or 'bpda+eot'), got 'nonadaptive'")
    fb = import_foolbox()
    fb_attack = make(attack, **(options or {}))
    device, dtype = placement(defended.model)
    x, y = x.detach().to(device, dtype), y.to(device)  # float16/float64 and graph-attached inputs as the model runs

    with eval_mode(defended.model), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        judge = Defended(defended.model, defended.channel, defended.votes, seed=seed, max_batch=defended.max_batch).eval()
        clean_labels, counts = judge.predict(x)
        check_labels(y, len(x), counts.shape[1], "y")
        masked = gradient_masking(defended, x, y)
        distortion = defended.channel.distortion(x).mean().item()
        chosen = threat_model(defended, entry.kind, threat, eot_samples, seed, transfer, batch_size)
        fmodel = fb.PyTorchModel(chosen.module, bounds=(0, 1), device=device)
        fooled, l2, linf, seconds = [], [], [], 0.0
        chunks = range(0, len(x), batch_size)
        for start in tqdm(chunks, desc=f"{attack} [{threat}]", disable=not progress, unit="batch"):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            begin = time.perf_counter()
            if entry.starts:
                clipped = _from_starting_points(fb_attack, fmodel, xb, yb, eps)
            else:
                _, clipped, _ = fb_attack(fmodel, xb, fb.criteria.Misclassification(yb), epsilons=list(eps))
            seconds += time.perf_counter() - begin
            result = _judge(judge, xb, yb, clean_labels[start : start + batch_size] == yb, clipped)
            fooled.append(result[0])
            l2.append(result[1])
            linf.append(result[2])
    return Outcome(
        epsilons=eps,
        clean_correct=(clean_labels == y).cpu(),
        fooled=torch.cat(fooled, 1) if fooled else torch.zeros(len(eps), 0, dtype=torch.bool),
        l2=torch.cat(l2, 1) if l2 else torch.zeros(len(eps), 0),
        linf=torch.cat(linf, 1) if linf else torch.zeros(len(eps), 0),
        seconds=seconds,
        norm=norm_of(fb_attack),
        kind=entry.kind,
        gradient_path=chosen.gradient_path,
        masked_fraction=masked,
        distortion=distortion,
    )


def _from_starting_points(fb_attack: Any, fmodel: Any, x: Tensor, y: Tensor, eps: Sequence[float]) -> list[Tensor]:
    """Run a boundary-walking attack from blended-noise starting points, on the examples that have one.

    Foolbox's own initialization raises when it fails for any example of the batch; here the
    examples that no blend with uniform noise misclassifies keep their clean input (not fooled).
    A stochastic vote answers each batch with its own draws, so the starting points are checked
    again on exactly the batch the attack will check, until they all hold.
    """
    fb = import_foolbox()
    init = make("blended-uniform", directions=100, steps=50)
    starts, _, found = init(fmodel, x, fb.criteria.Misclassification(y), epsilons=None)
    while found.any():
        index = found.nonzero().squeeze(1)
        holds = fmodel(starts[index]).argmax(-1) != y[index]
        if holds.all():
            break
        found[index[~holds]] = False
    clipped = [x.clone() for _ in eps]
    if found.any():
        _, walked, _ = fb_attack(
            fmodel, x[found], fb.criteria.Misclassification(y[found]), epsilons=list(eps), starting_points=starts[found]
        )
        for out, adv in zip(clipped, walked):
            out[found] = adv
    return clipped


@torch.no_grad()
def _judge(judge: Defended, x: Tensor, y: Tensor, correct: Tensor, adversarials: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(fooled, l2, linf), each E x N, carrying the first fooling perturbation to larger epsilons."""
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    l2 = torch.full((len(x),), math.nan, device=x.device)
    linf = torch.full((len(x),), math.nan, device=x.device)
    rows: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    for adv in adversarials:
        new = correct & ~fooled & (judge.predict(adv)[0] != y)
        delta = (adv - x).flatten(1)
        l2 = torch.where(new, delta.norm(dim=1), l2)
        linf = torch.where(new, delta.abs().amax(dim=1), linf)
        fooled = fooled | new
        for out, value in zip(rows, (fooled, l2, linf)):
            out.append(value.cpu())
    return torch.stack(rows[0]), torch.stack(rows[1]), torch.stack(rows[2])


def evaluate(
    model_or_defended: nn.Module,
    attack: str,
    x: Tensor,
    y: Tensor,
    threat: str = "nonadaptive",
    epsilons: float | Sequence[float] = (8 / 255,),
    eot_samples: int = 8,
    seed: int = 0,
    *,
    transfer: Channel | str | None = None,
    options: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> pd.DataFrame:
    """Tidy rows (metric, value, epsilon and every setting) for one attack under one threat model.

    Metrics: clean_accuracy and attack_seconds (epsilon NaN); per epsilon robust_accuracy (the
    defended vote stays right; never above clean), success_rate (among clean-correct examples),
    and l2/linf median and mean of the successful perturbations. Flags: gradient masking without
    bpda, a stochastic defense attacked without eot (see `flags`; the sentences are in `warnings`).
    """
    defended = as_defended(model_or_defended)
    if isinstance(transfer, str):
        transfer = make_channel(transfer)
    out = run(defended, attack, x, y, threat, epsilons, eot_samples, seed, transfer=transfer,
              options=options, batch_size=batch_size, progress=progress)  # fmt: skip
    settings = {
        "attack": attack,
        "attack_kind": out.kind,
        "norm": out.norm,
        "threat": threat,
        "gradient_path": out.gradient_path,
        "channel": channel_label(defended.channel),
        "stochastic": defended.channel.stochastic,
        "votes": defended.votes,
        "eot_samples": eot_samples if "eot" in threat and out.kind == GRADIENT else None,
        "transfer_from": None if transfer is None else channel_label(transfer),
        "seed": seed,
        "n": len(out.clean_correct),
        "options": json.dumps({**spec(attack).defaults, **(options or {})}, sort_keys=True, default=str),
        "distortion": out.distortion,
        "masked_fraction": out.masked_fraction,
        **flags(out, threat, defended.channel),
        **{f"version_{k}": v for k, v in versions().items()},
    }
    return pd.DataFrame([{**settings, **row} for row in summary_rows(out)])


def summary_rows(out: Outcome) -> list[dict[str, Any]]:
    """The metric rows of an outcome (without settings)."""
    rows = [
        {"metric": "clean_accuracy", "epsilon": math.nan, "value": _mean(out.clean_correct)},
        {"metric": "attack_seconds", "epsilon": math.nan, "value": out.seconds},
    ]
    for e, eps in enumerate(out.epsilons):
        sizes = {"l2": out.l2[e], "linf": out.linf[e]}
        attacked = out.clean_correct
        rows.append({"metric": "robust_accuracy", "epsilon": eps, "value": _mean(out.robust[e])})
        rows.append({"metric": "success_rate", "epsilon": eps, "value": _mean(out.fooled[e][attacked]) if attacked.any() else math.nan})
        for norm, size in sizes.items():
            found = size[out.fooled[e]]
            rows.append({"metric": f"{norm}_median", "epsilon": eps, "value": found.median().item() if len(found) else math.nan})
            rows.append({"metric": f"{norm}_mean", "epsilon": eps, "value": found.mean().item() if len(found) else math.nan})
    return rows


def flags(out: Outcome, threat: str, channel: Channel) -> dict[str, Any]:
    """AutoAttack-style warnings for one attack: booleans plus a readable `warnings` sentence."""
    masking = out.masked_fraction > 0 and "bpda" not in threat and out.kind == GRADIENT
    no_eot = channel.stochastic and "eot" not in threat and out.kind == GRADIENT
    notes = []
    if masking:
        notes.append(f"defended gradients are zero or NaN on {out.masked_fraction:.0%} of examples: use threat='bpda'")
    if no_eot:
        notes.append("stochastic channel attacked without eot: use threat='eot' (or 'bpda+eot')")
    return {"flag_gradient_masking": masking, "flag_stochastic_without_eot": no_eot, "warnings": "; ".join(notes)}


def flag_obfuscation(frame: pd.DataFrame) -> pd.DataFrame:
    """Add `flag_decision_beats_gradient` to rows from several attacks (AutoAttack's check): True
    where, at the same channel, votes, norm and epsilon, a decision-based attack leaves lower robust
    accuracy than every gradient-based one, a sign of obfuscated gradients."""
    keys = ["channel", "votes", "norm", "epsilon"]
    robust = frame[frame.metric == "robust_accuracy"]
    best = robust.pivot_table(index=keys, columns="attack_kind", values="value", aggfunc="min")
    beaten = (
        best[DECISION] < best[GRADIENT] if {DECISION, GRADIENT} <= set(best.columns) else pd.Series(False, index=best.index)
    )
    marked = frame.merge(beaten.rename("flag_decision_beats_gradient").reset_index(), on=keys, how="left")
    marked["flag_decision_beats_gradient"] = marked["flag_decision_beats_gradient"].fillna(False).astype(bool)
    hit = marked["flag_decision_beats_gradient"]
    note = "a decision-based attack beats the gradient-based ones: gradients are likely obfuscated"
    marked.loc[hit, "warnings"] = marked.loc[hit, "warnings"].map(lambda s: f"{s}; {note}" if s else note)
    return marked


def _mean(mask: Tensor) -> float:
    return mask.float().mean().item() if len(mask) else math.nan

