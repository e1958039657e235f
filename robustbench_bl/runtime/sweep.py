"""Run a grid of cells through a measurement function into the results store, skipping stored cells.

A cell is a dict of coordinates (study, model, channel, strength, seed, ...); the measurement
returns tidy rows (metric, value, ...) and the runner adds the cell, the wall time and versions.
Cells run on an executor: `local` (in this process) or `ray` (one Ray task per cell, on a local
instance or the cluster at RAY_ADDRESS). Either way only this driver writes the store, once per
cell, in order of completion; a rerun skips what is stored.
"""

from __future__ import annotations

import itertools
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import pandas as pd
from tqdm.auto import tqdm

from robustbench_bl.runtime.results import ResultsStore, cell_key
from robustbench_bl.validation import check_choice, check_positive_int, check_range
from robustbench_bl.versions import versions

Measure = Callable[[dict[str, Any]], list[dict[str, Any]]]
EXECUTORS = ("local", "ray")


class SweepError(RuntimeError):
    """Some cells failed; every other cell was measured and stored."""

    def __init__(self, failures: list[tuple[Mapping[str, Any], str]]) -> None:
        self.failures = failures
        cells = "; ".join(str(c) for c, _ in failures[:5])
        super().__init__(f"{len(failures)} cell(s) failed ({cells}); first error:\n{failures[0][1]}")


class Outcome(NamedTuple):
    """One finished cell: its rows, or the error text when it failed."""

    cell: Mapping[str, Any]
    rows: list[dict[str, Any]] | None
    error: str | None
    wall: float


def _timed(measure: Measure, cell: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    """The cell's rows and wall time; rows that are not a list of dicts fail this cell, not the sweep."""
    start = time.perf_counter()
    rows = measure(cell)
    if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
        raise TypeError(f"measure must return a list of dicts (tidy rows), got {type(rows).__name__}: {rows!r:.80}")
    return rows, time.perf_counter() - start


class Executor(Protocol):
    def map(self, measure: Measure, cells: Sequence[Mapping[str, Any]]) -> Iterator[Outcome]:
        """Yield one Outcome per cell, in order of completion."""
        ...


class LocalExecutor:
    """Cells one after another in this process."""

    def map(self, measure: Measure, cells: Sequence[Mapping[str, Any]]) -> Iterator[Outcome]:
        for cell in cells:
            try:
                rows, wall = _timed(measure, dict(cell))
                yield Outcome(cell, rows, None, wall)
            except Exception:
                yield Outcome(cell, None, traceback.format_exc(), 0.0)


class RayExecutor:
    """One Ray task per cell; Ray retries a task whose worker died (`max_retries`).

    Connects to `address` (default $RAY_ADDRESS) or starts a local instance with `num_cpus`.
    `num_gpus` is what each task reserves (fractions share a GPU).
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus_per_task: float = 1.0,
        num_gpus: float = 0.0,
        max_retries: int = 3,
        num_cpus: int | None = None,
    ) -> None:
        try:
            import ray
        except ImportError as err:
            raise ImportError("executor='ray' needs Ray: pip install 'robustbench-bl[ray]'") from err
        check_range(num_gpus, "num_gpus", 0.0, float("inf"))
        check_range(num_cpus_per_task, "num_cpus_per_task", 0.0, float("inf"))
        check_positive_int(max_retries, "max_retries", minimum=0)
        self.ray = ray
        self.options = {"num_cpus": num_cpus_per_task, "num_gpus": num_gpus, "max_retries": max_retries}
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)

    def map(self, measure: Measure, cells: Sequence[Mapping[str, Any]]) -> Iterator[Outcome]:
        task = self.ray.remote(_timed).options(**self.options)
        fn = self.ray.put(measure)  # shipped once, not once per cell
        pending = {task.remote(fn, dict(cell)): cell for cell in cells}
        while pending:
            done, _ = self.ray.wait(list(pending), num_returns=1)
            cell = pending.pop(done[0])
            try:
                rows, wall = self.ray.get(done[0])
                yield Outcome(cell, rows, None, wall)
            except Exception:
                yield Outcome(cell, None, traceback.format_exc(), 0.0)


def make_executor(name: str = "local", **options: Any) -> Executor:
    """'local' or 'ray' (options: address, num_gpus, num_cpus_per_task, max_retries, num_cpus)."""
    check_choice(name, "executor", EXECUTORS)
    return LocalExecutor() if name == "local" else RayExecutor(**options)


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """The cartesian product of named axes as a list of cells, in row-major order."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(list(v) for v in axes.values()))]


def run(
    cells: Iterable[Mapping[str, Any]],
    measure: Measure,
    store: ResultsStore,
    *,
    executor: Executor | str = "local",
    progress: bool = True,
    desc: str = "sweep",
) -> pd.DataFrame:
    """Measure every cell not yet in `store`, appending its rows as soon as it finishes.

    Returns the whole stored table (old and new rows) and refreshes the CSV beside the store.
    Raises SweepError after the sweep when cells failed; the others are stored all the same.
    """
    runner = make_executor(executor) if isinstance(executor, str) else executor
    cells = [dict(c) for c in cells]
    done = store.keys()
    todo, seen = [], set(done)
    for cell in cells:
        key = cell_key(cell)
        if key not in seen:
            seen.add(key)
            todo.append(cell)
    stamp = {f"version_{k}": v for k, v in versions().items()}
    failures = []
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=desc, disable=not progress, unit="cell")
    for cell, rows, error, wall in runner.map(measure, todo):
        bar.update()
        if error is not None:
            failures.append((cell, error))
            continue
        assert rows is not None  # a cell without an error returned its rows
        store.append(cell, [{**row, "wall_seconds": wall, **stamp} for row in rows])
    bar.close()
    table = store.frame()  # read the store once for both the CSV and the caller
    store.to_csv(table=table)
    if failures:
        raise SweepError(failures)
    return table
