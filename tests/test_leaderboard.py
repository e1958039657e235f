"""The leaderboard: benchmark rows as tidy rows, ranking, Markdown, and its interval figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from test_studies import check_png

from robustbench_bl import plots
from robustbench_bl.evaluation import leaderboard


def _row(channel: str, clean: float, robust: float) -> dict[str, object]:
    return {
        "channel": channel,
        "votes": 1,
        "norm": "Linf",
        "eps": 2 / 255,
        "threat": "eot",
        "eot_samples": 8,
        "repeats": 2,
        "suite": "pgd-linf[eot]; hopskipjump[vote]",
        "warnings": "a | b",
        "version_torch": "x",
        "clean_accuracy": clean,
        "clean_ci_low": clean - 0.1,
        "clean_ci_high": clean + 0.1,
        "robust_accuracy": robust,
        "robust_ci_low": robust - 0.1,
        "robust_ci_high": robust + 0.1,
    }


def _table() -> pd.DataFrame:
    results = [_row("identity:0.0", 0.6, 0.2), _row("gauss:0.05", 0.5, 0.3), _row("cd:4", 0.7, 0.2)]
    return pd.DataFrame([r for result in results for r in leaderboard.rows(result)])


def test_rows_are_tidy_with_intervals_and_settings() -> None:
    rows = leaderboard.rows(_row("cd:4", 0.7, 0.2))
    assert [r["metric"] for r in rows] == ["clean_accuracy", "robust_accuracy"]
    assert rows[1]["value"] == 0.2 and rows[1]["ci_low"] == 0.1 and rows[1]["threat"] == "eot"
    assert not any(key.startswith("version_") or key.startswith("robust_") for key in rows[0])


def test_rank_orders_by_robust_then_clean() -> None:
    board = leaderboard.rank(_table(), ["channel", "votes"])
    assert list(board.channel) == ["gauss:0.05", "cd:4", "identity:0.0"]
    assert list(board["rank"]) == [1, 2, 3]
    assert board.loc[0, "robust_ci_high"] == 0.4 and board.loc[0, "suite"].startswith("pgd-linf")


def test_markdown_has_one_line_per_defense_and_escapes_pipes() -> None:
    text = leaderboard.to_markdown(leaderboard.rank(_table(), ["channel"]), ["channel"])
    lines = text.splitlines()
    assert len(lines) == 2 + 3 and lines[0].startswith("| rank | channel | clean (95% CI) | robust (95% CI) |")
    assert "| 1 | gauss:0.05 | 50.0 [40.0, 60.0] | 30.0 [20.0, 40.0] |" in lines[2]
    assert "a \\| b" in lines[2] and "| Linf | 2/255 | eot | 8 | 2 |" in lines[2]


def test_interval_figure(tmp_path: Path) -> None:
    table = _table()
    paths = plots.intervals(
        table, x="value", y="channel", low="ci_low", high="ci_high", hue="metric", stem=tmp_path / "board"
    )
    check_png(paths[0])
    assert paths[1].stat().st_size > 0
