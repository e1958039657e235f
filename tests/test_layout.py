"""The repository's shape stays what the docs say: the layout table (docs/design.md) matches the tree, the
README's example runs as printed, and the spectral core imports nothing beyond torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DESIGN = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
PACKAGE = ROOT / "robustbench_bl"


def layout_paths() -> list[str]:
    """The paths in the first column of the layout table (docs/design.md)."""
    table = DESIGN.split("## Layout of the repository", 1)[1].split("\n## ", 1)[0]
    return [p for row in re.findall(r"^\| (.+?) \|", table, re.M) for p in re.findall(r"`([^`]+)`", row)]


def test_every_path_in_the_layout_table_exists() -> None:
    paths = layout_paths()
    assert len(paths) > 10
    missing = [p for p in paths if not (ROOT / p.rstrip("/")).exists()]
    assert missing == []


def test_every_part_of_the_package_is_in_the_layout_table() -> None:
    listed = {p.rstrip("/") for p in layout_paths()}
    parts = {
        f"robustbench_bl/{p.name}"
        for p in PACKAGE.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and not p.name.startswith("_"))
    }
    assert sorted(parts - listed) == []


def readme_example() -> str:
    section = README.split("## A short example", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def readme_blocks(heading: str, language: str) -> list[str]:
    """The code blocks of `language` in the README section `heading`, in order."""
    section = README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split(f"```{language}\n")[1:]]


@pytest.mark.xdist_group("example")
def test_evaluate_your_own_model_runs_as_printed(tmp_path: Path) -> None:
    """The section's factory module, its script and its two commands, run as printed on the
    packaged sample (the weights are the factory's initialization: the point is that it runs)."""
    env = {k: v for k, v in os.environ.items() if k != "RBL_DATA"} | {"RBL_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    module, script = readme_blocks("Evaluate your own model", "python")
    (tmp_path / "my_package.py").write_text(module)
    (tmp_path / "script.py").write_text(script)
    prepare = "import torch, my_package; torch.save(my_package.make_net().state_dict(), 'my_net.pt')"
    subprocess.run([sys.executable, "-c", prepare], cwd=tmp_path, env=env, check=True, timeout=120)
    done = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("-> my-net.benchmark.json")
    document = json.loads((tmp_path / "my-net.benchmark.json").read_text())
    assert document["data"]["n"] == 100 and document["defense"]["channel"] == "cd:3"
    rbl = str(Path(sys.executable).with_name("rbl"))
    (command,) = readme_blocks("Evaluate your own model", "bash")
    for line in command.strip().splitlines():
        argv = line.split("#", 1)[0].split()
        assert argv[0] == "rbl"
        done = subprocess.run([rbl, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "results" / "mine" / "report.html").read_text()
    assert "benchmark results" in page and "my_package:make_net" in page


@pytest.mark.xdist_group("example")
def test_readme_example_runs_as_printed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RBL_DATA"} | {"RBL_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    (tmp_path / "example.py").write_text(readme_example())
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "packaged:" in out and "robust_accuracy" in out and "M1:" in out and "M2:" in out


def test_spectral_imports_nothing_beyond_torch() -> None:
    """`import robustbench_bl.spectral` costs torch and this package's own small modules only:
    no pandas, scipy, matplotlib, foolbox or the attack and study code (timed in benchmarks/imports.py)."""
    code = (
        "import sys, torch; before = set(sys.modules); import robustbench_bl.spectral; "
        "print(sorted(m for m in set(sys.modules) - before))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    new = eval(done.stdout)
    foreign = [m for m in new if m.split(".")[0] not in ("robustbench_bl", "torch")]
    ours = {m for m in new if m.startswith("robustbench_bl.")}
    assert foreign == []
    assert ours <= {"robustbench_bl.validation"} | {m for m in ours if m.startswith("robustbench_bl.spectral")}


def test_every_folder_of_code_is_a_package_the_wheel_ships() -> None:
    """setuptools ships only folders with an __init__.py: a folder of modules without one would
    work from a checkout and be missing after `pip install .`."""
    from setuptools import find_packages

    shipped = {p.replace(".", "/") for p in find_packages(ROOT, include=["robustbench_bl*"])}
    folders = {str(p.parent.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(folders - shipped) == []


def test_every_data_file_of_the_package_is_in_package_data() -> None:
    """The packaged CIFAR-10 sample, the zoo's weights and cards and the CUDA kernels must be in
    the wheel: each non-Python file in the package matches a package-data pattern (glob rules)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {path for pattern in patterns["robustbench_bl"] for path in PACKAGE.glob(pattern)}
    data = {
        p
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert sorted(str(p.relative_to(PACKAGE)) for p in data - shipped) == []
