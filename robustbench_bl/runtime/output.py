"""Where a run's results go: the output folder of a study or an `rbl attack` run, with its results
store, its figures and its finding (`finding.json` for `rbl report` and the tests, `finding.txt` to read)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from robustbench_bl.evaluation.stats import Finding
    from robustbench_bl.runtime.results import ResultsStore
    from robustbench_bl.runtime.sweep import Executor


@dataclass
class RunFolder:
    """The output folder of a study or `rbl attack` run: `results.jsonl` (the store), `results.csv`,
    `finding.json` / `finding.txt` and figures."""

    name: str
    out: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunFolder:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        return cls(args.study, out)

    @staticmethod
    def executor(args: argparse.Namespace) -> Executor:
        """The sweep executor the command line asks for."""
        from robustbench_bl.runtime.sweep import make_executor

        if args.executor == "ray":
            return make_executor("ray", address=args.ray_address, num_gpus=args.num_gpus)
        return make_executor("local")

    @property
    def store(self) -> ResultsStore:
        from robustbench_bl.runtime.results import ResultsStore

        return ResultsStore(self.out / "results.jsonl")

    def conclude(self, finding: Finding, figures: Sequence[Path] = ()) -> None:
        """Print the study's finding, keep it beside its results as `finding.json` (the fields `rbl
        report` and the tests read) and `finding.txt` (the text a person reads), and say which files
        the study wrote."""
        print(finding)
        (self.out / "finding.txt").write_text(f"{finding}\n", encoding="utf-8")
        (self.out / "finding.json").write_text(json.dumps(finding.to_json(), indent=2) + "\n", encoding="utf-8")
        written = [self.store.path.with_suffix(".csv"), self.out / "finding.json", self.out / "finding.txt", *figures]
        print(f"wrote {', '.join(map(str, written))}")

    def figure(self, stem: str | None = None) -> Path:
        """Stem (no suffix) of a figure in the output folder."""
        return self.out / (stem or self.name)
