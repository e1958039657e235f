"""The attack registry: each attack by name with this package's defaults, its norm, kind
(gradient, score, decision) and checked options; `make(name, **options)` builds one."""

from __future__ import annotations

import abc
import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from robustbench_bl._foolbox import import_foolbox
from robustbench_bl.attacks.minimal_pgd import Search, minimal_pgd
from robustbench_bl.attacks.pgd import pgd
from robustbench_bl.validation import check_choice, check_positive_int, check_range

GRADIENT, SCORE, DECISION = "gradient", "score", "decision"
#: Constructor options that are budgets (must be positive ints) and step sizes (positive numbers):
#: a zero or negative budget would run no attack and report robust accuracy = clean accuracy.
BUDGET_OPTIONS = (
    "steps",
    "repeats",
    "n_queries",
    "max_gradient_eval_steps",
    "initial_gradient_eval_steps",
    "binary_search_steps",
    "directions",
    "n_restarts",
    "tries",
)
STEP_OPTIONS = (
    "rel_stepsize",
    "abs_stepsize",
    "step_size",
    "stepsize",
    "initial_const",
    "spherical_step",
    "source_step",
)


class Attack(abc.ABC):
    """One registered attack, ready to run: `attack(module, x, y, epsilons)` returns one batch of
    adversarials per epsilon (the clean input where it found none). One adapter per way of running
    (`FoolboxAttack`, `TorchattacksAttack`, `PGDAttack`, ...) fills in how it runs."""

    #: Options the adapter accepts beyond the library's own checks (None: the library checks them).
    accepted: tuple[str, ...] | None = None

    def __init__(self, name: str, **options: Any) -> None:
        self.name = name
        self.spec = spec(name)
        self.options = {**self.spec.defaults, **check_options(name, options)}
        unknown = set(self.options) - set(self.accepted) if self.accepted is not None else set()
        if unknown:
            raise ValueError(
                f"options for attack {name!r} are invalid: unknown {sorted(unknown)}; accepted: {', '.join(self.accepted or ())}"
            )

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def minimizes(self) -> bool:
        """Whether the attack searches the smallest adversarial itself (an epsilon only clips it)."""
        return False

    @property
    def norm(self) -> str:
        """'L2' or 'Linf' (or 'L<p>'): the norm in which the attack measures perturbations."""
        assert self.spec.norm is not None, f"attack {self.name!r} must name its norm in the registry"
        return self.spec.norm

    def __call__(
        self, module: nn.Module, x: Tensor, y: Tensor, epsilons: Sequence[float | None], seed: int = 0
    ) -> list[Tensor]:
        """Adversarials per epsilon; `seed` seeds the torchattacks attacks (the others draw from
        torch's RNG, seeded by `run`). The one entry point of every adapter (see `craft`), which runs
        with `module`'s parameters `frozen`."""
        with frozen(module):
            return self.craft(module, x, y, epsilons, seed)

    @abc.abstractmethod
    def craft(
        self, module: nn.Module, x: Tensor, y: Tensor, epsilons: Sequence[float | None], seed: int
    ) -> list[Tensor]:
        """What `__call__` runs: one batch of adversarials per epsilon."""


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """`module`'s parameters without gradients for the duration, then as they were: an attack needs
    the input's gradient only, but Foolbox differentiates with `loss.backward()`, which also computes
    (and accumulates in `.grad`) every weight's gradient; frozen, C&W on a FastNet runs 1.3-1.65x
    faster (benchmarks/attacks.py). Gradients through `torch.autograd.grad` to the input are the same."""
    thawed = [p for p in module.parameters() if p.requires_grad]
    for p in thawed:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in thawed:
            p.requires_grad_(True)


class BoundedAttack(Attack):
    """An adapter whose attack takes one fixed budget at a time: `bounded` once per epsilon."""

    def craft(
        self, module: nn.Module, x: Tensor, y: Tensor, epsilons: Sequence[float | None], seed: int
    ) -> list[Tensor]:
        bounded = [eps for eps in epsilons if eps is not None]
        if len(bounded) < len(epsilons):
            raise ValueError(
                f"epsilons of attack {self.name!r} must be numbers; None (unbounded) is for minimization attacks"
            )
        return [self.bounded(module, x, y, eps, seed) for eps in bounded]

    @abc.abstractmethod
    def bounded(self, module: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int) -> Tensor:
        """Adversarials within `eps`."""


class PGDAttack(BoundedAttack):
    """The package's best-iterate PGD (random starts from torch's RNG, which the caller seeds)."""

    accepted = ("steps", "step_size", "losses")

    def bounded(self, module: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int) -> Tensor:
        return pgd(module, x, y, eps, self.norm, **self.options)


class MinimalPGDAttack(Attack):
    """PGD-Linf with Foolbox 2's epsilon search (`attacks.minimal_pgd`): a minimization attack, so an
    epsilon only clips its adversarial onto the epsilon ball (None: the adversarial as found)."""

    accepted = ("epsilon", "rel_stepsize", "steps", "tries")

    @property
    def minimizes(self) -> bool:
        return True

    def craft(
        self, module: nn.Module, x: Tensor, y: Tensor, epsilons: Sequence[float | None], seed: int
    ) -> list[Tensor]:
        _, adversarial = minimal_pgd(module, x, y, Search(**self.options))
        return [adversarial if eps is None else x + (adversarial - x).clamp(-eps, eps) for eps in epsilons]


def foolbox_model(module: nn.Module, x: Tensor) -> Any:
    """`module` as Foolbox queries it: inputs in the [0, 1] box, on x's device."""
    return import_foolbox().PyTorchModel(module, bounds=(0, 1), device=x.device)


def norm_name(distance: Any) -> str:
    """'Linf' or 'L<p>': the norm of a Foolbox distance."""
    return "Linf" if math.isinf(distance.p) else f"L{distance.p:g}"


def clipped(distance: Any, x: Tensor, adversarial: Tensor, epsilons: Sequence[float | None]) -> list[Tensor]:
    """A minimization attack's adversarials per epsilon: clipped onto each epsilon ball in `distance`'s
    norm (None: as found)."""
    return [adversarial if eps is None else distance.clip_perturbation(x, adversarial, eps) for eps in epsilons]


def diameter(norm: str, x: Tensor) -> float:
    """The diameter of the [0, 1] box of x's examples in `norm` ('Linf' or 'L2'): as an epsilon it
    clips nothing, so a minimization attack's adversarial keeps its own size."""
    return 1.0 if norm == "Linf" else math.sqrt(x[0].numel())


class NoiseScanAttack(Attack):
    """Foolbox 2's additive noise attacks (`AdditiveUniformNoiseAttack`, `AdditiveGaussianNoiseAttack`),
    the first paper's "epsilon ... changed from 0 to 1" (its Fig. 28), written on Foolbox 3's one-draw
    noise of a fixed size: a fresh draw at each of `steps` evenly spaced sizes up to the diameter of
    the [0, 1] box in the attack's norm (1 in Linf, sqrt(dimension) in L2), each example stopping at
    the first size whose draw fools it. A minimization attack: an epsilon only clips the adversarial
    onto its ball. Examples the model already gets wrong keep their clean input (distance zero)."""

    accepted = ("steps",)

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.noise: Any = getattr(import_foolbox().attacks, self.spec.name)()

    @property
    def minimizes(self) -> bool:
        return True

    @property
    def norm(self) -> str:
        return norm_name(self.noise.distance)

    def craft(
        self, module: nn.Module, x: Tensor, y: Tensor, epsilons: Sequence[float | None], seed: int
    ) -> list[Tensor]:
        fb = import_foolbox()
        fmodel = foolbox_model(module, x)
        size = diameter(self.norm, x)
        adversarial = x.clone()
        left = (fmodel(x).argmax(-1) == y).nonzero().squeeze(1)
        for level in range(1, self.options["steps"] + 1):
            if len(left) == 0:
                break
            eps = size * level / self.options["steps"]
            _, noisy, fooled = self.noise(fmodel, x[left], fb.criteria.Misclassification(y[left]), epsilons=eps)
            adversarial[left[fooled]] = noisy[fooled]
            left = left[~fooled]
        return clipped(self.noise.distance, x, adversarial, epsilons)


class TorchattacksAttack(BoundedAttack):
    """An attack of torchattacks (APGD, Square), seeded by `seed`."""

    def bounded(self, module: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int) -> Tensor:
        if eps == 0:
            return x.clone()
        import torchattacks

        cls = getattr(torchattacks, self.spec.name)
        try:
            attack = cls(module, norm=self.norm, eps=eps, seed=seed, **self.options)
        except TypeError as err:
            raise ValueError(
                f"options for attack {self.name!r} (torchattacks.{self.spec.name}) are invalid: {err}"
            ) from None
        return attack(x.contiguous(), y).detach()


class FoolboxAttack(Attack):
    """An attack of Foolbox 3, built once (`foolbox_attack`); boundary walkers start from blended noise."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        fb = import_foolbox()
        kwargs = dict(self.options)
        if name in _NEEDS_DISTANCE:
            kwargs.setdefault("distance", fb.distances.l2)
        try:
            self.foolbox_attack: Any = getattr(fb.attacks, self.spec.name)(**kwargs)
        except TypeError as err:
            raise ValueError(f"options for attack {name!r} ({self.spec.name}) are invalid: {err}") from None

    @property
    def minimizes(self) -> bool:
        return isinstance(self.foolbox_attack, import_foolbox().attacks.base.MinimizationAttack)

    @property
    def norm(self) -> str:
        return norm_name(self.foolbox_attack.distance)

    def craft(
        self, module: nn.Module, x: Tensor, y: Tensor, epsilons: Sequence[float | None], seed: int
    ) -> list[Tensor]:
        fb = import_foolbox()
        fmodel = foolbox_model(module, x)
        if self.spec.starts:
            return _from_starting_points(self.foolbox_attack, fmodel, x, y, epsilons)
        _, clipped, _ = self.foolbox_attack(fmodel, x, fb.criteria.Misclassification(y), epsilons=list(epsilons))
        return [c.detach() for c in clipped]


class BlendedNoiseAttack(FoolboxAttack):
    """Foolbox 3's blended uniform noise in two rounds, the same search per example. Its draws of
    random images stop only once every example of the batch has an adversarial one, and random images
    tend to fall in one class, so that class's examples made the whole batch pay for every direction
    (~4 s an image on a FastNet): first FIRST_DIRECTIONS draws for the batch, then the full budget
    for the examples still unfooled alone."""

    FIRST_DIRECTIONS = 10

    def craft(
        self, module: nn.Module, x: Tensor, y: Tensor, epsilons: Sequence[float | None], seed: int
    ) -> list[Tensor]:
        fb = import_foolbox()
        fmodel = foolbox_model(module, x)
        full = self.foolbox_attack
        first = type(full)(
            distance=full.distance, directions=min(self.FIRST_DIRECTIONS, full.directions), steps=full.steps
        )
        with warnings.catch_warnings():  # Foolbox warns of the examples the first round leaves
            warnings.simplefilter("ignore", UserWarning)
            adversarial, _, fooled = first(fmodel, x, fb.criteria.Misclassification(y), epsilons=None)
        missed = (~fooled).nonzero().squeeze(1)
        if len(missed) and full.directions > first.directions:
            adversarial[missed], _, _ = full(fmodel, x[missed], fb.criteria.Misclassification(y[missed]), epsilons=None)
        return clipped(full.distance, x, adversarial.detach(), epsilons)


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: the adapter that runs it (`adapter`: one class per way of running) and its
    class or function there (`name`), our defaults, whether it needs gradients, scores or decisions
    (`kind`), the option that sets its step or query budget (None if none), its norm where the
    library does not say (`norm`), and whether it walks from adversarial starting points (see
    `_from_starting_points`)."""

    adapter: type[Attack]
    name: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    kind: str = GRADIENT
    budget: str | None = "steps"
    starts: bool = False
    norm: str | None = None


_FB, _TA = FoolboxAttack, TorchattacksAttack
#: The package's PGD: 100 steps of eps/4 (halved at 1/2 and 3/4), a CE run then a margin run,
#: best iterate kept; 'pgd-linf-minimal' is the second paper's minimal-epsilon PGD instead. APGD and Square as AutoAttack runs them (100 steps, 5,000 queries).
REGISTRY: dict[str, AttackSpec] = {
    "fgsm": AttackSpec(_FB, "LinfFastGradientAttack", budget=None),
    "pgd-linf": AttackSpec(PGDAttack, "pgd", {"steps": 100}, norm="Linf"),
    "pgd-l2": AttackSpec(PGDAttack, "pgd", {"steps": 100}, norm="L2"),
    # the second paper's PGD: 40 steps, no random start, Foolbox 2's search for the smallest epsilon
    "pgd-linf-minimal": AttackSpec(MinimalPGDAttack, "minimal_pgd", {"steps": 40}, norm="Linf"),
    "apgd-ce-linf": AttackSpec(_TA, "APGD", {"steps": 100, "loss": "ce"}, norm="Linf"),
    "apgd-dlr-linf": AttackSpec(_TA, "APGD", {"steps": 100, "loss": "dlr"}, norm="Linf"),
    "apgd-ce-l2": AttackSpec(_TA, "APGD", {"steps": 100, "loss": "ce"}, norm="L2"),
    "apgd-dlr-l2": AttackSpec(_TA, "APGD", {"steps": 100, "loss": "dlr"}, norm="L2"),
    "square-linf": AttackSpec(_TA, "Square", {"n_queries": 5000}, SCORE, "n_queries", norm="Linf"),
    "square-l2": AttackSpec(_TA, "Square", {"n_queries": 5000}, SCORE, "n_queries", norm="L2"),
    "cw-l2": AttackSpec(_FB, "L2CarliniWagnerAttack", {"steps": 100, "binary_search_steps": 5}),
    "deepfool-linf": AttackSpec(_FB, "LinfDeepFoolAttack", {"steps": 50}),
    "boundary": AttackSpec(_FB, "BoundaryAttack", {"steps": 1000}, DECISION, starts=True),
    "hopskipjump": AttackSpec(
        _FB, "HopSkipJumpAttack", {"steps": 16, "max_gradient_eval_steps": 1000}, DECISION, starts=True
    ),
    # Foolbox 2's scans: 1,000 noise sizes from 0 to the box's diameter, one draw each, first that fools
    "additive-uniform": AttackSpec(NoiseScanAttack, "LinfAdditiveUniformNoiseAttack", {"steps": 1000}, DECISION),
    "additive-gaussian": AttackSpec(NoiseScanAttack, "L2AdditiveGaussianNoiseAttack", {"steps": 1000}, DECISION),
    "blended-uniform": AttackSpec(
        BlendedNoiseAttack, "LinearSearchBlendedUniformNoiseAttack", {"directions": 1000, "steps": 100}, DECISION
    ),
    "salt-and-pepper": AttackSpec(_FB, "SaltAndPepperNoiseAttack", {"steps": 200}, DECISION),
    "gaussian-blur": AttackSpec(_FB, "GaussianBlurAttack", {"steps": 100}, DECISION),
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
            check_range(
                value, f"options[{key!r}] of attack {name!r}", 0.0, math.inf, low_inclusive=False, high_inclusive=False
            )
    return dict(options)


def make(name: str, **options: Any) -> Attack:
    """An attack by name with our defaults, overridden by `options` (e.g. steps=10); budgets and
    step sizes are checked here, so a no-op attack is an error rather than a robust accuracy."""
    return spec(name).adapter(name, **options)


def _from_starting_points(
    fb_attack: Any, fmodel: Any, x: Tensor, y: Tensor, eps: Sequence[float | None]
) -> list[Tensor]:
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
    init = FoolboxAttack("blended-uniform", directions=100, steps=50).foolbox_attack
    starts, _, found = init(fmodel, x[right], fb.criteria.Misclassification(y[right]), epsilons=None)
    while found.any():
        index = found.nonzero().squeeze(1)
        holds = fmodel(starts[index]).argmax(-1) != y[right][index]
        if holds.all():
            break
        found[index[~holds]] = False
    if found.any():
        walk = right[found]
        _, walked, _ = fb_attack(
            fmodel, x[walk], fb.criteria.Misclassification(y[walk]), epsilons=list(eps), starting_points=starts[found]
        )
        for out, adv in zip(clipped, walked):
            out[walk] = adv.detach()
    return clipped
