"""Sanity checks of one benchmark evaluation, each a named `Check` with pass / fail and its numbers.

The published checklists (Athalye et al. 2018; Carlini et al. 2019, "On Evaluating Adversarial
Robustness"; Tramer et al. 2020) list what a sound evaluation shows: robust accuracy falls
monotonically with epsilon, an unbounded attack reaches ~0%, iterative attacks beat single-step
ones, white-box attacks beat gradient-free and transfer attacks, random noise in the ball does not
beat them, and more steps do not lower robust accuracy further. Zimmermann, Brendel, Tramer and
Carlini (NeurIPS 2022) add the binarization test: change the defended classifier so that an
adversarial example provably exists inside the budget for each test point, and check that the
evaluation's attacks find it.

Every comparison counts counterexamples (examples on which the check's attack beats what the
evaluation reported, or a larger budget leaves robust what a smaller one fooled) and fails when
there are more than `allowance(n)`: 1% of the images, at least one. A check that could not be run
(`passed` None) says why; it does not fail the evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustbench_bl import attacks
from robustbench_bl.attacks.registry import diameter
from robustbench_bl.defense import Defended

#: The checks `run_checks` knows, in the order it runs them.
CHECKS = ("monotone", "unbounded", "iterative", "gradient-free", "transfer", "noise", "convergence", "binarization")
#: Draws of uniform noise in the ball per image (the `noise` check).
NOISE_DRAWS = 8
#: Inner points around each image for the binarization readout, and their radius as a share of eps.
INNER_POINTS, INNER_RADIUS = 31, 0.5


@dataclass(frozen=True)
class Check:
    """One sanity check: `passed` (None: not applicable here), its evidence and a one-line detail."""

    name: str
    passed: bool | None
    detail: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail, "evidence": dict(self.evidence)}


def allowance(n: int) -> int:
    """Counterexamples a check tolerates among n images: 1%, at least one (attack randomness)."""
    return max(1, math.ceil(0.01 * n))


@dataclass
class Evaluation:
    """What the checks need of a finished benchmark run: the defended model, the images, the threat
    model and settings the suite ran under, and the suite's outcomes (first repeat) by attack."""

    defended: Defended
    x: Tensor
    y: Tensor
    threat: attacks.Threat
    norm: str
    eps: float
    eot_samples: int
    seed: int
    options: Mapping[str, Mapping[str, Any]]
    precision: str
    outcomes: Mapping[str, attacks.Outcome]

    @property
    def pgd(self) -> str:
        return f"pgd-{self.norm.lower()}"

    @property
    def robust(self) -> Tensor:
        """Per image: robust under every attack of the suite (first repeat)."""
        return torch.stack([o.robust[0] for o in self.outcomes.values()]).all(0)

    def gradient_robust(self) -> Tensor:
        """Per image: robust under every gradient attack of the suite."""
        found = [o.robust[0] for o in self.outcomes.values() if o.kind == attacks.GRADIENT]
        return torch.stack(found).all(0)

    def attack(
        self,
        name: str,
        eps: float,
        threat: attacks.Threat | str | None = None,
        among: Tensor | None = None,
        **options: Any,
    ) -> Tensor:
        """Per image, robust under `name` at `eps` (one independent run, the suite's options and seed);
        with `among` (a mask) only those images are attacked, and the others count as not robust."""
        chosen = {**self.options.get(name, {}), **options}
        index = torch.arange(len(self.x)) if among is None else torch.nonzero(among).flatten()
        robust = torch.zeros(len(self.x), dtype=torch.bool)
        if len(index) == 0:
            return robust
        outcome = attacks.run(
            self.defended,
            name,
            self.x[index],
            self.y[index],
            self.threat if threat is None else threat,
            [eps],
            self.eot_samples,
            self.seed,
            options=chosen,
            precision=self.precision,
        )
        robust[index] = outcome.robust[0]
        return robust


def _count(name: str, beaten: Tensor, what: str, evidence: dict[str, Any]) -> Check:
    """A check from its counterexamples `beaten` (per image) against the allowance."""
    k, n = int(beaten.sum()), len(beaten)
    passed = k <= allowance(n)
    return Check(
        name, passed, f"{what}: {k} of {n} images (allowed {allowance(n)})", {**evidence, "counterexamples": k}
    )


def monotone(ev: Evaluation) -> Check:
    """Separate PGD runs at eps/2, eps and 2 eps: an image robust at a larger budget is robust at the smaller."""
    budgets = [ev.eps / 2, ev.eps, 2 * ev.eps]
    robust = [ev.attack(ev.pgd, e) for e in budgets]
    beaten = (robust[1] & ~robust[0]) | (robust[2] & ~robust[1])
    accuracy = [round(r.float().mean().item(), 4) for r in robust]
    return _count(
        "monotone",
        beaten,
        "robust at a larger budget, fooled at a smaller",
        {"eps": budgets, "robust_accuracy": accuracy},
    )


def unbounded(ev: Evaluation) -> Check:
    """PGD at a budget that holds the whole box leaves (almost) nothing robust."""
    budget = diameter(ev.norm, ev.x)
    left = ev.attack(ev.pgd, budget)
    return _count("unbounded", left, f"robust at {ev.norm} {budget:.4g}", {"eps": budget})


def iterative(ev: Evaluation) -> Check:
    """A single gradient step (FGSM) fools nothing that the suite's iterative attacks leave robust."""
    if ev.norm != "Linf":
        return Check("iterative", None, "no single-step attack registered for L2")
    single = ev.attack("fgsm", ev.eps)
    beaten = ~single & ev.gradient_robust()
    evidence = {"fgsm_robust": single.float().mean().item()}
    return _count("iterative", beaten, "fooled by FGSM, robust under the iterative attacks", evidence)


def gradient_free(ev: Evaluation) -> Check:
    """The suite's score- and decision-based attacks fool nothing its gradient attacks left robust."""
    others = [o.robust[0] for o in ev.outcomes.values() if o.kind != attacks.GRADIENT]
    if not others:
        return Check("gradient-free", None, "the suite has no gradient-free attack")
    beaten = ev.gradient_robust() & ~torch.stack(others).all(0)
    return _count("gradient-free", beaten, "fooled by a gradient-free attack only", {})


def transfer(ev: Evaluation) -> Check:
    """PGD crafted on the bare model (non-adaptive, transferred) fools nothing the adaptive attacks left robust."""
    crafted = ev.attack(ev.pgd, ev.eps, threat="nonadaptive")
    beaten = ev.gradient_robust() & ~crafted
    return _count(
        "transfer",
        beaten,
        "fooled by transfer from the bare model only",
        {"transfer_robust": crafted.float().mean().item()},
    )


def noise(ev: Evaluation, draws: int = NOISE_DRAWS) -> Check:
    """Uniform random points in the eps-ball fool nothing the gradient attacks left robust."""
    generator = torch.Generator().manual_seed(ev.seed)
    candidates = [ev.x + _ball(ev.x, ev.norm, ev.eps, generator) for _ in range(draws)]
    judged = attacks.judge(ev.defended.reseeded(ev.seed), ev.x, ev.y, [c.clamp(0, 1) for c in candidates])
    fooled_any = judged.fooled.any(0)
    beaten = ev.gradient_robust() & fooled_any
    return _count("noise", beaten, f"fooled by {draws} random points in the ball only", {"draws": draws})


def convergence(ev: Evaluation) -> Check:
    """PGD with twice the steps fools nothing the suite left robust: the attacks had converged."""
    steps = 2 * int(ev.options.get(ev.pgd, {}).get("steps", attacks.spec(ev.pgd).defaults["steps"]))
    longer = ev.attack(ev.pgd, ev.eps, among=ev.robust, steps=steps)  # only what the suite left robust can count
    beaten = ev.robust & ~longer
    return _count("convergence", beaten, f"robust under the suite, fooled by PGD with {steps} steps", {"steps": steps})


def _ball(x: Tensor, norm: str, radius: float, generator: torch.Generator) -> Tensor:
    """A uniform draw in the Linf cube, or a random direction at `radius` in L2, per image."""
    if norm == "Linf":
        return (torch.rand(x.shape, generator=generator) * 2 - 1).to(x) * radius
    direction = torch.randn(x.shape, generator=generator).to(x)
    return direction / direction.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1)) * radius


class Readout(nn.Module):
    """A linear binary readout on a model's logits: class 0 (the image's side) against class 1, and a
    constant third class far below (so DLR losses, which need three classes, still apply)."""

    weight: Tensor
    bias: Tensor

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, logits: Tensor) -> Tensor:
        s = logits @ self.weight + self.bias
        return torch.stack([-s / 2, s / 2, torch.full_like(s, -100.0)], dim=1)


def fit_readout(inner: Tensor, boundary: Tensor, iters: int = 200) -> Readout:
    """Logistic regression of features: `inner` rows class 0, `boundary` rows class 1 (balanced)."""
    features = torch.cat([inner, boundary]).double()
    labels = torch.cat([torch.zeros(len(inner)), torch.ones(len(boundary))]).double()
    weights = torch.where(labels > 0, len(inner) / len(boundary), 1.0).double()
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def loss() -> Tensor:
        optimizer.zero_grad()
        value = (nn.functional.binary_cross_entropy_with_logits(z @ w + b, labels, reduction="none") * weights).mean()
        value = value + 1e-4 * w.square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    scale = w.detach() / std
    return Readout(scale.float(), (b.detach() - (mean * scale).sum()).float())


def binarization(ev: Evaluation, samples: int = 20) -> Check:
    """Zimmermann et al. (2022): per image, a readout on the model's logits that puts the image and
    points around it in class 0 and one point on the eps-ball's surface in class 1, checked by the
    judge's own vote, so an adversarial provably exists; the suite's gradient attacks (same threat
    model) must find one. Random channels: the readout is fitted on `eot_samples` draws per point
    and the guarantee is checked on the seeded vote the judge uses (docs/attacks.md)."""
    generator = torch.Generator().manual_seed(ev.seed)
    chosen = torch.nonzero(next(iter(ev.outcomes.values())).clean_correct).flatten()[:samples]
    gradient = [name for name, o in ev.outcomes.items() if o.kind == attacks.GRADIENT]
    tested = found = skipped = 0
    for i in chosen.tolist():
        binarized = _planted(ev, ev.x[i : i + 1], generator)
        if binarized is None:
            skipped += 1
            continue
        tested += 1
        label = torch.zeros(1, dtype=torch.long, device=ev.y.device)
        robust = [_robust_binarized(ev, binarized, ev.x[i : i + 1], label, name) for name in gradient]
        found += int(not all(robust))
    if tested == 0:
        return Check("binarization", None, f"no image gave a separable readout ({skipped} tried)", {"skipped": skipped})
    missed = tested - found
    passed = missed <= allowance(tested)
    detail = f"the attacks found the planted adversarial for {found} of {tested} images ({skipped} not separable)"
    return Check(
        "binarization",
        passed,
        detail,
        {"tested": tested, "found": found, "not_separable": skipped, "attacks": gradient},
    )


def _robust_binarized(ev: Evaluation, binarized: Defended, x: Tensor, label: Tensor, name: str) -> bool:
    outcome = attacks.run(
        binarized,
        name,
        x,
        label,
        ev.threat,
        [ev.eps],
        ev.eot_samples,
        ev.seed,
        options=ev.options.get(name),
        precision=ev.precision,
    )
    return bool(outcome.robust[0, 0])


def _planted(ev: Evaluation, x: Tensor, generator: torch.Generator, tries: int = 3) -> Defended | None:
    """The binarized classifier for image x (batch of one), or None when no boundary point tried
    could be separated from the inner points so that the judge's vote confirms it."""
    draws = ev.eot_samples if ev.defended.channel.stochastic else 1
    features = _features(ev.defended, draws, ev.seed)
    inner = (x + _ball(x.repeat(INNER_POINTS, 1, 1, 1), ev.norm, INNER_RADIUS * ev.eps, generator)).clamp(0, 1)
    inner = torch.cat([x, inner])
    for _ in range(tries):
        boundary = (x + _surface(x, ev.norm, ev.eps, generator)).clamp(0, 1)
        readout = fit_readout(features(inner), features(boundary))
        binarized = Defended(
            nn.Sequential(ev.defended.model, readout).eval(),
            ev.defended.channel,
            ev.defended.votes,
            max_batch=ev.defended.max_batch,
        )
        votes = binarized.reseeded(ev.seed).predict(torch.cat([x, boundary]))[0]
        if votes.tolist() == [0, 1]:
            return binarized
    return None


def _surface(x: Tensor, norm: str, eps: float, generator: torch.Generator) -> Tensor:
    """A random point on the eps-ball's surface: a random corner in Linf, a random direction in L2."""
    if norm == "Linf":
        return (torch.randint(0, 2, x.shape, generator=generator) * 2 - 1).to(x) * eps
    return _ball(x, norm, eps, generator)


def _features(defended: Defended, draws: int, seed: int) -> Callable[[Tensor], Tensor]:
    """The model's logits on `draws` seeded channel draws of each point, stacked (points x draws rows)."""

    @torch.no_grad()
    def features(points: Tensor) -> Tensor:
        generator = torch.Generator(device=points.device).manual_seed(seed)
        batch = points.repeat(draws, 1, 1, 1)
        return defended.model(defended.channel.transform(batch, generator)).float()

    return features


def run_checks(ev: Evaluation, names: Sequence[str] = CHECKS) -> list[Check]:
    """The named checks on one evaluation, in `CHECKS` order."""
    known: dict[str, Callable[[Evaluation], Check]] = {
        "monotone": monotone,
        "unbounded": unbounded,
        "iterative": iterative,
        "gradient-free": gradient_free,
        "transfer": transfer,
        "noise": noise,
        "convergence": convergence,
        "binarization": binarization,
    }
    return [known[name](ev) for name in CHECKS if name in names]
