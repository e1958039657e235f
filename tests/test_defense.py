"""Defended: smoothed scores, majority vote, abstention, certification and the Foolbox model."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch
from torch import nn

from robustbench_bl import Defended
from robustbench_bl._foolbox import import_foolbox
from robustbench_bl.channels import FFTCompression, GaussianNoise, Identity, UniformNoise
from robustbench_bl.defense import CPU_BATCH, majority
from robustbench_bl.evaluation.stats import binomial_lower

CLASSES = 4


class Constant(nn.Module):
    """Predicts class 2 whatever the input: every vote goes to it."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.0, 1.0, 3.0, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1) + 0 * x.flatten(1).sum(1, keepdim=True)


class Counting(nn.Module):
    """Wraps a model and records the batch size of every forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        return self.model(x)


class FirstPixelSign(nn.Module):
    """Class 1 if the first pixel is above 0.5, else class 0: a coin flip under noise around 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(100.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.scale * (x[:, 0, 0, 0] - 0.5)
        return torch.stack([-z, z], dim=1)


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, CLASSES)).eval()


def images(n: int = 5, seed: int = 100) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_identity_with_one_vote_is_the_bare_model():
    model, x = linear(), images()
    for defended in (Defended(model, Identity(), votes=1).eval(), Defended(model).eval()):
        labels, counts = defended.predict(x)
        torch.testing.assert_close(labels, model(x).argmax(1), rtol=0, atol=0)
        torch.testing.assert_close(counts, nn.functional.one_hot(labels, CLASSES), rtol=0, atol=0)
        torch.testing.assert_close(defended(x), model(x).log_softmax(1))


def test_forward_is_the_log_of_the_mean_softmax_over_draws():
    model, x, votes = linear(), images(), 6
    defended = Defended(model, GaussianNoise(0.2, seed=4), votes=votes).eval()
    draws = GaussianNoise(0.2, seed=4)(x.repeat(votes, 1, 1, 1))  # one chunk: the batch repeated `votes` times
    expected = model(draws).softmax(1).view(votes, len(x), CLASSES).mean(0).log()
    torch.testing.assert_close(defended(x), expected)


def test_votes_run_in_chunks_bounded_by_max_batch():
    model = Counting(linear())
    defended = Defended(model, GaussianNoise(0.1), votes=7, max_batch=6).eval()
    _, counts = defended.predict(images(3))
    assert model.batches == [6, 6, 6, 3]  # two copies of the batch per forward, then the remainder
    assert (counts.sum(1) == 7).all()


def test_a_batch_larger_than_max_batch_is_sliced_with_the_same_draws_scores_and_votes():
    """No forward pass exceeds max_batch; slicing after the channel keeps the draws, so the smoothed
    scores and the vote equal those of one unsliced forward (max_batch large enough)."""
    model = Counting(linear())
    x = images(10)
    sliced = Defended(model, GaussianNoise(0.2), votes=3, seed=5, max_batch=4).eval()
    whole = Defended(linear(), GaussianNoise(0.2), votes=3, seed=5, max_batch=30).eval()
    torch.testing.assert_close(sliced(x), whole(x))
    assert model.batches == [4, 4, 2] * 3
    torch.testing.assert_close(sliced.predict(x)[1], whole.predict(x)[1])


def test_max_batch_none_is_small_on_a_cpu() -> None:
    model = Counting(linear())
    Defended(model, GaussianNoise(0.1), votes=3).eval().predict(images(300))
    assert max(model.batches) == CPU_BATCH == 128 and sum(model.batches) == 900


def test_deterministic_channel_runs_once_in_eval_and_every_draw_in_training():
    model = Counting(linear())
    defended = Defended(model, FFTCompression(0.5), votes=5, max_batch=100)
    defended.eval().predict(images(4))
    defended.train().predict(images(4))
    assert model.batches == [4, 20]


def test_a_constant_model_gets_all_votes():
    defended = Defended(Constant(), GaussianNoise(0.3), votes=9, max_batch=10).eval()
    labels, counts = defended.predict(images(3))
    assert (labels == 2).all()
    torch.testing.assert_close(counts, torch.tensor([[0, 0, 9, 0]] * 3))


def test_ties_go_to_the_lowest_class():
    counts = torch.tensor([[0, 3, 3, 1], [2, 0, 2, 2], [0, 0, 1, 4]])
    torch.testing.assert_close(majority(counts), torch.tensor([1, 0, 3]))


@pytest.mark.parametrize("votes", [3, 5, 6, 10])
def test_predict_abstains_unless_the_binomial_test_rejects(votes):
    # All `votes` agree: the two-sided p-value of votes-vs-0 at p = 1/2 is 2 * 0.5**votes.
    alpha = 0.05
    labels, _ = Defended(Constant(), GaussianNoise(0.1), votes=votes).eval().predict(images(2), alpha=alpha)
    expected = 2 if 2 * 0.5**votes <= alpha else -1
    assert labels.tolist() == [expected, expected]


def test_certify_reproduces_the_radius_of_a_unanimous_vote():
    # n hits out of n: the Clopper-Pearson lower bound is alpha**(1/n), radius sigma * Phi^-1 of it.
    sigma, n, alpha = 0.25, 100, 0.001
    defended = Defended(Constant(), GaussianNoise(sigma, seed=0)).eval()
    labels, radii = defended.certify(images(2), n0=10, n=n, alpha=alpha)
    expected = sigma * NormalDist().inv_cdf(alpha ** (1 / n))
    assert labels.tolist() == [2, 2]
    torch.testing.assert_close(radii, torch.full((2,), expected, dtype=torch.float64))


def test_certify_abstains_on_a_coin_flip():
    x = torch.full((3, 3, 8, 8), 0.5)
    labels, radii = Defended(FirstPixelSign(), GaussianNoise(0.5), seed=1).eval().certify(x, n0=20, n=200)
    assert labels.tolist() == [-1, -1, -1] and radii.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(("hits", "n"), [(90, 100), (17, 20), (1, 30)])
def test_binomial_lower_bound_solves_the_binomial_tail_equation(hits, n):
    # Clopper-Pearson: the lower bound p solves P[Bin(n, p) >= hits] = alpha; solve it by bisection.
    alpha = 0.01

    def upper_tail(p: float) -> float:
        return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(hits, n + 1))

    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if upper_tail(mid) < alpha else (low, mid)
    assert binomial_lower(hits, n, alpha) == pytest.approx(low, abs=1e-9)
    assert binomial_lower(0, n, alpha) == 0.0


def test_same_seed_same_scores_different_seed_different_scores():
    model, x = linear(), images()
    scores = [Defended(model, GaussianNoise(0.2), votes=4, seed=s).eval()(x) for s in (1, 1, 2)]
    torch.testing.assert_close(scores[0], scores[1], rtol=0, atol=0)
    assert not torch.equal(scores[0], scores[2])


@pytest.mark.parametrize(
    "channel", [Identity(), GaussianNoise(0.05, gradient="exact"), UniformNoise(0.05, gradient="bpda")]
)
def test_foolbox_linf_pgd_runs_on_defended(channel):
    fb = import_foolbox()
    model, x = linear(), images(6)
    defended = Defended(model, channel, votes=4, seed=0).eval()
    labels = model(x).argmax(1)
    epsilon = 0.3
    _, clipped, success = fb.attacks.LinfPGD(steps=10, abs_stepsize=epsilon / 4)(
        defended.foolbox(), x, labels, epsilons=epsilon
    )
    assert ((clipped - x).abs().max() <= epsilon + 1e-6) and clipped.min() >= 0 and clipped.max() <= 1
    assert success.all(), "a linear model on 8 x 8 images falls to an L-inf ball of 0.3"


def test_certify_requires_gaussian_noise():
    with pytest.raises(TypeError, match="certify\\(\\) needs channel=GaussianNoise"):
        Defended(linear(), UniformNoise(0.1)).certify(images())


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"votes": 0}, ValueError, "votes must be >= 1"),
        ({"votes": 2.0}, TypeError, "votes must be an int"),
        ({"max_batch": 0}, ValueError, "max_batch must be >= 1"),
        ({"seed": -3}, ValueError, "seed must be >= 0"),
        ({"channel": nn.Identity()}, TypeError, "channel must be a robustbench_bl.channels.Channel"),
        ({"model": "lenet"}, TypeError, "model must be a torch.nn.Module"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, words):
    with pytest.raises(error, match=words):
        Defended(**{"model": linear(), **kwargs})


@pytest.mark.parametrize(
    ("x", "error", "words"),
    [
        (torch.rand(3, 8, 8), ValueError, "rank 4"),
        (torch.full((1, 3, 8, 8), 2.0), ValueError, r"\[0, 1\]"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int64), TypeError, "floating"),
    ],
)
def test_bad_images_are_rejected(x, error, words):
    with pytest.raises(error, match=words):
        Defended(linear(), GaussianNoise(0.1), votes=2).predict(x)


@pytest.mark.parametrize(("kwargs", "words"), [({"n": 0}, "n must be >= 1"), ({"alpha": 1.5}, "alpha must be in")])
def test_bad_certify_arguments_are_rejected(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Defended(linear(), GaussianNoise(0.1)).certify(images(), **kwargs)
