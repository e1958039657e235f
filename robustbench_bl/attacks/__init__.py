"""Named attacks run under an explicit threat model against a defended classifier.

The registry holds gradient attacks (the package's best-iterate PGD, AutoAttack's APGD-CE and
APGD-DLR from torchattacks, Foolbox's FGSM, C&W and DeepFool), the score-based Square attack
(torchattacks) and Foolbox's decision-based attacks. `run` returns per-example outcomes, judged
by the one judge (`judge`); `evaluate` turns them into tidy rows with AutoAttack-style flags.
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
from robustbench_bl.attacks.pgd import pgd
from robustbench_bl.attacks.threats import ATTACKER_STREAM, THREATS, Threat, ThreatModel, Vote, channel_label, straight_through, threat_model
from robustbench_bl.channels import Channel, make as make_channel
from robustbench_bl.defense import Defended
from robustbench_bl.models.common import eval_mode, placement
from robustbench_bl.validation import check_choice, check_images, check_labels, check_positive_int, check_range
from robustbench_bl.versions import versions

GRADIENT, SCORE, DECISION = "gradient", "score", "decision"
#: Constructor options that are budgets (must be positive ints) and step sizes (positive numbers):
#: a zero or negative budget would run no attack and report robust accuracy = clean accuracy.
BUDGET_OPTIONS = ("steps", "repeats", "n_queries", "max_gradient_eval_steps", "initial_gradient_eval_steps", "binary_search_steps", "directions", "n_restarts")
STEP_OPTIONS = ("rel_stepsize", "abs_stepsize", "step_size", "stepsize", "initial_const", "spherical_step", "source_step")


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: where it comes from (`library`: 'foolbox', 'torchattacks' or
    'robustbench_bl') and its class or function there, our defaults, whether it needs gradients,
    scores or decisions (`kind`), the option that sets its step or query budget (None if none),
    its norm where the library does not say (`norm`), and whether it walks from adversarial
    starting points (see `_from_starting_points`)."""

    library: str
    name: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    kind: str = GRADIENT
    budget: str | None = "steps"
    starts: bool = False
    norm: str | None = None


#: The package's PGD: 100 steps of eps/4 (halved at 1/2 and 3/4), a CE run then a margin run,
#: best iterate kept. APGD and Square as AutoAttack runs them (100 steps, 5,000 queries).
REGISTRY: dict[str, AttackSpec] = {
    "fgsm": AttackSpec("foolbox", "LinfFastGradientAttack", budget=None),
    "pgd-linf": AttackSpec("robustbench_bl", "pgd", {"steps": 100}, norm="Linf"),
    "pgd-l2": AttackSpec("robustbench_bl", "pgd", {"steps": 100}, norm="L2"),
    "apgd-ce-linf": AttackSpec("torchattacks", "APGD", {"steps": 100, "loss": "ce"}, norm="Linf"),
    "apgd-dlr-linf": AttackSpec("torchattacks", "APGD", {"steps": 100, "loss": "dlr"}, norm="Linf"),
    "apgd-ce-l2": AttackSpec("torchattacks", "APGD", {"steps": 100, "loss": "ce"}, norm="L2"),
    "apgd-dlr-l2": AttackSpec("torchattacks", "APGD", {"steps": 100, "loss": "dlr"}, norm="L2"),
    "square-linf": AttackSpec("torchattacks", "Square", {"n_queries": 5000}, SCORE, "n_queries", norm="Linf"),
    "square-l2": AttackSpec("torchattacks", "Square", {"n_queries": 5000}, SCORE, "n_queries", norm="L2"),
    "cw-l2": AttackSpec("foolbox", "L2CarliniWagnerAttack", {"steps": 100, "binary_search_steps": 5}),
    "deepfool-linf": AttackSpec("foolbox", "LinfDeepFoolAttack", {"steps": 50}),
    "boundary": AttackSpec("foolbox", "BoundaryAttack", {"steps": 1000}, DECISION, starts=True),
    "hopskipjump": AttackSpec("foolbox", "HopSkipJumpAttack", {"steps": 16, "max_gradient_eval_steps": 1000}, DECISION, starts=True),
    "additive-uniform": AttackSpec("foolbox", "LinfRepeatedAdditiveUniformNoiseAttack", {"repeats": 100}, DECISION, "repeats"),
    "additive-gaussian": AttackSpec("foolbox", "L2RepeatedAdditiveGaussianNoiseAttack", {"repeats": 100}, DECISION, "repeats"),
    "blended-uniform": AttackSpec("foolbox", "LinearSearchBlendedUniformNoiseAttack", {"directions": 1000, "steps": 100}, DECISION),
    "salt-and-pepper": AttackSpec("foolbox", "SaltAndPepperNoiseAttack", {"steps": 200}, DECISION),
    "gaussian-blur": AttackSpec("foolbox", "GaussianBlurAttack", {"steps": 100}, DECISION),
}
#: Foolbox attacks that take their distance as an argument; ours measure in L2.
_NEEDS_DISTANCE = ("blended-uniform", "gaussian-blur")


def names() -> list[str]:
    """Registered attack names, sorted."""
    return sorted(REGISTRY)


def spec(name: str) -> AttackSpec:
    """The registry entry for `name`; an unknown name lists the valid ones."""
    return REGISTRY[check_choice(name, "attack", names())]


def check_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` for attack `name`, with every budget a positive int and every step size positive."""
    for key, value in options.items():
        if key in BUDGET_OPTIONS:
            check_positive_int(value, f"options[{key!r}] of attack {name!r}")
        elif key in STEP_OPTIONS:
            check_range(value, f"options[{key!r}] of attack {name!r}", 0.0, math.inf, low_inclusive=False, high_inclusive=False)
    return dict(options)


class Attack:
    """One registered attack, ready to run: `attack(module, x, y, epsilons)` returns one batch of
    adversarials per epsilon (the clean input where it found none), whatever library it is from."""

    def __init__(self, name: str, **options: Any) -> None:
        self.name = name
        self.spec = spec(name)
        self.options = {**self.spec.defaults, **check_options(name, options)}
        self._foolbox = self._make_foolbox() if self.spec.library == "foolbox" else None
        if self.spec.library == "robustbench_bl":
            unknown = set(self.options) - {"steps", "step_size", "losses"}
            if unknown:
                raise ValueError(f"options for attack {name!r} are invalid: unknown {sorted(unknown)}; accepted: steps, step_size, losses")

    def _make_foolbox(self) -> Any:
        fb = import_foolbox()
        cls = getattr(fb.attacks, self.spec.name)
        kwargs = dict(self.options)
        if self.name in _NEEDS_DISTANCE:
            kwargs.setdefault("distance", fb.distances.l2)
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise ValueError(f"options for attack {self.name!r} ({self.spec.name}) are invalid: {err}") from None

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def minimizes(self) -> bool:
        """Whether the attack searches the smallest adversarial itself (an epsilon only clips it)."""
        return self._foolbox is not None and isinstance(self._foolbox, import_foolbox().attacks.base.MinimizationAttack)

    @property
    def norm(self) -> str:
        """'L2' or 'Linf' (or 'L<p>'): the norm in which the attack measures perturbations."""
        if self.spec.norm is not None:
            return self.spec.norm
        p = self._foolbox.distance.p
        return "Linf" if math.isinf(p) else f"L{p:g}"

    def __call__(self, module: nn.Module, x: Tensor, y: Tensor, epsilons: Sequence[float], seed: int = 0) -> list[Tensor]:
        """Adversarials per epsilon; `seed` seeds the torchattacks attacks (the others draw from
        torch's RNG, seeded by `run`)."""
        if self.spec.library == "foolbox":
            return self._run_foolbox(module, x, y, epsilons)
        if self.spec.library == "robustbench_bl":  # random starts from torch's RNG, which the caller seeds
            return [pgd(module, x, y, eps, self.norm, **self.options) for eps in epsilons]
        return [self._run_torchattacks(module, x, y, eps, seed) for eps in epsilons]

    def _run_foolbox(self, module: nn.Module, x: Tensor, y: Tensor, epsilons: Sequence[float]) -> list[Tensor]:
        fb = import_foolbox()
        fmodel = fb.PyTorchModel(module, bounds=(0, 1), device=x.device)
        if self.spec.starts:
            return _from_starting_points(self._foolbox, fmodel, x, y, epsilons)
        _, clipped, _ = self._foolbox(fmodel, x, fb.criteria.Misclassification(y), epsilons=list(epsilons))
        return [c.detach() for c in clipped]

    def _run_torchattacks(self, module: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int) -> Tensor:
        if eps == 0:
            return x.clone()
        import torchattacks

        cls = getattr(torchattacks, self.spec.name)
        try:
            attack = cls(module, norm=self.norm, eps=eps, seed=seed, **self.options)
        except TypeError as err:
            raise ValueError(f"options for attack {self.name!r} (torchattacks.{self.spec.name}) are invalid: {err}") from None
        return attack(x.contiguous(), y).detach()


def make(name: str, **options: Any) -> Attack:
    """An attack by name with our defaults, overridden by `options` (e.g. steps=10); budgets and
    step sizes are checked here, so a no-op attack is an error rather than a robust accuracy."""
    return Attack(name, **options)


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
def judge(defended: Defended, x: Tensor, y: Tensor, adversarials: Sequence[Tensor], clean_labels: Tensor | None = None) -> Judgement:
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
    stack = lambda values: torch.stack(values) if values else empty  # noqa: E731
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
    threat: Threat | str = "nonadaptive",
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

    Seeded: the attack's random starts follow `seed`, the attacker's channel draws seed +
    ATTACKER_STREAM (so they never replay the judge's), the judge's draws `seed`.
    `transfer` crafts the attack against that channel (the second seed's generic attacker uses
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
        raise ValueError("transfer needs an adaptive threat ('whitebox', 'bpda', 'eot' or 'bpda+eot'), got 'nonadaptive'")
    crafted = make(attack, **(options or {}))
    device, dtype = placement(defended.model)
    x, y = x.detach().to(device, dtype).contiguous(), y.to(device)  # float16/float64, graph-attached, strided inputs as the model runs

    with eval_mode(defended.model), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        voter = defended.reseeded(seed)
        clean_labels, counts = voter.predict(x)
        check_labels(y, len(x), counts.shape[1], "y")
        masked = gradient_masking(defended, x, y)
        distortion = defended.channel.distortion(x, draws=1).mean().item()  # one draw: a mean over all of x
        chosen = threat_model(defended, entry.kind == DECISION, threat, eot_samples, seed, transfer, batch_size)
        parts, seconds = [], 0.0
        chunks = range(0, len(x), batch_size)
        for start in tqdm(chunks, desc=f"{attack} [{threat}]", disable=not progress, unit="batch"):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            begin = time.perf_counter()
            adversarials = crafted(chosen.module, xb, yb, eps, seed)
            seconds += time.perf_counter() - begin
            parts.append(judge(voter, xb, yb, adversarials, clean_labels[start : start + batch_size]))
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
    )


def _from_starting_points(fb_attack: Any, fmodel: Any, x: Tensor, y: Tensor, eps: Sequence[float]) -> list[Tensor]:
    """Run a boundary-walking attack from blended-noise starting points, on the examples that have one.

    Only examples the queried model gets right are walked: for the others the clean input is
    already adversarial (Foolbox would start at distance zero and divide by it). Foolbox's own
    initialization raises when it fails for any example of the batch; here the examples that no
    blend with uniform noise misclassifies keep their clean input (not fooled). A stochastic vote
    answers each batch with its own draws, so the starting points are checked again on exactly the
    batch the attack will check, until they all hold.
    """
    fb = import_foolbox()
    clipped = [x.clone() for _ in eps]
    right = (fmodel(x).argmax(-1) == y).nonzero().squeeze(1)
    if len(right) == 0:
        return clipped
    init = make("blended-uniform", directions=100, steps=50)._foolbox
    starts, _, found = init(fmodel, x[right], fb.criteria.Misclassification(y[right]), epsilons=None)
    while found.any():
        index = found.nonzero().squeeze(1)
        holds = fmodel(starts[index]).argmax(-1) != y[right][index]
        if holds.all():
            break
        found[index[~holds]] = False
    if found.any():
        walk = right[found]
        _, walked, _ = fb_attack(fmodel, x[walk], fb.criteria.Misclassification(y[walk]), epsilons=list(eps), starting_points=starts[found])
        for out, adv in zip(clipped, walked):
            out[walk] = adv.detach()
    return clipped


def evaluate(
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
) -> pd.DataFrame:
    """Tidy rows (metric, value, epsilon and every setting) for one attack under one threat model.

    Metrics: clean_accuracy and attack_seconds (epsilon NaN); per epsilon robust_accuracy (the
    defended vote stays right; never above clean), success_rate (among clean-correct examples),
    and l2/linf median and mean of the successful perturbations. Flags: gradient masking without
    bpda, a stochastic defense attacked without eot (see `flags`; the sentences are in `warnings`).
    """
    defended = as_defended(model_or_defended)
    threat = Threat.parse(threat)
    if isinstance(transfer, str):
        transfer = make_channel(transfer)
    out = run(defended, attack, x, y, threat, epsilons, eot_samples, seed, transfer=transfer,
              options=options, batch_size=batch_size, progress=progress)  # fmt: skip
    settings = {
        "attack": attack,
        "attack_kind": out.kind,
        "norm": out.norm,
        "threat": threat.name,
        "gradient_path": out.gradient_path,
        "channel": channel_label(defended.channel),
        "stochastic": defended.channel.stochastic,
        "votes": defended.votes,
        "eot_samples": eot_samples if threat.eot and out.kind != DECISION else None,
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


def flags(out: Outcome, threat: Threat, channel: Channel) -> dict[str, Any]:
    """AutoAttack-style warnings for one attack: booleans plus a readable `warnings` sentence."""
    masking = out.masked_fraction > 0 and not threat.bpda and out.kind == GRADIENT
    no_eot = channel.stochastic and not threat.eot and out.kind != DECISION
    notes = []
    if masking:
        notes.append(f"defended gradients are zero or NaN on {out.masked_fraction:.0%} of examples: use threat='bpda'")
    if no_eot:
        notes.append("stochastic channel attacked without eot: use threat='eot' (or 'bpda+eot')")
    return {"flag_gradient_masking": masking, "flag_stochastic_without_eot": no_eot, "warnings": "; ".join(notes)}


def flag_obfuscation(frame: pd.DataFrame) -> pd.DataFrame:
    """Add `flag_decision_beats_gradient` to rows from several attacks (AutoAttack's check): True
    where, at the same channel, votes, norm and epsilon, a gradient-free attack (score- or
    decision-based) leaves lower robust accuracy than every gradient-based one, a sign of
    obfuscated gradients."""
    keys = ["channel", "votes", "norm", "epsilon"]
    robust = frame[frame.metric == "robust_accuracy"].assign(free=lambda f: f.attack_kind != GRADIENT)
    best = robust.pivot_table(index=keys, columns="free", values="value", aggfunc="min")
    beaten = best[True] < best[False] if {True, False} <= set(best.columns) else pd.Series(False, index=best.index)
    marked = frame.merge(beaten.rename("flag_decision_beats_gradient").reset_index(), on=keys, how="left")
    marked["flag_decision_beats_gradient"] = marked["flag_decision_beats_gradient"].fillna(False).astype(bool)
    hit = marked["flag_decision_beats_gradient"]
    note = "a gradient-free attack beats the gradient-based ones: gradients are likely obfuscated"
    marked.loc[hit, "warnings"] = marked.loc[hit, "warnings"].map(lambda s: f"{s}; {note}" if s else note)
    return marked


def _mean(mask: Tensor) -> float:
    return mask.float().mean().item() if len(mask) else math.nan



__all__ = [
    "ATTACKER_STREAM", "DECISION", "GRADIENT", "REGISTRY", "SCORE", "THREATS", "Attack", "AttackSpec", "Judgement",
    "Outcome", "Threat", "ThreatModel", "Vote", "as_defended", "channel_label", "check_epsilons", "check_options",
    "evaluate", "flag_obfuscation", "flags", "gradient_masking", "judge", "make", "names", "pgd", "run",
    "spec", "straight_through", "summary_rows", "threat_model",
]  # fmt: skip
