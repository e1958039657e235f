"""Channel tuning: strength grids, defaults, non-adaptive crafting and judging, best strengths and
reading them back the way the adaptive and leaderboard studies do."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_bl import Defended
from robustbench_bl.attacks import craft_nonadaptive, judge_rows
from robustbench_bl.channels import channel_class
from robustbench_bl.studies.channel_setup import (
    CHANNELS,
    SETTINGS,
    best_rows,
    best_strengths,
    channel_at,
    default_strength,
    extend,
    read_best,
    strengths,
    train_config,
    votes_for,
)


@pytest.mark.parametrize("name", CHANNELS)
def test_strengths_span_the_sweep_range(name: str) -> None:
    cls = channel_class(name)
    grid = strengths(name, 5)
    assert grid[0] == cls.sweep[0] and grid[-1] == cls.sweep[1]
    assert len(grid) == len(set(grid)) <= 5
    assert all(isinstance(s, int) for s in grid) == cls.integer
    for s in grid:
        channel_at(name, s)  # every grid point is an accepted strength
    low, high = sorted(cls.sweep)
    assert low <= default_strength(name) <= high


@pytest.mark.parametrize("name", ["gauss", "uniform", "laplace"])
def test_noise_grids_are_geometric_from_a_32nd_of_the_range(name: str) -> None:
    """The best noise strength can sit below 0.01 in pixels: 6 points are 0, then sweep / 32 up to the
    sweep's end in 4 geometric steps (ratio 32 ** (1 / 4))."""
    top = channel_class(name).sweep[1]
    expected = [0.0] + [top / 32 * 32 ** (i / 4) for i in range(5)]
    assert strengths(name, 6) == pytest.approx(expected, abs=1e-5)


def test_bad_arguments_name_the_range() -> None:
    with pytest.raises(ValueError, match="points"):
        strengths("fft", 1)
    with pytest.raises(ValueError, match="name must be one of"):
        strengths("identity", 3)


def test_channel_at_rounds_integer_strengths_read_from_a_csv() -> None:
    assert channel_at("cd", 4.0).strength == 4 and isinstance(channel_at("cd", 4.0).strength, int)
    assert channel_at("gauss", 0.05).strength == pytest.approx(0.05)
    assert votes_for("gauss", 16) == 16 and votes_for("jpeg", 16) == 1


def _sweep_table() -> pd.DataFrame:
    rows = [("identity", 0.0, 0.0, "none", "clean_accuracy", 0.8)]
    rows += [("identity", 0.0, 0.0, attack, "robust_accuracy", 0.1) for attack in ("pgd-linf", "cw-l2")]
    for strength, distortion, pgd, cw in ((0.0, 0.0, 0.1, 0.0), (0.5, 1.0, 0.3, 0.5), (0.9, 2.0, 0.3, 0.5)):
        rows += [
            ("fft", strength, distortion, "pgd-linf", "robust_accuracy", pgd),
            ("fft", strength, distortion, "cw-l2", "robust_accuracy", cw),
        ]
    rows += [
        ("gauss", 0.05, 1.5, "pgd-linf", "robust_accuracy", 0.2),
        ("gauss", 0.05, 1.5, "cw-l2", "robust_accuracy", 0.6),
    ]
    return pd.DataFrame(rows, columns=["channel", "strength", "distortion", "attack", "metric", "value"])


def test_best_strength_maximizes_mean_robust_accuracy_and_prefers_less_distortion() -> None:
    best = best_strengths(_sweep_table(), attacks=("pgd-linf", "cw-l2")).set_index("channel")
    assert list(best.index) == ["fft", "gauss"]  # in CHANNELS order
    assert best.loc["fft", "strength"] == 0.5  # ties with 0.9, which distorts more
    assert not best.loc["fft", "at_edge"] and best.loc["gauss", "at_edge"] == (0.05 == channel_class("gauss").sweep[1])
    assert best.loc["fft", "recovery_pgd-linf"] == pytest.approx(0.3 / 0.8)
    assert best.loc["gauss", "recovery_mean"] == pytest.approx(0.4 / 0.8)
    with pytest.raises(ValueError, match="identity"):
        best_strengths(_sweep_table().query("channel != 'identity'"))
    # the edge is the lossy end of the range actually swept when it is given
    assert best_strengths(_sweep_table(), {"gauss": 0.05}).set_index("channel").loc["gauss", "at_edge"]
    assert not best_strengths(_sweep_table(), {"gauss": 0.1}).set_index("channel").loc["gauss", "at_edge"]
    # by default only the thesis's attacks choose: C&W alone here (PGD-Linf is the strong check)
    assert best_strengths(_sweep_table()).set_index("channel").loc["fft", "recovery_mean"] == pytest.approx(0.5 / 0.8)


@pytest.mark.parametrize(
    ("name", "grid", "expected"),
    [
        ("gauss", [0.0, 0.05, 0.1], 0.15),  # one spacing further
        ("fft", [0.0, 0.45, 0.9], 0.95),  # 1.0 is excluded (all discarded): halfway towards it
        ("gauss", [0.0, 0.5, 0.9], 1.0),  # clipped to the bound
        ("gauss", [0.0, 0.5, 1.0], None),  # at the bound: nothing further
        ("cd", [8, 6, 4, 2], 1),  # lossier is fewer bits, an integer, clipped at 1
        ("cd", [8, 4, 1], None),
        ("jpeg", [100, 82, 64], 46),
    ],
)
def test_extend_steps_one_spacing_past_the_lossy_end(name: str, grid: list[float], expected: float | None) -> None:
    assert extend(name, grid) == expected


def test_read_best_takes_the_sweep_for_this_model_and_nothing_else(tmp_path: Path) -> None:
    rows = best_rows(best_strengths(_sweep_table(), attacks=("pgd-linf", "cw-l2")))
    assert [r["metric"] for r in rows["fft"]] == ["best_strength", "recovery", "recovery", "recovery"]
    csv = tmp_path / "results.csv"
    frame = pd.DataFrame([{**row, "channel": name, "model_key": "abc"} for name, part in rows.items() for row in part])
    frame.to_csv(csv, index=False)
    best = read_best(csv, "abc")
    assert best == {"fft": 0.5, "gauss": 0.05}  # the channels the sweep tuned for this model, no midpoint fallback
    assert read_best(csv, "other model") == {}
    with pytest.raises(ValueError, match="not a readable channel-sweep CSV"):
        read_best(tmp_path / "missing.csv", "abc")


def test_nonadaptive_adversarials_are_seeded_bounded_and_judged() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x = torch.rand(12, 3, 8, 8)
    y = model(x).argmax(1)  # all classified right, so every example gets perturbed (a wrong one is kept as is)
    options = {"steps": 3}
    adv = craft_nonadaptive(model, "pgd-linf", x, y, 2 / 255, seed=1, options=options, batch_size=5)
    assert torch.equal(adv, craft_nonadaptive(model, "pgd-linf", x, y, 2 / 255, seed=1, options=options, batch_size=5))
    assert (adv - x).abs().max() <= 2 / 255 + 1e-6
    rows = judge_rows(Defended(model, channel_at("gauss", 0.02), votes=3, seed=0), x, y, {"pgd-linf": adv})
    clean, robust = rows
    assert clean["metric"] == "clean_accuracy" and robust["attack"] == "pgd-linf"
    assert 0 <= robust["value"] <= clean["value"] <= 1 and robust["attack_l2_median"] > 0


def test_train_config_matches_the_budget_of_the_setting() -> None:
    quick = SETTINGS["quick"]
    full = train_config(quick, 50000, seed=0, compress_rate=0.5)
    assert (full.limit, full.epochs, full.compress_rate, full.model) == (quick.train, quick.epochs, 0.5, quick.model)
    sample = train_config(quick, 2000, seed=0)  # the packaged sample: more epochs, as many examples seen
    assert sample.limit == 2000 and sample.epochs * 2000 == quick.epochs * quick.train and sample.compress_rate is None


def test_crafting_resumes_from_the_batches_it_stored(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x = torch.rand(12, 3, 8, 8)
    y = model(x).argmax(1)
    calls = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    craft = partial(craft_nonadaptive, model, "pgd-linf", x, y, seed=1, options={"steps": 3}, batch_size=5)
    whole = craft(2 / 255)  # no store: the reference
    stored = craft(2 / 255, store=tmp_path)
    files = sorted(tmp_path.glob("pgd-linf-*.pt"))
    assert torch.equal(stored, whole) and len(files) == 3  # batches of 5, 5, 2
    calls.clear()
    assert torch.equal(craft(2 / 255, store=tmp_path), whole) and calls == []  # read back, nothing crafted
    files[1].unlink()  # a run stopped before one of its batches was saved
    assert torch.equal(craft(2 / 255, store=tmp_path), whole) and calls  # that batch again, bit for bit
    assert len(list(tmp_path.glob("pgd-linf-*.pt"))) == 3
    calls.clear()
    other = craft(4 / 255, store=tmp_path)  # another budget is another file, crafted afresh
    assert calls and len(list(tmp_path.glob("pgd-linf-*.pt"))) == 6 and not torch.equal(other, whole)
    linear = model[1]
    assert isinstance(linear, nn.Linear)
    with torch.no_grad():
        linear.bias.add_(1)  # other weights: nothing stored fits them
    calls.clear()
    craft(2 / 255, store=tmp_path)
    assert calls and len(list(tmp_path.glob("pgd-linf-*.pt"))) == 9
