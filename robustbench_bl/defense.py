"""The defended classifier: a lossy channel in front of a model, with a majority vote over draws.

Gives smoothed scores for attacks (EOT through forward), votes with abstention, Cohen et al.'s
certified L2 radius for Gaussian noise, and a Foolbox model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from scipy.stats import binomtest, norm
from torch import Tensor, nn

from ._foolbox import import_foolbox
from .channels import Channel, GaussianNoise, Identity
from .channels.base import SeededGenerators
from .evaluation.stats import binomial_lower
from .models.common import CPU_BATCH, placement, run_model
from .validation import check_images, check_positive_int, check_range

#: Images per forward pass when `max_batch` is None on a GPU (on a CPU: `models.common.CPU_BATCH`).
DEVICE_BATCH = 1024


class Defended(nn.Module):
    """y = f(C(x)): `channel` (default Identity) before `model`, aggregated over `votes` draws.

    The draws run as batched forwards of the batch repeated up to `max_batch` images at a time, and
    no forward pass takes more than `max_batch` images (a larger batch is sliced after the channel, so
    the draws are the same); None: 128 on a CPU, where small batches stay in cache (1.2-1.5x faster
    than 1,000 for a FastNet, benchmarks/README.md), 1024 on a GPU. `seed` makes the draws
    reproducible (it overrides the channel's own generator). A deterministic channel in eval mode
    gives identical draws, so it is run once.
    """

    def __init__(
        self,
        model: nn.Module,
        channel: Channel | None = None,
        votes: int = 1,
        *,
        seed: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if channel is not None and not isinstance(channel, Channel):
            raise TypeError(f"channel must be a robustbench_bl.channels.Channel or None, got {type(channel).__name__}")
        self.model = model
        self.channel = Identity() if channel is None else channel
        self.votes = check_positive_int(votes, "votes")
        self.generator = SeededGenerators(seed)
        self.seed = self.generator.seed
        self.max_batch = None if max_batch is None else check_positive_int(max_batch, "max_batch")

    def reseeded(self, seed: int) -> Defended:
        """The same model, channel, votes and batching with draws from `seed`, in eval mode: a judge
        or a voter that replays its draws from the start on every call it is made for."""
        return Defended(self.model, self.channel, self.votes, seed=seed, max_batch=self.max_batch).eval()

    def forward(self, x: Tensor) -> Tensor:
        """Log of the mean softmax over `votes` draws (N x classes): the smoothed classifier, differentiable."""
        draws = self._draws(self.votes)
        log_probs = torch.cat([logits.log_softmax(-1) for logits in self._logits(x, draws)])
        if draws == 1:
            return log_probs[0]  # the mean over one draw is that draw: skip the logsumexp
        return log_probs.logsumexp(0) - math.log(draws)

    @torch.no_grad()
    def predict(self, x: Tensor, alpha: float | None = None) -> tuple[Tensor, Tensor]:
        """Majority vote over `votes` draws: (labels (N,), counts (N x classes)).

        Ties go to the lowest class index. With `alpha`, a label is kept only if a two-sided
        binomial test rejects, at level alpha, that the top two classes are equally likely;
        otherwise it is -1 (abstain). A kept label is wrong with probability at most alpha
        (Cohen et al., PREDICT).
        """
        counts = self._counts(x, self.votes)
        labels = majority(counts)
        if alpha is None:
            return labels, counts
        alpha = check_range(alpha, "alpha", 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        top2 = counts.topk(min(2, counts.shape[1]), dim=1).values.cpu().tolist()
        sure = [binomtest(c[0], c[0] + sum(c[1:]), 0.5).pvalue <= alpha for c in top2]
        return torch.where(torch.tensor(sure, dtype=torch.bool, device=labels.device), labels, -1), counts

    @torch.no_grad()
    def certify(self, x: Tensor, n0: int = 100, n: int = 1000, alpha: float = 0.001) -> tuple[Tensor, Tensor]:
        """Cohen et al.'s CERTIFY for a GaussianNoise channel: (labels (N,), L2 radii (N,)).

        The class is the vote of `n0` draws; `n` further draws give a one-sided Clopper-Pearson
        lower bound pA on its probability at confidence 1 - alpha, and the radius is
        sigma * Phi^-1(pA). With probability >= 1 - alpha the smoothed classifier predicts that
        label everywhere within the radius. If pA < 0.5 it abstains: label -1, radius 0.
        """
        if not isinstance(self.channel, GaussianNoise):
            raise TypeError(
                "certify() needs channel=GaussianNoise(sigma): the certificate is for Gaussian smoothing, "
                f"got {type(self.channel).__name__}"
            )
        n0 = check_positive_int(n0, "n0")
        n = check_positive_int(n, "n")
        alpha = check_range(alpha, "alpha", 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        guess = majority(self._counts(x, n0))
        hits = self._counts(x, n).gather(1, guess[:, None]).squeeze(1)
        p_lower = torch.tensor([binomial_lower(h, n, alpha) for h in hits.cpu().tolist()], dtype=torch.float64)
        certified = p_lower >= 0.5
        radii = self.channel.strength * torch.from_numpy(norm.ppf(p_lower.numpy()))
        labels = torch.where(certified.to(guess.device), guess, -1)
        return labels, torch.where(certified, radii, 0.0).to(guess.device)

    def foolbox(self, bounds: tuple[float, float] = (0, 1)) -> Any:
        """This classifier, switched to eval mode (attacks judge per-example outputs, not batch
        statistics), as a foolbox PyTorchModel on the device of the model's parameters."""
        low, high = (check_range(b, f"bounds[{i}]", -math.inf, math.inf) for i, b in enumerate(_pair(bounds, "bounds")))
        if not low < high:
            raise ValueError(
                f"bounds must be (low, high) with low < high (images are in [0, 1]), got {tuple(bounds)!r}"
            )
        fb = import_foolbox()
        return fb.PyTorchModel(self.eval(), bounds=(low, high), device=placement(self.model)[0])

    def extra_repr(self) -> str:
        seed = "" if self.seed is None else f", seed={self.seed}"
        return f"votes={self.votes}, max_batch={self.max_batch}{seed}"

    def _limit(self, device: torch.device) -> int:
        """Images per forward pass on `device` (see the class docstring)."""
        if self.max_batch is not None:
            return self.max_batch
        return CPU_BATCH if device.type == "cpu" else DEVICE_BATCH

    def _draws(self, votes: int) -> int:
        return 1 if not self.channel.stochastic and not self.training else votes

    def _logits(self, x: Tensor, draws: int) -> Iterator[Tensor]:
        """Model logits over `draws` channel draws, as chunks of shape (draws in chunk, N, classes)."""
        dtype = placement(self.model)[1]
        batch = check_images(x, "x").to(dtype=dtype)  # float16/float64 images run in the model's precision
        limit = self._limit(batch.device)
        per_chunk = max(1, limit // max(1, len(batch)))
        generator = self.generator(batch.device)
        for start in range(0, draws, per_chunk):
            copies = min(per_chunk, draws - start)
            copied = batch if copies == 1 else batch.repeat(copies, 1, 1, 1)
            passed = self.channel.transform(copied, generator)
            if not torch.isfinite(passed).all():
                raise ValueError(
                    f"the channel {self.channel!r} returned NaN or infinite values: Defended would vote on garbage; "
                    "fix the channel (a user channel's transform must return finite images)"
                )
            logits = torch.cat([run_model(self.model, part) for part in passed.split(limit)])
            yield logits.view(copies, len(batch), logits.shape[-1])

    def _counts(self, x: Tensor, votes: int) -> Tensor:
        """Votes per class (N x classes) over `votes` draws; a deterministic channel's one draw counts `votes` times."""
        draws = self._draws(votes)
        counts = torch.stack(
            [nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).sum(0) for logits in self._logits(x, draws)]
        ).sum(0)
        return counts * (votes // draws)


def _pair(value: object, name: str) -> tuple[object, object]:
    """`value` as a pair, or a TypeError naming `name`."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a (low, high) pair, got {value!r}")
    return value[0], value[1]


def majority(counts: Tensor) -> Tensor:
    """The most voted class per row of `counts` (N x classes); ties go to the lowest index."""
    return counts.argmax(1)  # argmax returns the first maximum
