"""Minimal perturbations of decision-based attacks against a linear model whose true minimal L2
distance is known in closed form, and the paired share of larger perturbations."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_bl import attacks
from robustbench_bl.attacks.minimal import epsilons, larger_share, minimal_perturbations

SHAPE = (3, 8, 8)
D = 3 * 8 * 8


def mean_threshold(margin: float = 20.0) -> nn.Module:
    """Class 1 when the mean pixel exceeds 0.5, else 0: the L2 distance to the boundary is |mean - 0.5| sqrt(D)."""
    linear = nn.Linear(D, 2)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[1].fill_(margin / D)
        linear.bias[1] = -margin / 2
    return nn.Sequential(nn.Flatten(), linear).eval()


def images(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with means spread around 0.5, labelled by the threshold (the last one mislabelled)."""
    torch.manual_seed(0)
    offsets = torch.linspace(-0.2, 0.2, n)
    x = (0.5 + 0.1 * (torch.rand(n, *SHAPE) - 0.5) + offsets[:, None, None, None]).clamp(0, 1)
    y = (x.flatten(1).mean(1) > 0.5).long()
    y[-1] = 1 - y[-1]
    return x, y


def test_epsilons_leave_minimization_attacks_unclipped_and_grid_fixed_ones() -> None:
    x = torch.rand(2, *SHAPE)
    assert epsilons(attacks.make("boundary"), x, 16) == (math.sqrt(D),)
    grid = epsilons(attacks.make("additive-gaussian"), x, 5)
    assert len(grid) == 5 and grid[-1] == pytest.approx(math.sqrt(D)) and grid[0] == pytest.approx(math.sqrt(D) / 1000)
    assert epsilons(attacks.make("additive-uniform"), x, 3)[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "attack, options",
    [
        ("boundary", {"steps": 50}),
        ("additive-gaussian", {"repeats": 10}),
        ("blended-uniform", {"directions": 20, "steps": 20}),
    ],
)
def test_sizes_are_never_below_the_true_minimal_distance(attack: str, options: dict[str, int]) -> None:
    x, y = images()
    rows = pd.DataFrame(minimal_perturbations(mean_threshold(), attack, x, y, seed=0, points=24, options=options))
    assert len(rows) == len(x) and list(rows.example) == list(range(len(x)))
    assert set(rows.metric) == {"min_l2"}
    assert not rows.clean_correct.iloc[-1] and not rows.fooled.iloc[-1] and math.isnan(rows.value.iloc[-1])
    found = rows[rows.fooled]
    assert len(found) >= 3 and found.value.notna().all()
    truth = ((x.flatten(1).mean(1) - 0.5).abs() * math.sqrt(D))[found.example.to_list()]
    assert (torch.tensor(found.value.to_numpy(), dtype=torch.float32) >= truth * (1 - 1e-4)).all()


def test_larger_share_pairs_examples_both_models_classify_right() -> None:
    def rows(rate: float, sizes: list[float], correct: list[bool]) -> list[dict[str, object]]:
        return [
            {
                "attack": "boundary",
                "train_compress": rate,
                "example": i,
                "clean_correct": c,
                "fooled": not math.isnan(s),
                "value": s,
            }
            for i, (s, c) in enumerate(zip(sizes, correct))
        ]

    nan = math.nan
    table = pd.DataFrame(
        rows(0.0, [1.0, 2.0, 3.0, nan, 1.0], [True] * 5)
        + rows(0.5, [2.0, 1.0, 4.0, nan, 9.0], [True, True, True, True, False])
    )
    (share,) = larger_share(table).itertuples()
    assert share.pairs == 4  # the last example: the band-limited model gets it wrong
    assert share.ties == pytest.approx(0.25)  # neither fooled: both need more than any size found
    assert share.larger_share == pytest.approx((2 + 0.5) / 4)
    assert (share.larger, share.decided) == (2, 3)  # the sign test leaves the tie out
    assert share.median_reference == pytest.approx(2.5)
