"""Build the class-balanced CIFAR-10 sample shipped in robustbench_bl/_sample/cifar10.

Usage: python tools/build_cifar_sample.py ../shared/data/cifar10
The shared copy interleaves classes round-robin (y[i] == i % 10), so any prefix of 10k rows is
class-balanced; the sample takes the first 2,000 training and 1,000 test rows (8.6 MB).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

TRAIN, TEST = 2000, 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder with train_0.npz and test.npz")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "robustbench_bl/_sample/cifar10")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, file, n in (("train", "train_0.npz", TRAIN), ("test", "test.npz", TEST)):
        data = np.load(args.source / file)
        x, y = data["x"][:n], data["y"][:n]
        assert np.bincount(y, minlength=10).tolist() == [n // 10] * 10, "sample must be class-balanced"
        np.savez_compressed(args.out / f"{split}.npz", x=x, y=y)
        print(f"{split}: {len(y)} images -> {args.out / f'{split}.npz'}")


if __name__ == "__main__":
    main()
