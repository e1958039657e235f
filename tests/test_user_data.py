"""`benchmark` on a user's own test images, against the closed form of a linear model.

A linear classifier's minimal Linf distance per example is |s| / ||w||_1 (test_attack_success),
so the protocol's robust accuracy on (x, y) given as tensors, as a torch Dataset or as a
`data.Dataset` must be the share of examples farther than eps. Bad data is one clear error.
"""

from __future__ import annotations

import pytest
import torch
from test_attack_success import linear_case
from torch.utils.data import TensorDataset

import robustbench_bl
from robustbench_bl import data

#: Small budgets: a linear model needs few steps; the decision-based attack is left nearly idle.
OPTIONS = {
    "apgd-ce-linf": {"steps": 20},
    "apgd-dlr-linf": {"steps": 20},
    "pgd-linf": {"steps": 20},
    "square-linf": {"n_queries": 50},
    "hopskipjump": {"steps": 1, "initial_gradient_eval_steps": 5, "max_gradient_eval_steps": 5},
}


def gap_eps(distance: torch.Tensor) -> float:
    """A budget in the widest relative gap between sorted minimal distances (none within 10% of it)."""
    d = distance.sort().values
    i = int((d[1:] / d[:-1]).argmax())
    eps = float((d[i] * d[i + 1]).sqrt())
    assert d[i + 1] > 1.1 * eps and d[i] < eps / 1.1
    return eps


@pytest.mark.parametrize("form", ["tensors", "torch dataset", "Dataset"])
def test_benchmark_on_your_own_images_matches_the_linear_closed_form(form: str) -> None:
    model, x, y, distance = linear_case(n=24, seed=3)
    eps = gap_eps(distance["Linf"])
    given = {
        "tensors": (x, y),
        "torch dataset": TensorDataset(x, y),
        "Dataset": data.Dataset("mine", "test", x, y, "user:mine", 3),
    }[form]
    result = robustbench_bl.benchmark(model, None, eps=eps, n=len(x), data=given, options=OPTIONS)
    assert result.row["n"] == len(x) and result.row["clean_accuracy"] == 1.0
    assert result.robust_accuracy == pytest.approx((distance["Linf"] > eps).float().mean().item())
    assert 0 < result.robust_accuracy < 1  # the budget splits the examples: the test can fail both ways


def test_a_subset_of_your_images_is_class_balanced_and_seeded() -> None:
    _, x, y, _ = linear_case(n=40, seed=1)
    a, b = data.user_data((x, y)).at_most(10, seed=5), data.user_data((x, y)).at_most(10, seed=5)
    assert torch.equal(a.x, b.x) and abs(int(a.y.sum()) - 5) <= 1


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ([1, 2], TypeError, "data must be an (x, y) pair of tensors"),
        (
            (torch.rand(4, 3, 8, 8) * 2, torch.zeros(4, dtype=torch.long)),
            ValueError,
            "data's images must hold values in [0, 1]",
        ),
        ((torch.rand(4, 3, 8, 8), torch.zeros(3, dtype=torch.long)), ValueError, "data's labels must be a 1-D tensor"),
        ((torch.rand(4, 3, 8, 8), torch.zeros(4)), TypeError, "data's labels must hold integer labels"),
        ((torch.rand(4, 3, 8, 8), -torch.ones(4, dtype=torch.long)), ValueError, "data's labels must be >= 0"),
        ((torch.rand(0, 3, 8, 8), torch.zeros(0, dtype=torch.long)), ValueError, "data holds no examples"),
        (TensorDataset(torch.rand(0, 3, 8, 8), torch.zeros(0)), ValueError, "data holds no examples"),
        (TensorDataset(torch.rand(2, 3, 8, 8)), TypeError, "data[0] must be an (image tensor, label) pair"),
    ],
)
def test_bad_user_data_is_one_clear_error(given: object, error: type[Exception], message: str) -> None:
    with pytest.raises(
        error, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    ):
        data.user_data(given)
