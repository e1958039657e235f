"""Examples of each kind and their M1/M2 rows on a small softmax-linear model; the comparison
counts only adversarials that fool, uses |M2| and tests against the natural examples."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_bl.evaluation import probes
from robustbench_bl.studies.instability import KINDS, compare, condition, correctly_classified, examples, probe_rows

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


def test_probe_rows_hold_m1_m2_and_the_taylor_bound() -> None:
    model, x, y = model_and_data(4)
    noisy = (x + 0.1).clamp(0, 1)
    rows = pd.DataFrame(probe_rows(model, noisy, x, y, delta=0.5, iters=20))
    assert len(rows) == 3 * len(x)
    wide = rows.pivot(index="example", columns="metric", values="value")
    exact = model.double()
    expected_m1 = probes.gradient_norm(exact, noisy.double())
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


def test_compare_counts_fooling_adversarials_and_uses_abs_m2() -> None:
    def rows(kind: str, metric: str, values: tuple[float, ...], fooled: bool = True) -> list[dict[str, object]]:
        return [
            {"kind": kind, "condition": condition(kind, 2 / 255), "metric": metric, "misclassified": fooled, "value": v}
            for v in values
        ]

    table = [row for m in ("m1", "m2", "taylor_bound") for row in rows("natural", m, (1.0, 2.0, 3.0), False)]
    table += rows("cw-l2", "m1", (10.0, 20.0, 30.0)) + rows("cw-l2", "m1", (0.0,), False)  # not adversarial: left out
    table += rows("cw-l2", "m2", (-10.0, -20.0, -30.0)) + rows("pgd-linf", "m1", (5.0,), False)
    summary = compare(pd.DataFrame(table)).set_index(["condition", "metric"])
    assert summary.loc[("cw-l2", "m1"), "n"] == 3
    assert summary.loc[("cw-l2", "m1"), "ratio_to_natural"] == pytest.approx(10.0)
    assert summary.loc[("cw-l2", "m2"), "median"] == pytest.approx(20.0)
    assert summary.loc[("cw-l2", "m1"), "p_greater"] < 0.1
    assert summary.loc[("pgd-linf 2/255", "m1"), "n"] == 0
    assert summary.loc[("natural", "m1"), "ratio_to_natural"] == 1.0
