"""Projected gradient descent that keeps the best iterate: the strong default gradient attack.

Textbook PGD (and Foolbox's) returns its last iterate with a small fixed step; through BPDA and
EOT the iterates oscillate, and 40 steps of eps/30 from a random start do not even cross the
ball. This one takes `steps` steps of `step_size * eps` (halved at 1/2 and again at 3/4 of the
run), restarts with the margin (C&W) loss after the cross-entropy run on every example not yet
fooled, and returns per example the iterate with the lowest margin seen (a fooling one if any).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LOSSES = ("ce", "margin")


def margins(scores: Tensor, y: Tensor) -> Tensor:
    """s_y - max_{j != y} s_j per example: negative exactly when the scores misclassify."""
    true = scores.gather(1, y[:, None]).squeeze(1)
    other = scores.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def _loss(kind: str, scores: Tensor, y: Tensor) -> Tensor:
    """The summed loss to ascend: cross-entropy of the scores, or minus the margin."""
    if kind == "ce":
        return nn.functional.cross_entropy(scores, y, reduction="sum")
    return -margins(scores, y).sum()


def _random_start(x: Tensor, eps: float, norm: str) -> Tensor:
    """A uniform point of the Linf ball, or a point of the L2 ball in a uniform direction, drawn
    from torch's RNG (which `attacks.run` seeds)."""
    if norm == "Linf":
        noise = (torch.rand_like(x) * 2 - 1) * eps
    else:
        direction = torch.randn_like(x)
        radius = torch.rand(len(x), device=x.device, dtype=x.dtype) * eps
        noise = direction * _per_example(radius / direction.flatten(1).norm(dim=1).clamp_min(1e-12), x)
    return (x + noise).clamp(0, 1)


def _per_example(values: Tensor, like: Tensor) -> Tensor:
    """Per-example scalars (N,) shaped to broadcast over a batch like `like` (N x ...)."""
    return values.view(-1, *[1] * (like.dim() - 1))


def _project(x: Tensor, adv: Tensor, eps: float, norm: str) -> Tensor:
    """adv moved back into the eps-ball around x and into [0, 1]."""
    delta = adv - x
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        size = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * _per_example((eps / size).clamp(max=1), x)
    return (x + delta).clamp(0, 1)


def _step(grad: Tensor, norm: str) -> Tensor:
    """The ascent direction of unit size in the norm: sign for Linf, the normalized gradient for L2."""
    if norm == "Linf":
        return grad.sign()
    return grad / _per_example(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str = "Linf",
    *,
    steps: int = 100,
    step_size: float = 0.25,
    losses: tuple[str, ...] = LOSSES,
) -> Tensor:
    """Best-iterate PGD in the `norm` ball of radius `eps`: one run per loss in `losses` (later
    runs only on examples the earlier ones did not fool), each from a random start."""
    best = x.detach().clone()
    if eps == 0:
        return best
    with torch.no_grad():
        best_margin = margins(model(x), y)
    for kind in losses:
        todo = (best_margin >= 0).nonzero().squeeze(1)
        if len(todo) == 0:
            break
        xs, ys = x[todo], y[todo]
        adv = _random_start(xs, eps, norm)
        for t in range(steps + 1):
            adv.requires_grad_(True)
            scores = model(adv)
            found = margins(scores.detach(), ys)
            better = found < best_margin[todo]
            best[todo[better]] = adv.detach()[better]
            best_margin[todo[better]] = found[better]
            if t == steps:
                break
            (grad,) = torch.autograd.grad(_loss(kind, scores, ys), adv)
            halvings = (2 * t >= steps) + (4 * t >= 3 * steps)  # at 1/2 and 3/4 of the run
            size = step_size * eps * 0.5**halvings
            adv = _project(xs, adv.detach() + size * _step(grad, norm), eps, norm)
    return best
