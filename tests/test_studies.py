"""Every study runs end to end on its smoke preset: tidy CSV with the expected columns and rows,
a valid PNG figure, and a rerun that recomputes nothing."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import torch
from PIL import Image

from robustbench_bl import channels, studies
from robustbench_bl.evaluation import stats
from robustbench_bl.studies.study import Study

RESULTS_DOC = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text(encoding="utf-8")
COMMON_COLUMNS = {"study", "metric", "value", "seed", "wall_seconds", "version_torch", "version_robustbench-bl"}


def load_study(name: str) -> ModuleType:
    return studies.module(name)


def check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert min(image.size) > 100


def run_smoke(name: str, out: Path, *extra: str) -> pd.DataFrame:
    module = load_study(name)
    module.main(["--preset", "smoke", "--out", str(out), "--quiet", *extra])
    table = pd.read_csv(out / "results.csv")
    assert COMMON_COLUMNS <= set(table.columns)
    # docs/results.md documents every column and metric the study writes (kept:NAME as one pattern).
    undocumented = {c for c in table.columns if f"`{c}`" not in RESULTS_DOC and not c.startswith(("kept:", "version_"))}
    undocumented |= {m for m in table.metric.unique() if f"`{m}`" not in RESULTS_DOC}
    assert sorted(undocumented) == []
    finding = stats.Finding.from_json(json.loads((out / "finding.json").read_text()))
    assert (out / "finding.txt").read_text() == f"{finding}\n"
    check_png(out / f"{name}.png")
    assert (out / f"{name}.pdf").stat().st_size > 0
    return table


def test_noise_robustness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_study("noise_robustness")
    p = module.PRESETS["smoke"]
    # A cell's distortion comes from the noisy images its accuracy uses, not from extra draws.
    monkeypatch.setattr(channels.Channel, "distortion", lambda *a, **k: pytest.fail("extra draws for the distortion"))
    table = run_smoke("noise_robustness", tmp_path)
    # every curve on the judged axes; the clipped variant for the fully trained seed-0 models only
    judged, full = len(p.levels) + len(p.epsilons), [m for m in p.models if m[2] == 0 and m[3] == 2]
    assert len(table) == (len(p.models) + len(p.rpa)) * judged + len(full) * len(p.clipped)
    assert set(table.arithmetic) == {module.FP32, module.RPA}
    assert {
        "arithmetic",
        "train_compress",
        "seed_offset",
        "train_epochs",
        "noise",
        "variant",
        "level",
        "distortion",
        "model_key",
        "data_source",
        "correct",
    } <= set(table.columns)
    assert table.value.between(0, 1).all()
    for row in table.itertuples():  # the packed per-image outcomes are the accuracy
        assert stats.unpack(row.correct, row.n).mean() == pytest.approx(row.value)
    assert module.finding(table).verdict in set(stats.Verdict)
    clean = table[table.level == 0]
    assert (clean.distortion == 0).all()
    assert (table[table.level > 0].distortion > 0).all()
    # a second run finds every cell stored and measures nothing
    monkeypatch.setattr(module, "predict", lambda *a, **k: pytest.fail("a stored cell was measured again"))
    module.main(["--preset", "smoke", "--out", str(tmp_path), "--quiet"])


@pytest.mark.parametrize("eps", [0.02, 0.3])
def test_noise_on_the_foolbox_axis_is_uniform_in_pixels_and_clipped(eps: float) -> None:
    """Foolbox 2's additive uniform noise with bounds (0, 1): U[-eps, eps] per pixel, then clipped."""
    module = load_study("noise_robustness")
    x = torch.full((4, 3, 32, 32), 0.5)
    out = module.noisy(x, "uniform", eps, "foolbox", torch.ones(3), seed=1)
    delta = out - x
    assert delta.abs().max() <= eps and delta.abs().max() > 0.95 * eps
    assert delta.abs().mean().item() == pytest.approx(eps / 2, rel=0.03)  # |U[-eps, eps]| has mean eps / 2
    edge = module.noisy(torch.ones(2, 3, 8, 8), "uniform", eps, "foolbox", torch.ones(3), seed=1)
    assert edge.max() == 1 and edge.min() < 1  # clipped at the top, not shifted
    with pytest.raises(ValueError, match="noise must be 'uniform'"):
        module.noisy(x, "gauss", eps, "foolbox", torch.ones(3), seed=1)


def test_channel_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robustbench_bl.studies.channel_setup import CHANNELS, SWEEP_ATTACKS, THESIS_ATTACKS, strengths

    module = load_study("channel_sweep")
    out = tmp_path / "channel_sweep"
    table = run_smoke("channel_sweep", out)
    # every channel swept at its grid, plus one step further where the best sat at the lossy end
    points = table[table.metric == "best_strength"].set_index("channel").points
    swept = table[table.metric == "clean_accuracy"].groupby("channel").strength.nunique()
    assert all(points[c] == swept[c] >= len(strengths(c, module.PRESETS["smoke"].points)) for c in CHANNELS)
    cells = 1 + int(points.sum())
    per_cell = 1 + len(SWEEP_ATTACKS)  # clean, then robust per attack
    per_best = 1 + len(THESIS_ATTACKS) + 1  # best_strength, recovery per thesis attack and their mean
    assert len(table) == cells * per_cell + len(CHANNELS) * per_best
    assert {"channel", "strength", "votes", "attack", "distortion", "threat", "eps", "model_key", "data_source"} <= set(
        table.columns
    )
    accuracy = table[table.metric.isin(["clean_accuracy", "robust_accuracy"])]
    assert accuracy.value.between(0, 1).all() and (accuracy.threat == "nonadaptive").all()
    assert set(table[table.metric == "best_strength"].channel) == set(CHANNELS)
    assert (accuracy[accuracy.channel == "identity"].distortion == 0).all()
    # a run interrupted halfway resumes to the same table, value for value (seeded distortion too)
    store = out / "results.jsonl"
    lines = store.read_text().splitlines(keepends=True)
    store.write_text("".join(lines[: len(lines) // 2]))
    module.main(["--preset", "smoke", "--out", str(out), "--quiet"])
    resumed = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(resumed.drop(columns="wall_seconds"), table.drop(columns="wall_seconds"))
    # a second run finds every cell stored and crafts or judges nothing
    monkeypatch.setattr(module, "judge_rows", lambda *a, **k: pytest.fail("a stored cell was measured again"))
    module.main(["--preset", "smoke", "--out", str(out), "--quiet"])


def test_adaptive_vs_nonadaptive(tmp_path: Path) -> None:
    from robustbench_bl.studies.channel_setup import CHANNELS

    module = load_study("adaptive_vs_nonadaptive")
    # no channel sweep beside --out: the required sweep runs first, there, and its tuned strengths are used
    table = run_smoke("adaptive_vs_nonadaptive", tmp_path / "adaptive_vs_nonadaptive")
    swept = pd.read_csv(tmp_path / "channel_sweep" / "results.csv")
    tuned = swept[swept.metric == "best_strength"].set_index("channel").value
    cells = 1 + len(CHANNELS) * len(module.ATTACKERS)
    grid = module.PRESETS["smoke"].grid
    # per cell: clean, seconds, then per budget robust, success and 4 sizes, then the minimal-size medians
    per_cell = table.groupby(["channel", "attacker"]).size()
    assert len(per_cell) == cells and per_cell.between(2 + 6 * len(grid), 2 + 6 * len(grid) + 2).all()
    # measured in order (the store keeps it): each channel's own attackers, then the transfer cells together
    order = [tuple(pair) for pair in table.drop_duplicates(["channel", "attacker"])[["channel", "attacker"]].values]
    assert order[-len(CHANNELS) :] == [(c, module.TRANSFER) for c in CHANNELS]
    assert order[1:5] == [("fft", a) for a in module.ATTACKERS if a != module.TRANSFER]
    assert {
        "channel",
        "strength",
        "strength_source",
        "attacker",
        "threat",
        "gradient_path",
        "transfer_from",
        "votes",
        "correct",
    } <= set(table.columns)
    robust = table[table.metric == "robust_accuracy"]
    assert len(robust) == cells * len(grid) and robust.value.between(0, 1).all()
    for row in robust.itertuples():  # the packed per-image outcomes are the robust accuracy
        assert stats.unpack(row.correct, row.n).mean() == pytest.approx(row.value)
    curve = robust.sort_values("epsilon").groupby(["channel", "attacker"]).value
    assert (curve.diff().dropna() <= 1e-12).all()  # a larger budget never leaves more right
    defended = robust[robust.channel != "identity"]
    assert set(defended.strength_source) == {"channel_sweep"}
    assert (defended.strength.to_numpy() == tuned[defended.channel].to_numpy()).all()
    transfer = robust[robust.attacker == module.TRANSFER]
    assert transfer.transfer_from.str.startswith("laplace:").all() and (transfer.threat == "eot").all()
    sizes = table[table.metric == "min_linf_median"]
    assert (sizes.value <= max(grid) * sizes.eps + 1e-6).all() and (sizes.ci_low <= sizes.value).all()


def test_leaderboard(tmp_path: Path) -> None:
    from robustbench_bl.studies.channel_setup import CHANNELS

    module = load_study("leaderboard")
    out = tmp_path / "leaderboard"
    table = run_smoke("leaderboard", out)
    entries = len(module.PRESETS["smoke"].rates) + len(CHANNELS)
    assert len(table) == 2 * entries
    assert {
        "train_compress",
        "channel",
        "defense",
        "strength",
        "threat",
        "suite",
        "ci_low",
        "ci_high",
        "repeats",
    } <= set(table.columns)
    assert (table.ci_low <= table.value).all() and (table.value <= table.ci_high).all()
    checks = table.checks.map(json.loads)  # a fifth of the 20 images, the fewest allowed
    assert (table.check_images == 4).all() and checks.map(lambda c: "of 4 images" in c[0]["detail"]).all()
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["rank"]) == list(range(1, entries + 1))
    assert board.robust.is_monotonic_decreasing and (board.robust <= board.clean).all()
    assert len((out / "leaderboard.md").read_text().splitlines()) == entries + 2


def test_compression_mismatch(tmp_path: Path) -> None:
    p = load_study("compression_mismatch").PRESETS["smoke"]
    table = run_smoke("compression_mismatch", tmp_path)
    assert len(table) == len(p.models) * len(p.test_rates)
    assert {"train_compress", "seed_offset", "test_compress", "model_key", "data_source", "correct"} <= set(
        table.columns
    )
    for row in table.itertuples():  # the packed per-image outcomes are the accuracy
        assert stats.unpack(row.correct, row.n).mean() == pytest.approx(row.value)
    assert table.value.between(0, 1).all()


def test_accuracy_vs_compression(tmp_path: Path) -> None:
    p = load_study("accuracy_vs_compression").PRESETS["smoke"]
    table = run_smoke("accuracy_vs_compression", tmp_path)
    assert len(table) == len(p.rates) + len(p.energies)
    assert {"scheme", "level", "discarded", "model_key"} <= set(table.columns)
    for row in table.itertuples():  # the packed per-image outcomes are the accuracy
        assert stats.unpack(row.correct, row.n).mean() == pytest.approx(row.value)
    static = table[table.scheme == "static"].set_index("level").discarded
    assert static[0.0] == 0 and 0.5 <= static[0.5] < 0.7  # measured from the layers: at least the nominal rate
    assert table[table.scheme == "energy"].discarded.between(0, 1).all()


def test_resources(tmp_path: Path) -> None:
    p = load_study("resources").PRESETS["smoke"]
    table = run_smoke("resources", tmp_path, "--device", "cpu")
    assert len(table) == 2 * (len(p.rates) + 1)  # time and memory per cell: plain conv + each rate, fp32 only on a CPU
    assert set(table.metric) == {"epoch_seconds", "memory_bytes"} and set(table.precision) == {"fp32"}
    memory = table[(table.metric == "memory_bytes") & (table.impl == "band-limited")].set_index("compress_rate").value
    assert (table.value > 0).all() and memory[0.5] < memory[0.0]


def test_conv_error(tmp_path: Path) -> None:
    p = load_study("conv_error").PRESETS["smoke"]
    table = run_smoke("conv_error", tmp_path)
    assert len(table) == 2 * p.images * len(p.rates) + p.images  # lead and top per rate; top-one at rate 0
    assert {"scheme", "compress_rate", "discarded", "image"} <= set(table.columns)
    exact = table[(table.compress_rate == 0) & (table.scheme != "top-one")]
    assert (exact.value < 1e-6).all() and (table[table.compress_rate > 0].value > 0).all()
    assert (table[table.scheme == "top-one"].value > 0).all()  # one coefficient discarded


def test_energy_dynamics(tmp_path: Path) -> None:
    p = load_study("energy_dynamics").PRESETS["smoke"]
    table = run_smoke("energy_dynamics", tmp_path)
    assert len(table) == len(p.energies) * len(p.seeds) * (p.epochs + 1) * 2  # LeNet has two convolutions
    assert {"energy", "epoch", "layer", "module"} <= set(table.columns)
    assert sorted(table.epoch.unique()) == list(range(p.epochs + 1)) and table.value.between(0, 1).all()


def test_ucr(tmp_path: Path) -> None:
    p = load_study("ucr").PRESETS["smoke"]
    table = run_smoke("ucr", tmp_path)
    assert len(table) == len(p.datasets) * len(p.train_rates) * len(p.seeds) * len(p.test_rates)
    assert {"dataset", "train_compress", "test_compress", "model_key", "correct", "train_accuracy"} <= set(
        table.columns
    )
    for row in table.itertuples():  # the packed per-series outcomes are the accuracy
        assert stats.unpack(row.correct, row.n).mean() == pytest.approx(row.value)
    check_png(tmp_path / "ucr_cd.png")


def test_instability(tmp_path: Path) -> None:
    module = load_study("instability")
    table = run_smoke("instability", tmp_path)
    p = module.PRESETS["smoke"]
    assert (table.n > 0).all() and (table.n <= p.n).all()
    # per model: natural, PGD per budget, minimal PGD, C&W, noisy; M1, M2, Taylor bound; every definition of f
    per_model = table.groupby("train_compress").n.first()
    assert len(table) == sum(per_model) * (4 + len(p.eps)) * 3 * len(module.FS)
    assert sorted(per_model.index) == sorted(p.rates)
    assert {
        "kind",
        "condition",
        "eps",
        "f",
        "train_compress",
        "example",
        "misclassified",
        "perturbation_l2",
        "taylor_delta",
        "model_key",
        "data_source",
    } <= set(table.columns)
    assert set(table.metric) == {"m1", "m2", "taylor_bound"}
    assert (table[table.metric == "m1"].value >= 0).all() and table.value.notna().all()
    assert (table[table.kind == "natural"].perturbation_l2 == 0).all()


def test_decision_based(tmp_path: Path) -> None:
    module = load_study("decision_based")
    p = module.PRESETS["smoke"]
    table = run_smoke("decision_based", tmp_path, "--images", "10")  # instead of the preset's 16
    assert len(table) == len(p.models) * len(module.ATTACKS) * 10
    assert {"member", "train_compress", "seed_offset", "train_epochs", "attack", "example", "clean_correct"} <= set(
        table.columns
    )
    assert set(table.member) == {"0%", "50%", "0% (1 ep.)"}  # smoke trains 1 epoch: the control is the plain model
    assert module.pairs(p.models) == ([("50%", "0%")], [("50%", "0% (1 ep.)")])
    assert set(table.metric) == {"min_l2", "min_linf"}
    assert set(table[table.attack == "additive-uniform"].metric) == {"min_linf"}
    assert table[table.fooled].value.notna().all() and table[~table.fooled].value.isna().all()


def test_a_given_channel_sweep_without_this_models_strengths_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from robustbench_bl.cli import command_line

    csv = tmp_path / "sweep.csv"
    pd.DataFrame([{"metric": "best_strength", "model_key": "another model", "channel": "fft", "value": 0.5}]).to_csv(
        csv
    )
    argv = ["--preset", "smoke", "--out", str(tmp_path / "out"), "--quiet", "--channel-sweep", str(csv)]
    assert command_line(load_study("adaptive_vs_nonadaptive").main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--channel-sweep {csv} lacks what adaptive_vs_nonadaptive needs" in err
    assert not (tmp_path / "channel_sweep").exists()  # a given file is not silently replaced by a fresh sweep


@pytest.mark.parametrize("name", studies.NAMES)
def test_images_replaces_the_presets_number_of_test_images_or_is_refused(name: str) -> None:
    cls = next(
        v
        for v in vars(load_study(name)).values()
        if isinstance(v, type) and issubclass(v, Study) and getattr(v, "name", None) == name
    )
    args = argparse.Namespace(preset="quick", model=None, images=7)
    if "test" in {f.name for f in dataclasses.fields(cls.presets["quick"])}:
        assert cls.chosen_preset(args).test == 7
        assert cls.chosen_preset(argparse.Namespace(preset="quick", model=None, images=None)) == cls.presets["quick"]
    else:
        with pytest.raises(ValueError, match=f"--images: {name} does not draw a number of test images"):
            cls.chosen_preset(args)
