"""The append-only results store: tidy rows, written cell by cell, so a killed sweep resumes.

Each finished cell is one JSON line `{"key": ..., "cell": {...}, "rows": [...]}` appended with a
single write under an exclusive lock: a crash mid-write can only leave a partial last line, which
readers skip and the next writer seals off, so every stored cell stays intact. `to_csv` writes
the long table that pandas and seaborn read directly.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)


def cell_key(cell: Mapping[str, Any]) -> str:
    """A stable hash of a cell's coordinates (order of keys does not matter)."""
    blob = json.dumps(dict(cell), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _jsonable(value: Any) -> Any:
    """Plain JSON values for a row: numpy/torch scalars become numbers, NaN becomes null."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _parse(raw: bytes) -> dict[str, Any] | str:
    """One stored line as its record {"key": str, "cell": {...}, "rows": [{...}, ...]}, or a
    sentence saying what is wrong with it."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8"
    except json.JSONDecodeError as err:
        return f"not JSON: {err.msg}"
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if not isinstance(record.get("key"), str) or not isinstance(record.get("cell"), dict):
        return "no string 'key' or object 'cell'"
    rows = record.get("rows")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        return "'rows' is not a list of objects"
    return record


class ResultsStore:
    """Rows of one study in `path` (a .jsonl file); `has(cell)` tells which cells are done."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.suffix != ".jsonl":
            raise ValueError(f"path must end in .jsonl, got {str(path)!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _records(self) -> list[dict[str, Any]]:
        """Every intact record, in file order; damaged lines are skipped with a warning, never fatal."""
        if not self.path.exists():
            return []
        records = []
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                if not raw.endswith(b"\n"):
                    log.warning("%s: skipping an unfinished last line (a writer was interrupted)", self.path)
                    continue
                parsed = _parse(raw)
                if isinstance(parsed, dict):
                    records.append(parsed)
                else:
                    log.warning("%s:%d: skipping a damaged line (%s)", self.path, number, parsed)
        return records

    def keys(self) -> set[str]:
        """Keys of every stored cell."""
        return {r["key"] for r in self._records()}

    def has(self, cell: Mapping[str, Any]) -> bool:
        return cell_key(cell) in self.keys()

    def append(self, cell: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]) -> None:
        """Store the rows of a finished cell; each row is stored with the cell's coordinates."""
        rows = [{k: _jsonable(v) for k, v in {**cell, **row}.items()} for row in rows]
        record = {"key": cell_key(cell), "cell": {k: _jsonable(v) for k, v in cell.items()}, "rows": rows}
        line = (json.dumps(record, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # seal off a line left unfinished by a killed writer
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def frame(self) -> pd.DataFrame:
        """Every stored row as one long DataFrame (the first record of a cell wins on duplicates)."""
        seen: set[str] = set()
        rows = []
        for record in self._records():
            if record["key"] in seen:
                continue
            seen.add(record["key"])
            rows.extend(record["rows"])
        return pd.DataFrame(rows)

    def to_csv(self, path: str | os.PathLike[str] | None = None, table: pd.DataFrame | None = None) -> Path:
        """Write the table (or `table`, when the caller already read it) as CSV, beside the store
        with the same name by default, atomically; return its path."""
        out = Path(path) if path is not None else self.path.with_suffix(".csv")
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        (self.frame() if table is None else table).to_csv(tmp, index=False)
        os.replace(tmp, out)
        return out
