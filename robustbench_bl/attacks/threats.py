"""Threat models as objects: how the attacker sees the defense, parsed once from its name.

nonadaptive attacks the bare model; whitebox differentiates Defended as built (one draw a step);
bpda replaces the channel by the identity in backward (Athalye et al.); eot averages the softmax
over `eot_samples` draws a step; bpda+eot does both. Decision-based attacks query the vote.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from robustbench_bl.channels import Channel, Compose
from robustbench_bl.defense import Defended
from robustbench_bl.validation import check_choice

THREATS = ("nonadaptive", "whitebox", "bpda", "eot", "bpda+eot")
#: The attacker's channel draws use seed + ATTACKER_STREAM, so they never replay the draws the judge
#: votes with (seeded with seed itself): an adaptive attack must not see the judge's noise.
ATTACKER_STREAM = 1_000_003


@dataclass(frozen=True)
class Threat:
    """A threat model: whether the attacker sees the defense at all (`adaptive`), differentiates the
    channel straight through (`bpda`) and averages draws (`eot`)."""

    adaptive: bool = False
    bpda: bool = False
    eot: bool = False

    def __post_init__(self) -> None:
        if not self.adaptive and (self.bpda or self.eot):
            raise ValueError("a non-adaptive threat cannot use bpda or eot (they adapt to the defense)")

    @classmethod
    def parse(cls, value: Threat | str) -> Threat:
        """A Threat from itself or from one of THREATS ('bpda+eot', ...)."""
        if isinstance(value, Threat):
            return value
        name = check_choice(value, "threat", THREATS)
        return cls(adaptive=name != "nonadaptive", bpda="bpda" in name, eot="eot" in name)

    @property
    def name(self) -> str:
        """The threat's name as in THREATS (what result rows record)."""
        if not self.adaptive:
            return "nonadaptive"
        return "+".join(part for part, on in (("bpda", self.bpda), ("eot", self.eot)) if on) or "whitebox"

    def __str__(self) -> str:
        return self.name


def channel_label(channel: Channel) -> str:
    """A channel as the string `channels.make` reads ('gauss:0.03'); parts joined by '+' for Compose."""
    if isinstance(channel, Compose):
        return "+".join(channel_label(part) for part in channel.parts)  # type: ignore[arg-type]
    return f"{channel.name}:{channel.strength}"


def straight_through(channel: Channel) -> Channel:
    """`channel` in 'bpda' gradient mode, without touching the caller's channel: a one-part Compose
    applies it in forward (same draws, same generator) and is the identity in backward."""
    wrapper = Compose(channel)
    wrapper.gradient = "bpda"
    return wrapper


class Vote(nn.Module):
    """A defended classifier's majority vote as scores (vote counts), for attacks that only query
    decisions: argmax of the counts is Defended.predict's label, ties to the lowest class.

    Every query uses the same draws (common random numbers, from `seed`), so the vote is a fixed
    function of the queried batch that boundary-walking attacks can follow; the judge of the
    adversarials votes with its own draws.
    """

    def __init__(self, defended: Defended, seed: int) -> None:
        super().__init__()
        self.defended = defended
        self.seed = seed

    def forward(self, x: Tensor) -> Tensor:
        return self.defended.reseeded(self.seed).predict(x)[1].to(x.dtype)


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker queries or differentiates, and a sentence saying so for the report."""

    module: nn.Module
    gradient_path: str


def threat_model(
    defended: Defended,
    decision: bool,
    threat: Threat,
    eot_samples: int,
    seed: int,
    transfer: Channel | None = None,
    batch_size: int = 256,
) -> ThreatModel:
    """The model an attack runs on under `threat` (the vote for `decision`-based attacks); with
    `transfer`, crafted against that channel instead. Its draws follow seed + ATTACKER_STREAM."""
    if not threat.adaptive:
        return ThreatModel(defended.model, "bare model (the defense is ignored)")
    channel = transfer if transfer is not None else defended.channel
    where = f"Defended with {channel_label(channel)}, votes={defended.votes}"
    stream = seed + ATTACKER_STREAM
    if decision:
        voter = Defended(defended.model, channel, defended.votes, max_batch=defended.max_batch)
        return ThreatModel(Vote(voter, stream).eval(), f"queries the majority vote of {where}")
    # EOT over a deterministic channel: every draw is the same, one is the expectation (Defended runs
    # it once in eval mode either way; the gradient path says so).
    draws = eot_samples if threat.eot and channel.stochastic else 1
    if threat.bpda:
        channel = straight_through(channel)
    mode = "straight-through (bpda)" if threat.bpda else "exact"
    path = f"{mode} gradient of {channel_label(channel)}, mean softmax over {draws} draw(s) per step"
    # max_batch = draws x batch makes each EOT step one batched forward.
    attacked = Defended(defended.model, channel, votes=draws, seed=stream, max_batch=draws * batch_size)
    return ThreatModel(attacked.eval(), path)
