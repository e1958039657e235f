"""A study as an object, and the one runner every study goes through.

A study declares its science: typed presets, the models it needs (`prepare`), the grid of cells,
the measurement of one cell, its figures and its finding, plus the studies whose results it reads
(`requires`). `Study.main` owns everything else, once for all studies: the command line, the
output folder, the rank-0 guard under torchrun, the resumable sweep and its store, the summary,
the finding files and the list of what was written.
"""

from __future__ import annotations

import argparse
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import pandas as pd
from torch import nn

from robustbench_bl.cli import ArgumentParser, existing_file, parse_args
from robustbench_bl.data import Dataset
from robustbench_bl.evaluation.stats import Finding
from robustbench_bl.runtime import distributed, sweep
from robustbench_bl.runtime.output import RunFolder
from robustbench_bl.studies.common import Trained, trained_models
from robustbench_bl.training import TrainConfig

P = TypeVar("P")
K = TypeVar("K", bound=Hashable)


class TestSized(Protocol):
    """A preset that says how many test images its study reads."""

    @property
    def test(self) -> int: ...


PT = TypeVar("PT", bound=TestSized)
Cell = dict[str, Any]
Row = dict[str, Any]
#: What a study's `sweep` calls to measure cells: (cells, measure, description) -> the stored table.
Sweeper = Callable[[Iterable[Cell], Callable[[Cell], list[Row]], str], pd.DataFrame]


class Study(ABC, Generic[P]):
    """One study: `name`, a one-line `title`, typed `presets` (smoke / quick / paper), the data set
    its --data option reads (None: no CIFAR-10 from --data) and the studies whose results it reads."""

    name: ClassVar[str]
    title: ClassVar[str]
    presets: ClassVar[Mapping[str, Any]]
    dataset: ClassVar[str | None] = "cifar10"
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.p: P = self.chosen_preset(args)
        self.folder = RunFolder.from_args(args)

    @classmethod
    def chosen_preset(cls, args: argparse.Namespace) -> P:
        """The preset --preset names, its model replaced by --model where the preset has one and its
        number of test images by --images (an error for a study whose preset draws none)."""
        chosen = cls.presets[args.preset]
        fields = {f.name for f in dataclasses.fields(chosen)}
        model = getattr(args, "model", None)
        if model is not None and "model" in fields:
            chosen = dataclasses.replace(chosen, model=model)
        images = getattr(args, "images", None)
        if images is not None:
            if "test" not in fields:
                raise ValueError(f"--images: {cls.name} does not draw a number of test images; leave the option out")
            chosen = dataclasses.replace(chosen, test=images)
        return chosen

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        """The study's own command-line options beside the common ones: by default one per
        required study, `--NAME PATH` (its results.csv)."""
        for name in cls.requires:
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                type=existing_file,
                default=None,
                help=f"{name}'s results.csv (default: results.csv of {name} beside --out, run there first when it "
                "lacks what this study needs)",
            )

    def required(self, name: str, complete: Callable[[Path], bool]) -> Path:
        """The results.csv of required study `name` for which `complete(path)` holds. A file given on
        the command line must be complete (else a clear error); the default one, beside --out, is
        computed first by running `name` with this run's settings when it is missing or incomplete."""
        given = getattr(self.args, name)
        if given is not None:
            if not complete(Path(given)):
                raise ValueError(
                    f"--{name.replace('_', '-')} {given} lacks what {self.name} needs from {name} for this model and "
                    f"preset; run `rbl study {name}` with the same options, or leave the option out to have it run"
                )
            return Path(given)
        folder = Path(self.args.out).parent / name
        path = folder / "results.csv"
        if not (path.is_file() and complete(path)):
            print(f"{self.name} needs {name}'s results, not at {path}: running {name} first")
            from robustbench_bl import studies

            studies.module(name).main([*self.shared_argv(), "--out", str(folder)])
            if not complete(path):
                raise ValueError(f"{name} ran into {folder} but its results there still lack what {self.name} needs")
        return path

    def shared_argv(self) -> list[str]:
        """The common options of this run, for running a required study with the same settings."""
        a = self.args
        argv = ["--preset", a.preset, "--seed", str(a.seed), "--device", str(a.device), "--precision", a.precision]
        argv += ["--executor", a.executor, "--num-gpus", str(a.num_gpus)]
        for option, value in (
            ("--data", a.data),
            ("--model", getattr(a, "model", None)),
            ("--images", getattr(a, "images", None)),
            ("--checkpoints", a.checkpoints),
            ("--ray-address", a.ray_address),
        ):
            if value is not None:
                argv += [option, str(value)]
        return argv + (["--quiet"] if a.quiet else [])

    def prepare(self) -> None:
        """Load the data and get the models (under torchrun, on every rank: each trains its share)."""

    @abstractmethod
    def cells(self) -> list[Cell]:
        """The grid: one dict of coordinates per measurement, the store's key."""

    @abstractmethod
    def measure(self, cell: Cell) -> list[Row]:
        """The result rows of one cell."""

    def sweep(self, measure_cells: Sweeper) -> pd.DataFrame:
        """Measure the grid; this run's rows (a store may also hold other runs'). Studies that refine
        their grid from what they measured override this."""
        cells = self.cells()
        return current(measure_cells(cells, self.measure, self.name), cells)

    @abstractmethod
    def figures(self, table: pd.DataFrame) -> list[Path]:
        """Draw the study's figures into the output folder; the files written."""

    def summary(self, table: pd.DataFrame) -> str:
        """The table a person reads in the terminal (nothing by default)."""
        return ""

    @abstractmethod
    def finding(self, table: pd.DataFrame) -> Finding:
        """The verdict on the paper's claim from this run's rows."""

    def figure(self, stem: str | None = None) -> Path:
        """Stem (no suffix) of a figure in the output folder."""
        return self.folder.figure(stem)

    @property
    def progress(self) -> bool:
        return not self.args.quiet

    @classmethod
    def parse(cls, argv: Sequence[str] | None) -> argparse.Namespace:
        parser = ArgumentParser(prog=f"rbl study {cls.name}", description=cls.title)
        cls.add_options(parser)
        return parse_args(cls.name, cls.title, argv, parser, dataset=cls.dataset)

    @classmethod
    def main(cls, argv: Sequence[str] | None = None) -> pd.DataFrame:
        """Run the study from its command line: every cell not yet stored, then the figures, the
        summary and the finding (`finding.json`, `finding.txt`). Returns this run's rows."""
        study = cls(cls.parse(argv))
        study.prepare()
        if not distributed.is_main():
            return pd.DataFrame()  # under torchrun, rank 0 alone runs the sweep
        executor = study.folder.executor(study.args)  # one executor for every sweep of the run

        def measure_cells(cells: Iterable[Cell], measure: Callable[[Cell], list[Row]], desc: str) -> pd.DataFrame:
            return sweep.run(cells, measure, study.folder.store, executor=executor, progress=study.progress, desc=desc)

        table = study.sweep(measure_cells)
        paths = study.figures(table)
        if text := study.summary(table):
            print(text)
        study.folder.conclude(study.finding(table), paths)
        return table


def text(frame: pd.DataFrame | pd.Series, digits: int = 3, index: bool = True) -> str:
    """A summary table as the terminal shows it: floats to `digits` places."""
    return frame.to_string(index=index, float_format=lambda v: f"{v:.{digits}f}")


def current(table: pd.DataFrame, cells: Sequence[Cell]) -> pd.DataFrame:
    """The rows of `table` measured for `cells` (a store keeps the rows of earlier runs too)."""
    return table.merge(pd.DataFrame(cells), on=list(cells[0]))


@dataclass(frozen=True)
class TrainedPreset:
    """The preset fields of a study that trains (or takes from the zoo) CIFAR-10 models: the
    architecture, the training budget (images, epochs) and the test images."""

    model: str
    train: int
    test: int
    epochs: int


class TrainedStudy(Study[PT], Generic[PT, K]):
    """A study of trained CIFAR-10 models: the zoo's where it has them, else the checkpoint store's
    (`configs` names them by key). After `prepare`: `models`, `keys`, `meta` and the `test` images."""

    trained: Trained[K]

    @abstractmethod
    def configs(self, train_size: int) -> Mapping[K, TrainConfig]:
        """One training configuration per model key, for a training source of `train_size` images."""

    def prepare(self) -> None:
        self.trained = trained_models(self.args, self.p.test, self.configs)

    @property
    def models(self) -> dict[K, nn.Module]:
        return self.trained.models

    @property
    def keys(self) -> dict[K, str]:
        return self.trained.keys

    @property
    def test(self) -> Dataset:
        return self.trained.test

    def cell(self, model: str, **coordinates: Any) -> Cell:
        """A cell's coordinates with what every cell of a CIFAR-10 study carries (unless given): study,
        dataset, model, the run's seed and the number of test images."""
        common = {"study": self.name, "dataset": "cifar10", "model": model, "seed": self.args.seed, "n": len(self.test)}
        return common | coordinates
