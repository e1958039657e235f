"""Run a grid of cells through a measurement function into the results store, skipping stored cells.

A cell is a dict of coordinates (study, model, channel, strength, seed, ...); the measurement
returns tidy rows (metric, value, ...) and the runner adds the cell, the wall time and versions.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from robustbench_bl.results import ResultsStore, cell_key
from robustbench_bl.versions import versions

Measure = Callable[[dict[str, Any]], list[dict[str, Any]]]


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """The cartesian product of named axes as a list of cells, in row-major order."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(list(v) for v in axes.values()))]


def run(
    cells: Iterable[Mapping[str, Any]],
    measure: Measure,
    store: ResultsStore,
    *,
    progress: bool = True,
    desc: str = "sweep",
) -> pd.DataFrame:
    """Measure every cell not yet in `store`, appending its rows as soon as it finishes.

    Returns the whole stored table (old and new rows) and refreshes the CSV beside the store.
    """
    cells = [dict(c) for c in cells]
    done = store.keys()
    todo = [c for c in cells if cell_key(c) not in done]
    stamp = {f"version_{k}": v for k, v in versions().items()}
    for cell in tqdm(todo, desc=desc, disable=not progress, unit="cell", initial=len(cells) - len(todo), total=len(cells)):
        start = time.perf_counter()
        rows = measure(dict(cell))
        wall = time.perf_counter() - start
        store.append(cell, [{**row, "wall_seconds": wall, **stamp} for row in rows])
    store.to_csv()
    return store.frame()
