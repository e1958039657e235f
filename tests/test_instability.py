"""Examples of each kind and their M1/M2 rows (every definition of f) on a small softmax-linear
model; the paired comparison counts only adversarials that fool, uses |M2| and pairs each example
with its own natural image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_bl.evaluation import probes
from robustbench_bl.studies.instability import (
    FS,
    KINDS,
    condition,
    correctly_classified,
    examples,
    finding,
    log_ratios,
    probe_rows,
)

SHAPE = (3, 8, 8)


def model_and_data(n: int = 8) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 4)).eval()
    x = torch.rand(n, *SHAPE)
    return model, x, model(x).argmax(1).detach()


def test_correctly_classified_keeps_the_first_n_right() -> None:
    model, x, y = model_and_data()
    y[1] = (y[1] + 1) % 4
    kept_x, kept_y = correctly_classified(model, x, y, 3)
    assert torch.equal(kept_x, x[[0, 2, 3]]) and torch.equal(kept_y, y[[0, 2, 3]])
    every_x, _ = correctly_classified(model, x, y)  # n=None: all the right ones
    assert len(every_x) == len(x) - 1 and torch.equal(every_x[:3], x[[0, 2, 3]])


def test_examples_of_each_kind() -> None:
    model, x, y = model_and_data()
    options = {"pgd-linf": {"steps": 5}, "cw-l2": {"steps": 20, "binary_search_steps": 2}}
    made = {
        kind: examples(model, kind, x, y, eps=0.02, sigma=0.05, seed=1, options=options.get(kind)) for kind in KINDS
    }
    assert made["natural"] is x
    assert (made["pgd-linf"] - x).abs().max() <= 0.02 + 1e-6
    assert (model(made["cw-l2"]).argmax(1) != y).float().mean() > 0.5
    assert torch.equal(made["gauss"], examples(model, "gauss", x, y, eps=0.02, sigma=0.05, seed=1))
    assert not torch.equal(made["gauss"], x) and made["gauss"].min() >= 0 and made["gauss"].max() <= 1
    with pytest.raises(ValueError, match="kind"):
        examples(model, "fgsm", x, y, eps=0.02, sigma=0.05, seed=1)


def test_probe_rows_hold_m1_m2_and_the_taylor_bound_for_every_f() -> None:
    model, x, y = model_and_data(4)
    noisy = (x + 0.1).clamp(0, 1)
    rows = pd.DataFrame(probe_rows(model, noisy, x, y, delta=0.5, iters=20))
    assert len(rows) == 3 * len(FS) * len(x)
    predicted = model(noisy).argmax(1)
    exact = model.double()
    for f, objective, label in FS:
        wide = rows[rows.f == f].pivot(index="example", columns="metric", values="value")
        target = y if label == "original" else predicted
        expected_m1 = probes.gradient_norm(exact, noisy.double(), target, objective=objective)
        assert torch.allclose(torch.tensor(wide.m1.to_numpy()), expected_m1)
        assert torch.allclose(
            torch.tensor(wide.taylor_bound.to_numpy()), torch.tensor(0.5 * wide.m1 + 0.125 * wide.m2.abs())
        )
    distance = rows.groupby("example").perturbation_l2.first()
    assert torch.allclose(torch.tensor(distance.to_numpy()), (noisy - x).flatten(1).norm(dim=1).double(), atol=1e-6)


def test_condition_names_the_pgd_budget() -> None:
    assert condition("pgd-linf", 8 / 255) == "pgd-linf 8/255"
    assert condition("cw-l2") == "cw-l2"
    with pytest.raises(ValueError, match="kind"):
        condition("fgsm")


def synthetic(adversarial_m1: tuple[float, ...], fooled: tuple[bool, ...]) -> pd.DataFrame:
    """Natural M1 1, 2, 4 and M2 -1, -2, -4; C&W M1 as given, M2 = -2 x natural (|M2| doubles)."""
    rows = []
    for f, _, _ in FS:
        for i, (nat, adv, wrong) in enumerate(zip((1.0, 2.0, 4.0), adversarial_m1, fooled)):
            common = {"model_key": "k", "train_compress": 0.0, "f": f, "example": i}
            rows += [
                {
                    **common,
                    "kind": "natural",
                    "condition": "natural",
                    "misclassified": False,
                    "metric": "m1",
                    "value": nat,
                },
                {
                    **common,
                    "kind": "natural",
                    "condition": "natural",
                    "misclassified": False,
                    "metric": "m2",
                    "value": -nat,
                },
                {**common, "kind": "cw-l2", "condition": "cw-l2", "misclassified": wrong, "metric": "m1", "value": adv},
                {
                    **common,
                    "kind": "cw-l2",
                    "condition": "cw-l2",
                    "misclassified": wrong,
                    "metric": "m2",
                    "value": -2 * nat,
                },
            ]
    return pd.DataFrame(rows)


def test_log_ratios_pair_each_fooling_adversarial_with_its_natural_image() -> None:
    table = synthetic((3.0, 2.0, 400.0), (True, True, False))  # the third does not fool: left out
    assert log_ratios(table, "k", "cw-l2", "ce-original", "m1") == pytest.approx(np.log([3.0, 1.0]))
    assert log_ratios(table, "k", "cw-l2", "margin", "m2") == pytest.approx(np.log([2.0, 2.0]))


@pytest.mark.parametrize(("m1", "word"), [((3.0, 6.0, 12.0), "HOLDS"), ((0.5, 1.0, 2.0), "DOES NOT HOLD")])
def test_finding_judges_the_paired_log_ratio(m1: tuple[float, ...], word: str) -> None:
    text = str(finding(synthetic(m1, (True, True, True))))
    assert text.startswith(f"Finding ('adversarial examples are less stable: larger M1 and M2') {word}")
    assert "cw-l2, M1 of f=confidence" in text.splitlines()[1]  # the thesis's f and its code's, both judged
    assert any("cw-l2, M1 of f=ce-original" in line and "needs" in line for line in text.splitlines()[1:5])
