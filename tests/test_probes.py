"""M1 and M2 against independent references: closed forms for a softmax-linear model and
torch.autograd.functional.hessian for a small CNN; the Lanczos solver's accuracy and budget."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_bl.evaluation import probes


def softmax_linear(seed: int = 0, d: int = 12, k: int = 4) -> nn.Sequential:
    torch.manual_seed(seed)
    linear = nn.Linear(d, k).double()
    with torch.no_grad():
        linear.weight.mul_(3.0)
    return nn.Sequential(nn.Flatten(), linear)


def analytic(model: nn.Sequential, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M1, M2) of p_y(Wx + b) from the closed-form gradient W^T p_y (e_y - p) and Hessian
    W^T p_y [(e_y - p)(e_y - p)^T - diag(p) + p p^T] W."""
    linear = model[1]
    assert isinstance(linear, nn.Linear)
    w, b = linear.weight, linear.bias
    m1, m2 = [], []
    for xi, yi in zip(x.flatten(1), target):
        p = (w @ xi + b).softmax(0)
        e = torch.nn.functional.one_hot(yi, len(p)).double() - p
        m1.append((w.T @ (p[yi] * e)).norm())
        hessian = w.T @ (p[yi] * (torch.outer(e, e) - torch.diag(p) + torch.outer(p, p))) @ w
        eigenvalues = torch.linalg.eigvalsh(hessian)
        m2.append(eigenvalues[eigenvalues.abs().argmax()])
    return torch.stack(m1), torch.stack(m2)


@pytest.mark.parametrize("given_target", [False, True])
def test_softmax_linear_matches_closed_form(given_target: bool) -> None:
    model = softmax_linear()
    x = torch.rand(6, 1, 3, 4, dtype=torch.float64)
    predicted = model(x).argmax(1)
    target = (predicted + 1) % 4 if given_target else None
    m1_ref, m2_ref = analytic(model, x, predicted if target is None else target)
    torch.testing.assert_close(probes.gradient_norm(model, x, target), m1_ref, rtol=1e-10, atol=1e-12)
    m2 = probes.hessian_top_eigenvalue(model, x, target, iters=12, tol=1e-9)
    torch.testing.assert_close(m2, m2_ref, rtol=1e-7, atol=1e-12)


def small_cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.Softplus(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(16, 5),
    ).double()


def reference_objective(logits: torch.Tensor, label: torch.Tensor, objective: str) -> torch.Tensor:
    """f_y written out from its definition for one example's logits."""
    if objective == "confidence":
        return logits.softmax(-1)[label]
    if objective == "ce":
        return -logits.log_softmax(-1)[label]
    return logits[label] - torch.cat([logits[:label], logits[label + 1 :]]).max()


def exact_probes(
    model: nn.Module, x: torch.Tensor, objective: str = "confidence", target: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """M1 and M2 from the full Jacobian and Hessian that torch.autograd.functional forms."""
    m1, m2 = [], []
    for i, xi in enumerate(x):
        label = model(xi[None]).argmax() if target is None else target[i]
        f = lambda z: reference_objective(model(z.view(1, *xi.shape))[0], label, objective)
        m1.append(torch.autograd.functional.jacobian(f, xi.flatten()).norm())
        eigenvalues = torch.linalg.eigvalsh(torch.autograd.functional.hessian(f, xi.flatten()))
        m2.append(eigenvalues[eigenvalues.abs().argmax()])
    return torch.stack(m1), torch.stack(m2)


def test_small_cnn_matches_autograd_hessian() -> None:
    model = small_cnn()
    x = torch.rand(4, 2, 6, 6, dtype=torch.float64)
    m1_ref, m2_ref = exact_probes(model, x)
    torch.testing.assert_close(probes.gradient_norm(model, x), m1_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        probes.hessian_top_eigenvalue(model, x, iters=72, tol=1e-10), m2_ref, rtol=1e-7, atol=1e-12
    )


@pytest.mark.parametrize("objective", ["confidence", "ce", "margin"])
@pytest.mark.parametrize("given_target", [False, True])
def test_every_objective_matches_autograd_hessian(objective: str, given_target: bool) -> None:
    """Cross-entropy at the original or adversarial label and the logit margin, like the confidence,
    give the M1 and M2 of the full Jacobian and Hessian (on a plain and a band-limited CNN)."""
    from robustbench_bl.spectral import bandlimit

    for model in (small_cnn(), bandlimit(small_cnn(), compress_rate=0.5)):
        x = torch.rand(3, 2, 6, 6, dtype=torch.float64)
        target = (model(x).argmax(1) + 1) % 5 if given_target else None
        m1_ref, m2_ref = exact_probes(model, x, objective, target)
        m1 = probes.gradient_norm(model, x, target, objective=objective)
        torch.testing.assert_close(m1, m1_ref, rtol=1e-10, atol=1e-12)
        m2 = probes.hessian_top_eigenvalue(model, x, target, iters=72, tol=1e-10, objective=objective)
        torch.testing.assert_close(m2, m2_ref, rtol=1e-7, atol=1e-10)
    with pytest.raises(ValueError, match="objective"):
        probes.gradient_norm(model, x, objective="loss")


def test_default_budget_is_within_one_percent_in_at_most_50_products() -> None:
    model = small_cnn()
    x = torch.rand(4, 2, 6, 6, dtype=torch.float64)
    _, m2_ref = exact_probes(model, x)
    hvp, leaf = probes.hessian_operator(model, x)
    values, products = probes.top_eigenvalue(hvp, torch.randn(leaf.flatten(1).shape, dtype=torch.float64), 50, 1e-3)
    assert products <= 50
    assert ((values - m2_ref).abs() <= 0.01 * m2_ref.abs()).all()


def test_batched_equals_one_at_a_time_and_model_mode_is_restored() -> None:
    model = small_cnn().train()
    x = torch.rand(5, 2, 6, 6, dtype=torch.float64)
    together = probes.hessian_top_eigenvalue(model, x, tol=1e-9, iters=72)
    alone = probes.hessian_top_eigenvalue(model, x, tol=1e-9, iters=72, batch_size=1)
    torch.testing.assert_close(together, alone, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(probes.gradient_norm(model, x, batch_size=2), probes.gradient_norm(model, x))
    assert model.training


def test_taylor_bound() -> None:
    bound = probes.taylor_bound(torch.tensor([1.0, 2.0]), torch.tensor([4.0, -4.0]), 0.5)
    torch.testing.assert_close(bound, torch.tensor([0.5 + 0.5, 1.0 + 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="distortion"):
        probes.taylor_bound(1.0, 1.0, -0.1)


def test_bad_input() -> None:
    model = softmax_linear()
    x = torch.rand(3, 1, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"target must hold labels in \[0, 3\]"):
        probes.gradient_norm(model, x, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="one label per example"):
        probes.hessian_top_eigenvalue(model, x, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer labels"):
        probes.gradient_norm(model, x, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        probes.gradient_norm(model, x + 2)
    with pytest.raises(ValueError, match="iters"):
        probes.hessian_top_eigenvalue(model, x, iters=0)


def test_band_limited_cnn_matches_autograd_hessian() -> None:
    """M1 and M2 through band-limited convolutions (their backward is differentiable again):
    the Lanczos estimate equals the eigenvalue of the full Hessian that autograd forms."""
    from robustbench_bl.spectral import bandlimit

    torch.manual_seed(0)
    model = bandlimit(small_cnn(), compress_rate=0.5)
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64)
    m1_ref, m2_ref = exact_probes(model, x)
    assert (m2_ref.abs() > 1e-6).all()
    torch.testing.assert_close(probes.gradient_norm(model, x), m1_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        probes.hessian_top_eigenvalue(model, x, iters=72, tol=1e-10), m2_ref, rtol=1e-7, atol=1e-12
    )
