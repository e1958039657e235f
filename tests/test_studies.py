"""Every study runs end to end on its smoke preset: tidy CSV with the expected columns and rows,
a valid PNG figure, and a rerun that recomputes nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from PIL import Image

STUDIES = Path(__file__).resolve().parents[1] / "studies"
COMMON_COLUMNS = {"study", "metric", "value", "seed", "wall_seconds", "version_torch", "version_robustbench-bl"}


def load_study(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"study_{name}", STUDIES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert min(image.size) > 100


def run_smoke(name: str, out: Path, *extra: str) -> pd.DataFrame:
    module = load_study(name)
    module.main(["--preset", "smoke", "--out", str(out), "--quiet", *extra])
    table = pd.read_csv(out / "results.csv")
    assert COMMON_COLUMNS <= set(table.columns)
    check_png(out / f"{name}.png")
    assert (out / f"{name}.pdf").stat().st_size > 0
    return table


def test_noise_robustness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_study("noise_robustness")
    p = module.PRESETS["smoke"]
    table = run_smoke("noise_robustness", tmp_path)
    assert len(table) == len(p["rates"]) * (len(p["gauss"]) + len(p["uniform"]))
    assert {"train_compress", "noise", "level", "distortion", "model_key", "data_source"} <= set(table.columns)
    assert table.value.between(0, 1).all()
    clean = table[table.level == 0]
    assert (clean.distortion == 0).all()
    assert (table[table.level > 0].distortion > 0).all()
    # a second run finds every cell stored and measures nothing
    monkeypatch.setattr(module, "evaluate", lambda *a, **k: pytest.fail("a stored cell was measured again"))
    module.main(["--preset", "smoke", "--out", str(tmp_path), "--quiet"])
