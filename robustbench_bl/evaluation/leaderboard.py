"""A RobustBench-style leaderboard of `robustbench_bl.benchmark` results: tidy rows, ranking, Markdown.

RobustBench ranks deterministic models by robust accuracy; this board ranks the randomized and lossy
defenses it leaves out the same way, with intervals and the attacks and threat models behind each row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

#: Benchmark row entries that become the metric rows' values and intervals.
_MEASURED = {
    "clean_accuracy": ("clean_ci_low", "clean_ci_high"),
    "robust_accuracy": ("robust_ci_low", "robust_ci_high"),
}
#: What the board shows about how each row was measured.
SETTINGS = ("norm", "eps", "threat", "eot_samples", "repeats", "suite", "warnings")


def rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A benchmark row (`BenchmarkResult.row`) as tidy rows: metric clean_accuracy and robust_accuracy,
    each with its 95% interval (ci_low, ci_high) and every setting of the protocol."""
    measured = {key for metric, bounds in _MEASURED.items() for key in (metric, *bounds)}
    settings = {k: v for k, v in result.items() if k not in measured and not k.startswith("version_")}
    return [
        {**settings, "metric": metric, "value": result[metric], "ci_low": result[low], "ci_high": result[high]}
        for metric, (low, high) in _MEASURED.items()
    ]


def rank(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One line per defense (identified by `keys`), ranked by robust accuracy, then clean accuracy:
    rank, keys, clean and robust accuracy with intervals, then the `SETTINGS` that produced them."""
    clean = table[table.metric == "clean_accuracy"].set_index(list(keys))
    robust = table[table.metric == "robust_accuracy"].set_index(list(keys))
    board = pd.DataFrame(index=robust.index)
    for name, part in (("clean", clean), ("robust", robust)):
        board[name] = part.value
        board[f"{name}_ci_low"] = part.ci_low
        board[f"{name}_ci_high"] = part.ci_high
    board = board.join(robust[[c for c in SETTINGS if c in robust.columns]])
    board = board.reset_index().sort_values(["robust", "clean"], ascending=False, kind="stable")
    board.insert(0, "rank", range(1, len(board) + 1))
    return board.reset_index(drop=True)


def percent_intervals(board: pd.DataFrame) -> pd.DataFrame:
    """The board with clean and robust accuracy also as text, 'value [low, high]' in percent (column
    'clean (95% CI)', ...), in place of their interval bounds."""
    shown = board.copy()
    for name in ("clean", "robust"):
        low, high = f"{name}_ci_low", f"{name}_ci_high"
        if {name, low, high} <= set(shown.columns):
            shown[f"{name} (95% CI)"] = [
                f"{100 * v:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
                for v, lo, hi in zip(shown[name], shown[low], shown[high])
            ]
            shown = shown.drop(columns=[low, high])
    return shown


def to_markdown(board: pd.DataFrame, columns: Sequence[str]) -> str:
    """The ranked board as a Markdown table: accuracies as 'value [low, high]' in percent, then `columns`."""

    def cell(value: Any, column: str) -> str:
        if pd.isna(value):
            return ""
        if column == "eps":
            return f"{value * 255:.3g}/255"  # images live in [0, 1]; budgets read as 8-bit levels
        return f"{value:g}" if isinstance(value, float) else str(value).replace("|", "\\|")

    header = ["rank", *columns, "clean (95% CI)", "robust (95% CI)", *[c for c in SETTINGS if c in board.columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in percent_intervals(board)[header].to_dict("records"):
        lines.append("| " + " | ".join(cell(row[c], c) for c in header) + " |")
    return "\n".join(lines) + "\n"


def result_board(paths: Sequence[Path]) -> pd.DataFrame:
    """Benchmark result files (`BenchmarkResult.save`) as one board ranked by robust accuracy, then
    clean accuracy: rank, model, data, defense, threat model, accuracies with 95% intervals, the
    flags raised, whether the sanity checks passed (and which failed), forward passes, time and the file. A damaged file is a ValueError naming it."""
    records = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            clean, robust = doc["clean_accuracy"], doc["robust_accuracy"]
            records.append(
                {
                    "model": doc["model"],
                    "dataset": doc["data"]["dataset"],
                    "channel": doc["defense"]["channel"],
                    "votes": doc["defense"]["votes"],
                    "norm": doc["threat_model"]["norm"],
                    "eps": doc["threat_model"]["eps"],
                    "threat": doc["attacker"]["threat"],
                    "n": doc["data"]["n"],
                    "clean": clean["value"],
                    "clean_ci_low": clean["ci95"][0],
                    "clean_ci_high": clean["ci95"][1],
                    "robust": robust["value"],
                    "robust_ci_low": robust["ci95"][0],
                    "robust_ci_high": robust["ci95"][1],
                    "flags": ", ".join(name for name, raised in doc["flags"].items() if raised) or "none",
                    "trustworthy": doc["trustworthy"],
                    "failed_checks": ", ".join(c["name"] for c in doc["checks"] if c["passed"] is False) or "none",
                    "forward_passes": doc["forward_passes"],
                    "seconds": doc["seconds"],
                    "file": str(path),
                }
            )
        except (ValueError, KeyError, TypeError, IndexError) as err:  # JSON and decode errors are ValueErrors
            raise ValueError(f"{path} is not a benchmark result file ({type(err).__name__}: {err})") from None
    board = pd.DataFrame(records).sort_values(["robust", "clean"], ascending=False).reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    return board
