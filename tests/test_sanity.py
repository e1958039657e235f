"""The sanity checks and the binarization test run by `benchmark`: every one passes on a sound
evaluation of a linear model (whose minimal distances are known in closed form) and fails on an
evaluation broken the way the check is meant to catch: an attack that gives up at larger budgets,
a no-op attack, an attack run for one step, gradient attacks that see no gradient."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from test_attack_success import linear_case
from test_own_model import OPTIONS, gap_eps

import robustbench_bl
from robustbench_bl import attacks
from robustbench_bl.evaluation import sanity

Original = attacks.Attack.__call__


def checks(name: str, scale: float = 1.0, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """The benchmark's check results on the linear case at `scale` x a budget that fools about half
    of the examples, by name (`checks` limits what runs)."""
    model, x, y, distance = linear_case(n=24, seed=3)
    eps = scale * gap_eps(distance["Linf"])
    options = {**OPTIONS, **kwargs.pop("options", {})}
    result = robustbench_bl.benchmark(model, None, eps=eps, n=24, data=(x, y), options=options, checks=[name], **kwargs)
    found = {c["name"]: c for c in json.loads(result.row["checks"])}
    assert result.row["trustworthy"] == (found[name]["passed"] is not False)
    return found


def patched(monkeypatch: pytest.MonkeyPatch, change: Callable[..., list[torch.Tensor] | None]) -> None:
    """Every attack goes through `change(self, x, epsilons, adversarials)`; None keeps the attack's own answer."""

    def call(self: attacks.Attack, module: Any, x: torch.Tensor, y: torch.Tensor, epsilons: Any, seed: int = 0) -> Any:
        found = Original(self, module, x, y, epsilons, seed)
        return change(self, x, epsilons, found) or found

    monkeypatch.setattr(attacks.Attack, "__call__", call)


@pytest.mark.parametrize("name", sanity.CHECKS)
def test_every_check_passes_on_a_sound_evaluation(name: str) -> None:
    result = checks(name)[name]
    assert result["passed"] is True, result


def test_monotone_fails_when_the_attack_gives_up_at_larger_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, _, distance = linear_case(n=24, seed=3)
    eps = gap_eps(distance["Linf"])
    patched(
        monkeypatch,
        lambda self, x, epsilons, found: [x.clone() if e > 1.5 * eps else a for e, a in zip(epsilons, found)],
    )
    assert checks("monotone")["monotone"]["passed"] is False


def test_unbounded_and_noise_fail_for_a_no_op_attack(monkeypatch: pytest.MonkeyPatch) -> None:
    patched(monkeypatch, lambda self, x, epsilons, found: [x.clone() for _ in epsilons])
    assert checks("unbounded")["unbounded"]["passed"] is False
    # random directions are ~sqrt(D) weaker than the best one: at 20x the budget noise fools some examples
    assert checks("noise", scale=20)["noise"]["passed"] is False


def test_iterative_fails_when_the_iterative_attacks_are_weaker_than_one_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """PGD cut to one step of eps/4 is weaker than FGSM's full step; APGD (whose first step is
    already 2 eps) is made blind, and Square cut short, so nothing covers for it."""
    patched(
        monkeypatch, lambda self, x, epsilons, found: [x.clone() for _ in epsilons] if "apgd" in self.name else None
    )
    short = {"pgd-linf": {"steps": 1}, "square-linf": {"n_queries": 1}}
    assert checks("iterative", options=short)["iterative"]["passed"] is False


def test_convergence_fails_when_more_steps_find_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """An evaluation that had not converged: at the suite's 20 steps the attacks find nothing, at
    the check's 40 they work (a linear model converges in one step, so the failure is simulated)."""

    def unconverged(self: attacks.Attack, x: torch.Tensor, epsilons: Any, found: Any) -> list[torch.Tensor] | None:
        return (
            [x.clone() for _ in epsilons]
            if self.options.get("steps", 0) == 20 or self.kind != attacks.GRADIENT
            else None
        )

    patched(monkeypatch, unconverged)
    assert checks("convergence")["convergence"]["passed"] is False


def test_gradient_free_and_transfer_fail_when_the_gradient_attacks_see_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradient attacks crafted through the evaluation's threat model return the clean input (as they
    would behind a gradient-masking channel attacked without BPDA); Square and transfer still work."""

    transferring = {"now": False}  # whether the attack running is crafted on the bare model

    def masked(
        self: attacks.Attack, x: torch.Tensor, epsilons: Any, found: list[torch.Tensor]
    ) -> list[torch.Tensor] | None:
        blind = self.kind == attacks.GRADIENT and not transferring["now"]
        return [x.clone() for _ in epsilons] if blind else None

    original_run = attacks.run

    def run(*args: Any, **kwargs: Any) -> attacks.Outcome:
        transferring["now"] = (args[4] if len(args) > 4 else kwargs.get("threat")) == "nonadaptive"
        return original_run(*args, **kwargs)

    patched(monkeypatch, masked)
    monkeypatch.setattr(attacks, "run", run)
    options = {"square-linf": {"n_queries": 500}}
    assert checks("gradient-free", options=options)["gradient-free"]["passed"] is False
    assert checks("transfer")["transfer"]["passed"] is False


def test_the_binarization_test_fails_for_a_weak_attack_and_passes_for_a_strong_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    strong = checks("binarization")["binarization"]
    assert strong["passed"] is True and strong["evidence"]["tested"] >= 15
    patched(monkeypatch, lambda self, x, epsilons, found: [x.clone() for _ in epsilons])  # an attack that finds nothing
    weak = checks("binarization")["binarization"]
    assert weak["passed"] is False and weak["evidence"]["found"] == 0


def test_a_readout_separates_its_points() -> None:
    generator = torch.Generator().manual_seed(0)
    inner = torch.randn(40, 5, generator=generator)
    boundary = torch.randn(1, 5, generator=generator) + 6
    readout = sanity.fit_readout(inner, boundary)
    assert (readout(inner).argmax(1) == 0).all() and readout(boundary).argmax(1).item() == 1


def test_unknown_checks_are_refused() -> None:
    model, x, y, _ = linear_case(n=4, seed=0)
    with pytest.raises(ValueError, match="checks must be one of"):
        robustbench_bl.benchmark(model, None, n=4, data=(x, y), checks=["vibes"])
