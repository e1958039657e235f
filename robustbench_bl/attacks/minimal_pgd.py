"""PGD-Linf as a minimal-perturbation attack, the way Foolbox 2 ran it with `binary_search=True` (its
default, and the second paper's "PGD attack with 40 iterations": "the iterative attacks find the
adversarial images that are closer to the original images").

Per example: from epsilon 0.3, grow epsilon by x1.5 until 40 sign-gradient steps of the cross-entropy
(step 0.01/0.3 of epsilon, no random start, projected onto the epsilon ball and [0, 1]) find an
adversarial (at most 20 tries), then bisect between 0 and that epsilon 20 times; each run returns as
soon as the example is misclassified. The result is the smallest epsilon at which the attack succeeded
and the adversarial found there. Written here on torch, batched, with every example searching its
own epsilon.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_bl.validation import check_positive_int, check_range


@dataclass(frozen=True)
class Search:
    """Foolbox 2's defaults: start epsilon, step relative to epsilon, steps per run, tries of the
    exponential search (x `grow`) and of the bisection."""

    epsilon: float = 0.3
    rel_stepsize: float = 0.01 / 0.3
    steps: int = 40
    tries: int = 20
    grow: float = 1.5

    def __post_init__(self) -> None:
        check_range(self.epsilon, "epsilon", 0.0, float("inf"), low_inclusive=False, high_inclusive=False)
        check_range(self.rel_stepsize, "rel_stepsize", 0.0, float("inf"), low_inclusive=False, high_inclusive=False)
        check_positive_int(self.steps, "steps")
        check_positive_int(self.tries, "tries")
        check_range(self.grow, "grow", 1.0, float("inf"), low_inclusive=False, high_inclusive=False)


def _per_example(values: Tensor, like: Tensor) -> Tensor:
    return values.view(-1, *([1] * (like.dim() - 1)))


def pgd_run(model: nn.Module, x: Tensor, y: Tensor, eps: Tensor, search: Search) -> tuple[Tensor, Tensor]:
    """One run per example at its own `eps`: (fooled, adversarial), each example stopping at the first
    iterate the model misclassifies (the clean input when none)."""
    eps_, step = _per_example(eps, x), _per_example(eps * search.rel_stepsize, x)
    adv, found = x.clone(), x.clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(search.steps):
        active = ~fooled
        if not active.any():
            break
        current = adv[active].detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(current), y[active], reduction="sum"), current)
        moved = current.detach() + step[active] * grad.sign()
        moved = torch.max(torch.min(moved, x[active] + eps_[active]), x[active] - eps_[active]).clamp_(0, 1)
        adv[active] = moved
        with torch.no_grad():
            now = model(moved).argmax(1) != y[active]
        index = active.nonzero().squeeze(1)[now]
        found[index], fooled[index] = moved[now], True
    return fooled, found


@torch.no_grad()
def _misclassified(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return model(x).argmax(1) != y


def minimal_pgd(model: nn.Module, x: Tensor, y: Tensor, search: Search | None = None) -> tuple[Tensor, Tensor]:
    """(epsilon, adversarial) per example: the smallest Linf epsilon at which the search's PGD fooled
    `model` and the adversarial found there; epsilon 0 for an example already misclassified, inf (and the
    clean input) where even the largest epsilon tried failed."""
    search = search or Search()
    n = len(x)
    best, adversarial = torch.full((n,), float("inf"), device=x.device), x.clone()
    wrong = _misclassified(model, x, y)
    best[wrong] = 0.0
    eps = torch.full((n,), search.epsilon, device=x.device)
    pending = ~wrong
    for _ in range(search.tries):  # exponential search for an epsilon that fools
        if not pending.any():
            break
        fooled, found = pgd_run(model, x[pending], y[pending], eps[pending], search)
        index = pending.nonzero().squeeze(1)
        best[index[fooled]], adversarial[index[fooled]] = eps[index[fooled]], found[fooled]
        eps[index[~fooled]] *= search.grow
        pending[index[fooled]] = False
    searching = torch.isfinite(best) & (best > 0)
    bad = torch.zeros(n, device=x.device)
    for _ in range(search.tries):  # bisection between the last failure and the smallest success
        if not searching.any():
            break
        index = searching.nonzero().squeeze(1)
        middle = (best[index] + bad[index]) / 2
        fooled, found = pgd_run(model, x[index], y[index], middle, search)
        best[index[fooled]], adversarial[index[fooled]] = middle[fooled], found[fooled]
        bad[index[~fooled]] = middle[~fooled]
    return best, adversarial
