"""Instability probes around an input: the gradient norm M1 and the top input-Hessian eigenvalue M2.

Both are of f_y(x) for one of several objectives (`OBJECTIVES`): the softmax confidence of class y
(the default), the cross-entropy at y (the second paper's code, with y the original or the
adversarial label) or the logit margin of y; y is the predicted class unless given. The second
seed finds them larger around adversarial examples than around natural ones. M2 uses Hessian-vector
products (double backward) and batched Lanczos; the Hessian itself is never formed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from robustbench_bl.models.common import eval_mode, placement, run_model
from robustbench_bl.validation import check_choice, check_images, check_labels, check_positive_int, check_range

#: A batched matrix-vector product: N x D vectors in, N x D products out (one matrix per row).
MatVec = Callable[[Tensor], Tensor]


#: What f_y(x) is: softmax probability of y, cross-entropy -log p_y, or logit margin z_y - max_{j != y} z_j.
OBJECTIVES = ("confidence", "ce", "margin")


def _objective(model: nn.Module, x: Tensor, target: Tensor | None, objective: str = "confidence") -> Tensor:
    """f_y(x) per example for `objective`, y the target (or predicted) class, differentiable in x."""
    check_choice(objective, "objective", OBJECTIVES)
    logits = run_model(model, x)
    if target is None:
        target = logits.argmax(-1)
    else:
        target = check_labels(target, len(x), logits.shape[-1], "target").to(x.device)
    if objective == "confidence":
        return logits.softmax(-1).gather(1, target[:, None]).squeeze(1)
    if objective == "ce":
        return torch.nn.functional.cross_entropy(logits, target, reduction="none")
    own = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, target[:, None], float("-inf"))
    return own - others.max(-1).values


def _leaf(model: nn.Module, x: object) -> Tensor:
    """A fresh leaf copy of checked images, in the dtype and on the device of the model's parameters."""
    device, dtype = placement(model)
    return check_images(x, "x").to(device=device, dtype=dtype).detach().clone().requires_grad_(True)


def gradient_norm(
    model: nn.Module, x: Tensor, target: Tensor | None = None, batch_size: int = 256, objective: str = "confidence"
) -> Tensor:
    """M1 per example: ||grad_x f_y(x)||_2, f_y the `objective` (default: softmax confidence) of the
    predicted (or given) class.

    Examples are independent in eval mode, so the gradient of the batch sum is every example's own.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    leaf = _leaf(model, x)
    if target is not None:
        check_labels(target, len(leaf), None, "target")
    out = []
    with eval_mode(model):
        for start in range(0, len(leaf), batch_size):
            chunk = leaf[start : start + batch_size].detach().requires_grad_(True)
            goal = None if target is None else target[start : start + batch_size]
            (grad,) = torch.autograd.grad(_objective(model, chunk, goal, objective).sum(), chunk)
            out.append(grad.flatten(1).norm(dim=1))
    return torch.cat(out) if out else leaf.new_zeros(0)


def check_twice_differentiable(model: nn.Module) -> None:
    """Refuse band-limited layers pinned to the CuPy backend: its fused kernels have no second
    derivative (the torch backend's backward is itself differentiable), and M2 needs one."""
    from robustbench_bl.spectral.layers import BAND_LIMITED

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    pinned = [name for name, m in model.named_modules() if isinstance(m, BAND_LIMITED) and m.backend == "cupy"]
    if pinned:
        raise ValueError(
            f"model has band-limited convolutions on backend='cupy' ({', '.join(pinned[:3])}"
            f"{', ...' if len(pinned) > 3 else ''}), whose kernels have no second derivative, and M2 needs one; "
            "set backend='torch' on them (bandlimit(model, ..., backend='torch')) to measure M2"
        )


def hessian_operator(
    model: nn.Module, x: Tensor, target: Tensor | None = None, objective: str = "confidence"
) -> tuple[MatVec, Tensor]:
    """(hvp, leaf): hvp(V) returns H_i v_i for every example i, H_i the input Hessian of f_y at x_i.

    The first-order graph is built once with create_graph=True; each product is then one backward
    pass through it (double backward). V and the products are N x D, D the flattened input size.
    The model should stay in eval mode while hvp is in use.
    """
    check_twice_differentiable(model)
    leaf = _leaf(model, x)
    (grad,) = torch.autograd.grad(_objective(model, leaf, target, objective).sum(), leaf, create_graph=True)

    def hvp(v: Tensor) -> Tensor:
        if not grad.requires_grad:  # f is linear in x (a logit margin of a linear model): the Hessian is 0
            return torch.zeros_like(v)
        (product,) = torch.autograd.grad(grad, leaf, grad_outputs=v.view_as(leaf), retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if product is None else product.flatten(1)

    return hvp, leaf


def top_eigenvalue(matvec: MatVec, start: Tensor, iters: int = 50, tol: float = 1e-3) -> tuple[Tensor, int]:
    """Eigenvalue of largest magnitude of N symmetric operators at once, by Lanczos: (values (N,), products).

    `start` (N x D) holds the starting vectors. Lanczos with full reorthogonalization builds one
    tridiagonal matrix T per example; its extreme Ritz values converge to the extreme eigenvalues
    (both ends at once, which matters because the top eigenvalue of a confidence Hessian can be
    negative) far faster than power iteration. It stops when every example's Ritz residual
    |beta_k s_k| is at most tol * |theta|, which bounds the eigenvalue error by the same amount,
    or after `iters` products. An exhausted Krylov space (beta = 0) is exact and stays so.
    """
    iters = check_positive_int(iters, "iters")
    tol = check_range(tol, "tol", 0.0, 1.0, low_inclusive=False)
    q = start / start.norm(dim=1, keepdim=True).clamp_min(torch.finfo(start.dtype).tiny)
    basis = [q]
    alphas: list[Tensor] = []
    betas: list[Tensor] = []
    theta = start.new_zeros(len(start))
    scale = start.new_zeros(len(start))  # running max of |alpha| and beta: the operator's size seen so far
    for k in range(1, iters + 1):
        w = matvec(q)
        alphas.append((w * q).sum(1))
        stacked = torch.stack(basis, 1)  # N x k x D
        for _ in range(2):  # classical Gram-Schmidt twice: orthogonal to working precision
            w = w - torch.einsum("nk,nkd->nd", torch.einsum("nkd,nd->nk", stacked, w), stacked)
        beta = w.norm(dim=1)
        values, vectors = torch.linalg.eigh(_tridiagonal(alphas, betas))
        pick = torch.where(values[:, -1].abs() >= values[:, 0].abs(), k - 1, 0)
        rows = torch.arange(len(start), device=start.device)
        theta = values[rows, pick]
        residual = beta * vectors[rows, k - 1, pick].abs()
        if bool((residual <= tol * theta.abs()).all()):
            return theta, k
        # Where the Krylov space is exhausted, continue with zeros: T gains a decoupled zero block.
        scale = torch.maximum(scale, torch.maximum(alphas[-1].abs(), beta))
        alive = beta > 1e3 * torch.finfo(start.dtype).eps * scale
        q = torch.where(alive[:, None], w / beta.clamp_min(torch.finfo(start.dtype).tiny)[:, None], 0.0)
        betas.append(torch.where(alive, beta, 0.0))
        basis.append(q)
    return theta, iters


def _tridiagonal(alphas: list[Tensor], betas: list[Tensor]) -> Tensor:
    """N x k x k symmetric tridiagonal matrices from diagonals (k of N) and off-diagonals (k - 1 of N)."""
    t = torch.diag_embed(torch.stack(alphas, 1))
    if betas:
        off = torch.diag_embed(torch.stack(betas, 1), offset=1)
        t = t + off + off.mT
    return t


def hessian_top_eigenvalue(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None = None,
    iters: int = 50,
    tol: float = 1e-3,
    *,
    batch_size: int = 64,
    seed: int = 0,
    objective: str = "confidence",
) -> Tensor:
    """M2 per example: the eigenvalue of largest magnitude (with its sign) of the input Hessian of f_y
    (`objective`: see OBJECTIVES).

    At most `iters` Hessian-vector products per batch of `batch_size` examples; relative accuracy
    `tol` (see `top_eigenvalue`). Lanczos starts from a random vector drawn with `seed`.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_positive_int(seed, "seed", minimum=0)
    check_images(x, "x")
    if target is not None:
        check_labels(target, len(x), None, "target")
    out = []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            goal = None if target is None else target[start : start + batch_size]
            hvp, leaf = hessian_operator(model, x[start : start + batch_size], goal, objective)
            generator = torch.Generator(device=leaf.device).manual_seed(seed)
            v0 = torch.randn(leaf.flatten(1).shape, generator=generator, device=leaf.device, dtype=leaf.dtype)
            values, _ = top_eigenvalue(hvp, v0, iters, tol)
            out.append(values.detach())
    return torch.cat(out) if out else torch.zeros(0)


def taylor_bound(m1: Tensor | float, m2: Tensor | float, distortion: Tensor | float) -> Tensor:
    """delta * M1 + delta^2 * |M2| / 2: the second-order Taylor bound on how much f_y can move
    under a perturbation of L2 size delta (the channel's distortion). |M2| because the eigenvalue
    of largest magnitude may be negative and the bound is on the size of the change."""
    m1, m2, delta = (torch.as_tensor(v, dtype=torch.float64) for v in (m1, m2, distortion))
    if (delta < 0).any() or not torch.isfinite(delta).all():
        raise ValueError(f"distortion must be finite and >= 0, got {distortion!r}")
    for name, value in (("m1", m1), ("m2", m2)):
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} must be finite, got {value!r}")
    if (m1 < 0).any():
        raise ValueError(f"m1 is a gradient norm and must be >= 0, got {m1!r}")
    try:
        torch.broadcast_shapes(m1.shape, m2.shape, delta.shape)
    except RuntimeError:
        raise ValueError(
            f"m1, m2 and distortion must have one value per example (or one for all), got shapes "
            f"{tuple(m1.shape)}, {tuple(m2.shape)} and {tuple(delta.shape)}"
        ) from None
    return delta * m1 + delta**2 * m2.abs() / 2
