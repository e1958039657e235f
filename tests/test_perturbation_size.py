"""Minimal perturbations of decision-based attacks against a linear model whose true minimal L2
distance is known in closed form, and the paired share of larger perturbations."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_bl import attacks
from robustbench_bl.attacks.minimal import larger_share, minimal_perturbations
from robustbench_bl.attacks.registry import diameter

SHAPE = (3, 8, 8)
D = 3 * 8 * 8


class MeanAbove(nn.Module):
    """Class 1 when the mean pixel exceeds `threshold`, else 0; counts the images it is asked about."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold, self.seen = threshold, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        s = (x.flatten(1).mean(1) - self.threshold) * 100
        return torch.stack([-s, s], 1)


def images(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with means spread around 0.5, labelled by the threshold (the last one mislabelled)."""
    torch.manual_seed(0)
    offsets = torch.linspace(-0.2, 0.2, n)
    x = (0.5 + 0.1 * (torch.rand(n, *SHAPE) - 0.5) + offsets[:, None, None, None]).clamp(0, 1)
    y = (x.flatten(1).mean(1) > 0.5).long()
    y[-1] = 1 - y[-1]
    return x, y


def test_diameter_is_the_box_in_the_attacks_norm() -> None:
    x = torch.rand(2, *SHAPE)
    assert diameter(attacks.make("boundary").norm, x) == math.sqrt(D)
    assert diameter(attacks.make("additive-gaussian").norm, x) == math.sqrt(D)
    assert diameter(attacks.make("additive-uniform").norm, x) == 1.0


def test_fixed_budget_attacks_are_refused() -> None:
    x, y = images()
    with pytest.raises(ValueError, match="attack must search the smallest perturbation itself; 'pgd-linf'"):
        minimal_perturbations(MeanAbove(0.5).eval(), "pgd-linf", x, y)


def brightest_pixel(threshold: float) -> nn.Module:
    """Class 1 when any pixel exceeds `threshold`, else 0: from a flat image c < threshold, uniform noise
    of Linf size e (its largest entry e, sign random) fools exactly when c + e > threshold."""

    class Brightest(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            top = x.flatten(1).amax(1) - threshold
            return torch.stack([-top, top], 1) * 100

    return Brightest().eval()


@pytest.mark.parametrize("steps", [50, 200])
def test_the_uniform_noise_scan_stops_at_the_first_size_that_fools(steps: int) -> None:
    """Foolbox 2's scan, sizes k / steps: the first that fools is the smallest k / steps above the
    distance d = threshold - c, so the size found lies in [d, d + 1 / steps) (a scan that skips sizes,
    or goes on past the first success, lands beyond)."""
    c = torch.tensor([0.2, 0.35, 0.5, 0.6, 0.697])  # the last one: the first size already fools
    x = c.view(-1, 1, 1, 1).expand(-1, *SHAPE).clone()
    y = torch.zeros(5, dtype=torch.long)
    rows = pd.DataFrame(
        minimal_perturbations(brightest_pixel(0.7), "additive-uniform", x, y, seed=0, options={"steps": steps})
    )
    assert rows.fooled.all() and set(rows.metric) == {"min_linf"}
    d = 0.7 - c.numpy()
    assert (rows.value.to_numpy() >= d - 1e-6).all()
    assert (rows.value.to_numpy() < d + 1 / steps + 1e-6).all()


@pytest.mark.parametrize(
    "attack, options",
    [
        ("boundary", {"steps": 50}),
        ("additive-gaussian", {"steps": 200}),
        ("additive-uniform", {"steps": 200}),
        ("blended-uniform", {"directions": 20, "steps": 20}),
    ],
)
def test_sizes_are_never_below_the_true_minimal_distance(attack: str, options: dict[str, int]) -> None:
    x, y = images()
    rows = pd.DataFrame(minimal_perturbations(MeanAbove(0.5).eval(), attack, x, y, seed=0, options=options))
    assert len(rows) == len(x) and list(rows.example) == list(range(len(x)))
    norm = attacks.make(attack).norm
    assert set(rows.metric) == {f"min_{norm.lower()}"}
    assert not rows.clean_correct.iloc[-1] and not rows.fooled.iloc[-1] and math.isnan(rows.value.iloc[-1])
    found = rows[rows.fooled]
    assert len(found) >= 3 and found.value.notna().all()
    # the mean moves by at most the Linf size, and by at most the L2 size / sqrt(D)
    truth = ((x.flatten(1).mean(1) - 0.5).abs() * (math.sqrt(D) if norm == "L2" else 1.0))[found.example.to_list()]
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


def flat(*means: float) -> torch.Tensor:
    return torch.tensor(means).view(-1, 1, 1, 1).expand(-1, *SHAPE).clone()


def test_blended_noise_gives_the_examples_its_first_round_misses_the_full_budget() -> None:
    """A random image's mean exceeds 0.5 + 2.3 sigma in ~1% of draws: the first round's 10 draws find
    one for few of these examples, the full budget (1,000 more) for all of them."""
    sigma = math.sqrt(1 / 12 / D)
    x = flat(*[0.3] * 8)
    rows = pd.DataFrame(
        minimal_perturbations(MeanAbove(0.5 + 2.3 * sigma).eval(), "blended-uniform", x, torch.zeros(8).long())
    )
    assert rows.fooled.all()


@pytest.mark.filterwarnings("ignore:LinearSearchBlendedUniformNoiseAttack failed to draw")  # the class-1 example
def test_blended_noise_queries_only_the_unfooled_examples_beyond_the_first_round() -> None:
    """Random images are class 1 here, so the class-1 example never gets an adversarial draw: in one
    round it would make all 16 examples query 1,000 draws (~17,600 images); the class-0 ones are done
    after the first round (10 draws and the 100-step blend: ~1,800 images), the rest is its own ~1,100."""
    x, y = flat(*[0.3] * 15, 0.7), torch.tensor([0] * 15 + [1])
    model = MeanAbove(0.4).eval()  # 4.8 sigma below a random image's mean
    rows = pd.DataFrame(minimal_perturbations(model, "blended-uniform", x, y))
    assert rows.fooled.sum() == 15 and not rows.fooled.iloc[-1]
    assert model.seen < 4000
