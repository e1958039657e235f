"""Every registered attack against models whose answer is known in closed form.

A linear classifier s(x) = w.x + b (third class never competitive) has, for each example, a
minimal adversarial distance d = |s| / ||w||_1 in Linf and |s| / ||w||_2 in L2 (the box [0, 1]
does not bind: images lie in [0.3, 0.7] and the optimal moves stay below 0.2 per pixel).
Gradient attacks must fool every example with d <= eps / 1.1 and none with d > eps; score- and
decision-based attacks must fool every example within a stated factor of its minimum, and the
minimization attacks must return sizes within a stated factor of it. With the attacks replaced by
a no-op (the clean input back), every one of these checks fails: the mutation test says so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from robustbench_bl import attacks

SHAPE = (3, 6, 6)
D = 3 * 6 * 6


class Linear3(nn.Module):
    """Logits (-s/2, s/2, -10) for s = w.x + b: classes 0/1 by the sign of s; class 2 never wins."""

    def __init__(self, w: Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = b

    def forward(self, x: Tensor) -> Tensor:
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([-s / 2, s / 2, torch.full_like(s, -10.0)], 1)


def linear_case(n: int = 30, seed: int = 0) -> tuple[nn.Module, Tensor, Tensor, dict[str, Tensor]]:
    """(model, x, y, minimal distance per example per norm)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(D, generator=gen)
    b = -0.5 * w.sum().item()
    x = 0.5 + (torch.rand(n, *SHAPE, generator=gen) - 0.5) * 0.4
    s = x.flatten(1) @ w + b
    return Linear3(w, b).eval(), x, (s > 0).long(), {"Linf": s.abs() / w.abs().sum(), "L2": s.abs() / w.norm()}


#: Budgets small enough for the test suite, large enough for the stated factors.
OPTIONS: dict[str, dict[str, object]] = {
    "square-linf": {"n_queries": 1000},
    "square-l2": {"n_queries": 1000},
    "boundary": {"steps": 1000},
    "hopskipjump": {"steps": 16},
    "cw-l2": {"steps": 100},
}
#: Bounded gradient attacks: at eps they fool every example with d <= eps / 1.1 (a linear model
#: has no local optimum; FGSM is exactly optimal for Linf).
GRADIENT = (
    "fgsm",
    "pgd-linf",
    "pgd-l2",
    "apgd-ce-linf",
    "apgd-dlr-linf",
    "apgd-ce-l2",
    "apgd-dlr-l2",
    "deepfool-linf",
    "cw-l2",
    "pgd-linf-minimal",
)
#: Minimization attacks: the perturbation they return is at most this factor times the minimum. The
#: noise scans try one random direction per size, ~sqrt(D) ~ 10x worse than the best (4-17x measured).
MINIMAL = {
    "deepfool-linf": 1.15,
    "cw-l2": 1.7,
    "hopskipjump": 2.0,
    "boundary": 6.0,
    "pgd-linf-minimal": 1.001,
    "additive-uniform": 30.0,
    "additive-gaussian": 30.0,
}
#: Gradient-free attacks fool every example whose minimum is this factor below eps. Random
#: directions in D = 108 dimensions are ~sqrt(D) worse than the optimal one, hence 100 for the
#: noise attacks; Square's random search needs ~3x at 1,000 queries, the boundary walkers ~10x.
GRADIENT_FREE = {
    "square-linf": 4.0,
    "square-l2": 12.0,
    "boundary": 10.0,
    "hopskipjump": 10.0,
    "blended-uniform": 100.0,
    "salt-and-pepper": 100.0,
}


def check_bounded(name: str) -> None:
    """At eps = the median minimum: every example with d <= eps / factor fooled, none with d > eps."""
    model, x, y, dist = linear_case()
    norm = attacks.make(name).norm
    d = dist[norm]
    factor = GRADIENT_FREE.get(name, 1.1)
    eps = d.median().item() * (factor if name in GRADIENT_FREE else 1.0)
    out = attacks.run(model, name, x, y, epsilons=[eps], options=OPTIONS.get(name))
    reachable = d <= eps / factor
    assert reachable.sum() >= 10, "the case must hold examples the attack can reach"
    assert out.fooled[0][reachable].all(), f"{name} missed {int((~out.fooled[0][reachable]).sum())} reachable examples"
    assert not out.fooled[0][d > eps].any(), f"{name} fooled examples beyond eps: the budget is not respected"
    size = (out.linf if norm == "Linf" else out.l2)[0][out.fooled[0]]
    assert (size <= eps * (1 + 1e-4)).all()


def check_minimal(name: str) -> None:
    """Unbounded minimization attacks find every example's adversarial within MINIMAL[name] of d."""
    model, x, y, dist = linear_case()
    norm = attacks.make(name).norm
    out = attacks.run(model, name, x, y, epsilons=[100.0], options=OPTIONS.get(name))
    assert out.fooled[0].all(), f"{name} found no adversarial for {int((~out.fooled[0]).sum())} examples"
    ratio = (out.linf if norm == "Linf" else out.l2)[0] / dist[norm]
    assert (ratio >= 1 - 1e-3).all(), "an adversarial below the minimum distance: the judge or the model is wrong"
    assert (ratio <= MINIMAL[name]).all(), f"{name}: sizes up to {ratio.max():.2f}x the minimum"


def check_blur() -> None:
    """Blurring removes a checkerboard: the blur attack must fool every example, with an L2 size at
    least the minimum (|s| / ||w||) and at most the whole pattern's."""
    checker = (torch.arange(6)[:, None] + torch.arange(6)[None, :]) % 2 * 2.0 - 1.0
    pattern = checker.expand(*SHAPE).clone()
    amplitude = torch.linspace(0.05, 0.15, 10)
    x = 0.5 + amplitude.view(-1, 1, 1, 1) * pattern
    # s = (x - 0.5).pattern - threshold: class 1 while enough of the pattern is left, 0 once blurred away
    model = Linear3(pattern.flatten(), -0.5 * pattern.sum().item() - 0.02 * D).eval()
    y = torch.ones(10, dtype=torch.long)
    s = (x - 0.5).flatten(1) @ pattern.flatten() - 0.02 * D
    out = attacks.run(model, "gaussian-blur", x, y, epsilons=[100.0])
    assert out.fooled[0].all(), "the blur attack did not blur the pattern away"
    assert (out.l2[0] >= s / pattern.norm() * (1 - 1e-3)).all()
    assert (out.l2[0] <= (x - 0.5).flatten(1).norm(dim=1) * 1.01).all()


CHECKS: dict[str, Callable[[], None]] = {
    **{name: functools.partial(check_bounded, name) for name in (*GRADIENT, *GRADIENT_FREE)},
    **{f"{name} (minimal)": functools.partial(check_minimal, name) for name in MINIMAL},
    "gaussian-blur": check_blur,
}


def test_every_registered_attack_has_a_closed_form_check() -> None:
    assert {name.split(" ")[0] for name in CHECKS} == set(attacks.names())


@pytest.mark.parametrize("check", list(CHECKS))
def test_attack_succeeds_where_the_closed_form_says(check: str) -> None:
    CHECKS[check]()


@pytest.mark.parametrize("check", list(CHECKS))
def test_a_no_op_attack_fails_the_check(check: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutation check: with every attack returning the clean input, the check must fail."""
    monkeypatch.setattr(
        attacks.Attack, "__call__", lambda self, module, x, y, epsilons, seed=0: [x.clone() for _ in epsilons]
    )
    with pytest.raises(AssertionError):
        CHECKS[check]()
