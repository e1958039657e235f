"""The second paper's PGD (Foolbox 2's epsilon search) against a linear model whose minimal Linf
distance to the decision boundary is known in closed form: |w . (x - 0.5)| / ||w||_1."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_bl import attacks
from robustbench_bl.attacks.minimal import minimal_perturbations
from robustbench_bl.attacks.minimal_pgd import Search, minimal_pgd, pgd_run

#: A checkerboard of +1 / -1 weights over 3 x 8 x 8 pixels.
SIGNS = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0).expand(3, 8, 8).flatten()


def checkerboard(scale: float = 20 / SIGNS.numel()) -> nn.Module:
    """Class 1 when w . (x - 0.5) > 0 for w = `scale` x the checkerboard: moving every pixel by e along
    sign(w) moves the score by e ||w||_1, so the minimal Linf distance is |w . (x - 0.5)| / ||w||_1
    (the small scale keeps the softmax from saturating, which would zero the cross-entropy's gradient)."""
    linear = nn.Linear(SIGNS.numel(), 2)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[1] = scale * SIGNS
        linear.bias[1] = -0.5 * scale * SIGNS.sum()
    return nn.Sequential(nn.Flatten(), linear).eval()


def images(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Images 0.5 +/- 0.01..0.2 along the checkerboard plus small noise (the box never binds; the first
    try at 0.3 fools all), labelled by the model."""
    torch.manual_seed(0)
    offsets = torch.cat([torch.linspace(-0.2, -0.01, n // 2), torch.linspace(0.01, 0.2, n - n // 2)])
    x = 0.5 + 0.02 * (torch.rand(n, SIGNS.numel()) - 0.5) + offsets[:, None] * SIGNS
    x = x.view(n, 3, 8, 8)
    return x, checkerboard()(x).argmax(1)


def truth(x: torch.Tensor) -> torch.Tensor:
    return ((x.flatten(1) - 0.5) @ SIGNS).abs() / SIGNS.abs().sum()


@pytest.mark.parametrize("start", [0.3, 0.001])  # the bisection alone; the exponential search first
def test_the_epsilon_found_is_the_closed_form_minimal_distance(start: float) -> None:
    x, y = images()
    eps, adversarial = minimal_pgd(checkerboard(), x, y, Search(epsilon=start))
    # 20 bisection steps from at most 0.3 x 1.5^k: within 3e-7 x 1.5^k above the truth
    assert torch.allclose(eps, truth(x), atol=2e-5)
    assert (eps >= truth(x) - 1e-6).all()
    assert (checkerboard()(adversarial).argmax(1) != y).all()
    assert ((adversarial - x).abs().flatten(1).amax(1) <= eps + 1e-6).all()
    assert adversarial.min() >= 0 and adversarial.max() <= 1


def test_misclassified_examples_need_nothing_and_a_hopeless_search_returns_inf() -> None:
    x, y = images(4)
    y[0] = 1 - y[0]
    eps, adversarial = minimal_pgd(checkerboard(), x, y, Search(epsilon=1e-4, tries=3))
    assert eps[0] == 0 and torch.equal(adversarial[0], x[0])
    # three tries reach 1e-4 x 1.5^2 < 0.01: nothing else fools, so inf and the clean input
    assert torch.isinf(eps[1:]).all() and torch.equal(adversarial[1:], x[1:])


def test_a_run_returns_the_first_fooling_iterate() -> None:
    """With steps of eps / 4 a run at 2x the distance fools after 2 steps (mean moved by eps / 2), not
    at the epsilon-ball corner it would reach by the end."""
    x, y = images(2)
    d = truth(x)
    fooled, found = pgd_run(checkerboard(), x, y, 2.05 * d, Search(rel_stepsize=0.25, steps=40))
    assert fooled.all()
    moved = (found - x).abs().flatten(1).amax(1)
    assert torch.allclose(moved, 2 * 0.25 * 2.05 * d, rtol=1e-5)


def test_as_a_registered_minimization_attack_sizes_are_the_closed_form() -> None:
    x, y = images()
    attack = attacks.make("pgd-linf-minimal")
    assert attack.minimizes and attack.norm == "Linf" and attack.options["steps"] == 40
    rows = pd.DataFrame(minimal_perturbations(checkerboard(), "pgd-linf-minimal", x, y))
    assert set(rows.metric) == {"min_linf"} and rows.fooled.all()
    assert rows.value.to_numpy() == pytest.approx(truth(x).numpy(), abs=2e-5)
    clipped = attack(checkerboard(), x, y, [0.05, None])
    assert ((clipped[0] - x).abs().amax() <= 0.05 + 1e-7) and torch.equal(
        clipped[1], minimal_pgd(checkerboard(), x, y)[1]
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"steps": 0}, "steps"),
        ({"tries": -1}, "tries"),
        ({"rel_stepsize": 0}, "rel_stepsize"),
        ({"grow": 2}, "unknown"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        attacks.make("pgd-linf-minimal", **options)
    assert math.isfinite(Search().epsilon)
