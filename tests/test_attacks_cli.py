"""The attack command line: trains on demand through the checkpoint store, prints the table,
appends one cell per attack to the results store and skips stored cells on a second run."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustbench_bl.attacks import command
from robustbench_bl.runtime.results import ResultsStore


def test_cli_prints_and_stores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = command
    argv = [
        "--preset",
        "smoke",
        "--channel",
        "cd:3",
        "--attack",
        "fgsm,deepfool-linf",
        "--threat",
        "bpda",
        "--epsilons",
        "0,8/255",
        "--steps",
        "3",
        "--n",
        "10",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    table = cli.main(argv)
    printed = capsys.readouterr().out
    assert "cd:3, votes=1, threat=bpda, n=10" in printed and "eps=0.03137" in printed
    assert set(table.attack) == {"fgsm", "deepfool-linf"}
    store = ResultsStore(tmp_path / "results.jsonl")
    assert len(store.keys()) == 2 and (tmp_path / "results.csv").is_file()
    stored = store.frame()
    assert (stored[stored.metric == "robust_accuracy"].threat == "bpda").all()
    cli.main(argv)  # stored cells are not recomputed or appended again
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2


def test_cli_rejects_bad_epsilons_and_names(tmp_path: Path) -> None:
    """Checked at parse time (before training): argparse's exit code 2 (the one-line message is
    tested for every option in test_command_lines.py)."""
    cli = command
    for argv in (["--epsilons", "1/0"], ["--attack", "pgd"]):
        with pytest.raises(SystemExit) as stop:
            cli.main([*argv, "--out", str(tmp_path)])
        assert stop.value.code == 2
