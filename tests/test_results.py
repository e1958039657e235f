"""Results store and sweep runner: skip stored cells, survive a killed writer, concurrent appends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from robustbench_bl.runtime.results import ResultsStore, cell_key
from robustbench_bl.runtime.sweep import grid, run


def _measure(cell: dict) -> list[dict]:
    return [{"metric": "square", "value": cell["a"] ** 2}, {"metric": "sum", "value": cell["a"] + cell["b"]}]


def test_grid_is_the_cartesian_product() -> None:
    cells = grid(a=[1, 2], b=["x", "y", "z"])
    assert len(cells) == 6 and cells[0] == {"a": 1, "b": "x"} and cells[-1] == {"a": 2, "b": "z"}


def test_cell_key_ignores_key_order() -> None:
    assert cell_key({"a": 1, "b": 2}) == cell_key({"b": 2, "a": 1}) != cell_key({"a": 1, "b": 3})


def test_rows_are_tidy_and_stored_cells_are_skipped(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.jsonl")
    calls: list[dict] = []

    def counting(cell: dict) -> list[dict]:
        calls.append(cell)
        return _measure(cell)

    table = run(grid(a=[1, 2, 3], b=[10]), counting, store, progress=False)
    assert len(calls) == 3 and len(table) == 6
    assert set(table.columns) >= {"a", "b", "metric", "value", "wall_seconds", "version_torch", "version_python"}
    assert table.loc[(table.a == 3) & (table.metric == "square"), "value"].item() == 9

    table = run(grid(a=[1, 2, 3, 4], b=[10]), counting, store, progress=False)
    assert [c["a"] for c in calls] == [1, 2, 3, 4]  # only the new cell was measured
    assert len(table) == 8
    csv = pd.read_csv(tmp_path / "r.csv")
    assert len(csv) == 8 and set(csv.metric) == {"square", "sum"}


def test_partial_last_line_is_skipped_and_sealed(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.jsonl")
    store.append({"a": 1}, [{"value": 1}])
    with open(store.path, "ab") as fh:
        fh.write(b'{"key": "dead", "cell": {"a": 2}, "rows": [{"va')  # a writer killed mid-line
    assert store.frame()["a"].tolist() == [1]
    store.append({"a": 3}, [{"value": 3}])
    assert store.frame()["a"].tolist() == [1, 3]
    lines = store.path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["cell"] == {"a": 3}


def test_nan_values_are_stored_as_missing(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.jsonl")
    store.append({"a": 1}, [{"value": float("nan")}])
    assert store.frame()["value"].isna().all()


def test_store_path_must_be_jsonl(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"path must end in \.jsonl"):
        ResultsStore(tmp_path / "r.csv")


SWEEP_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from robustbench_bl.runtime.results import ResultsStore
    from robustbench_bl.runtime.sweep import grid, run

    def slow(cell):
        time.sleep(float(sys.argv[2]))
        return [{"metric": "square", "value": cell["a"] ** 2}]

    run(grid(a=range(int(sys.argv[3]))), slow, ResultsStore(sys.argv[1]), progress=False)
    """
)


def test_killed_sweep_keeps_every_row_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(path), "0.05", "1000"])
    deadline = time.time() + 60
    while time.time() < deadline and (not path.exists() or len(path.read_bytes().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = ResultsStore(path).frame()
    assert 5 <= len(stored) < 1000
    assert (stored.value == stored.a**2).all()
    # rerun to completion (fast): no duplicate, no missing cell
    subprocess.run([sys.executable, str(script), str(path), "0", "1000"], check=True)
    final = ResultsStore(path).frame()
    assert sorted(final.a) == list(range(1000))
    assert (final.value == final.a**2).all()


APPEND_SCRIPT = textwrap.dedent(
    """
    import sys
    from robustbench_bl.runtime.results import ResultsStore
    store = ResultsStore(sys.argv[1])
    for i in range(300):
        store.append({"writer": sys.argv[2], "i": i}, [{"value": i, "pad": "x" * 2000}])
    """
)


def test_two_processes_append_without_corruption(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    script = tmp_path / "append.py"
    script.write_text(APPEND_SCRIPT)
    procs = [subprocess.Popen([sys.executable, str(script), str(path), w]) for w in ("A", "B")]
    assert [p.wait() for p in procs] == [0, 0]
    lines = path.read_text().splitlines()
    assert len(lines) == 600
    assert all(json.loads(line)["rows"][0]["pad"] == "x" * 2000 for line in lines)
    table = ResultsStore(path).frame()
    assert sorted(table.groupby("writer").i.apply(sorted).tolist()) == [list(range(300))] * 2
