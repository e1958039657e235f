"""Import cost of the spectral core against torch alone: fresh interpreters, run alternately so
machine noise hits both alike; medians and the ratio (issue 15's target: <= 1.10)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from robustbench_bl.cli import ArgumentParser, positive_int

STATEMENTS = {
    "torch": "import torch",
    "robustbench_bl.spectral": "import robustbench_bl.spectral",
    "robustbench_bl": "import robustbench_bl",
    "robustbench_bl.attacks": "import robustbench_bl.attacks",
}


def wall(statement: str) -> float:
    """Seconds for a fresh interpreter to run `statement` and exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=10, help="rounds over all statements (default 10)")
    args = parser.parse_args()
    wall("import torch")  # warm the file cache
    times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    for i in range(args.repeats):
        names = list(STATEMENTS) if i % 2 == 0 else list(reversed(STATEMENTS))
        for name in names:
            times[name].append(wall(STATEMENTS[name]))
    torch_median = statistics.median(times["torch"])
    print(f"| import | median s ({args.repeats} fresh interpreters) | vs torch |\n|---|---:|---:|")
    for name, values in times.items():
        print(f"| `{name}` | {statistics.median(values):.2f} | {statistics.median(values) / torch_median:.2f}x |")


if __name__ == "__main__":
    main()
