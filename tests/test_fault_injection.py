"""Fault injection: the main study (stochastic noise channels) is SIGKILLed at several moments,
during start-up and between or inside cells, then run to the end; its CSV must equal an
uninterrupted run's value for value, with every cell stored exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

STUDY = Path(__file__).resolve().parents[1] / "studies" / "noise_robustness.py"
#: Kill once start-up has run this long (no cell yet), then once the store holds 1, 2 and 4 of its 8
#: cells, plus a seeded random delay of up to 20 ms, so that kills land inside cells as well (a
#: smoke cell takes ~25 ms on a 2-core CPU: one noise draw and one LeNet pass over 100 images).
KILLS = (("start-up", 0), ("cells", 1), ("cells", 2), ("cells", 4))
TIMEOUT = 240.0


def _command(out: Path) -> list[str]:
    return [sys.executable, str(STUDY), "--preset", "smoke", "--out", str(out), "--quiet"]


def _stored(out: Path) -> int:
    store = out / "results.jsonl"
    return store.read_bytes().count(b"\n") if store.exists() else 0


def _run_and_kill(out: Path, env: dict[str, str], after_cells: int, delay: float) -> bool:
    """Start the study; SIGKILL it once the store holds `after_cells` cells and `delay` has passed.
    Returns whether the kill happened before the study finished on its own."""
    process = subprocess.Popen(_command(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT
    try:
        while process.poll() is None and _stored(out) < after_cells:
            assert time.monotonic() < deadline, "the study made no progress"
            time.sleep(0.002)
        time.sleep(delay)
        if process.poll() is not None:
            return False
        process.send_signal(signal.SIGKILL)
        process.wait(TIMEOUT)
        return True
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.xdist_group("fault_injection")
def test_killed_study_resumes_to_the_uninterrupted_table(tmp_path: Path) -> None:
    env = {**os.environ, "RBL_CHECKPOINTS": str(tmp_path / "checkpoints"), "RBL_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_command(reference), env=env, check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT)
    expected = pd.read_csv(reference / "results.csv")

    rng = random.Random(0)
    kills = 0
    for moment, cells in KILLS:
        delay = 2.0 if moment == "start-up" else rng.uniform(0, 0.02)
        kills += _run_and_kill(killed, env, cells, delay)
    assert kills >= 3, "the study finished before most kills: the test did not interrupt it"
    assert 0 < _stored(killed) < len(expected), "the kills left no partial store to resume"
    subprocess.run(_command(killed), env=env, check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT)

    keys = [record["key"] for record in map(_parse, (killed / "results.jsonl").read_bytes().splitlines()) if record]
    assert len(keys) == len(set(keys)) == len(expected), "a cell was lost or stored twice"
    got = pd.read_csv(killed / "results.csv")
    pd.testing.assert_frame_equal(got.drop(columns="wall_seconds"), expected.drop(columns="wall_seconds"))


def _parse(line: bytes) -> dict | None:
    """A stored record, or None for a line a kill cut short (the store skips those too)."""
    try:
        return json.loads(line)
    except ValueError:
        return None
