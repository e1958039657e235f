"""Print the README's zoo table from the shipped cards, so its numbers are the cards' numbers.

.venv/bin/python tools/zoo_table.py
"""

from __future__ import annotations

from robustbench_bl import zoo


def main() -> None:
    print(
        "| model | band | seed | widths, stem | accuracy, 10k test | with flip TTA | accuracy, packaged 1k sample | discarded per layer (whiten, b1.conv1, b1.conv2, b2.conv1, b2.conv2, b3.conv1, b3.conv2) | train min | threads | precision | epochs |"
    )
    print("|---|---|---:|---|---:|---:|---:|---|---:|---:|---|---:|")
    for name in zoo.names():
        c = zoo.card(name)
        band = f"energy {c['energy']}" if c["energy"] is not None else f"static {c['compress_rate'] or 0:.0%}"
        acc = c["accuracy"]
        layers = ", ".join(f"{v:.2f}" for v in c["discarded_per_layer"].values())
        print(
            f"| `{name}` | {band} | {c['seed']} | {'/'.join(map(str, c['widths']))}, {c.get('stem', 'whiten')} | "
            f"{acc['full_test']['accuracy']:.4f} | {acc['full_test_flip_tta']:.4f} | {acc['sample_test']['accuracy']:.3f} | "
            f"{layers} | {c['train_seconds'] / 60:.1f} | {c['torch_threads']} | {', '.join(c.get('precision', ['float32']))} | "
            f"{c['epochs']} |"
        )


if __name__ == "__main__":
    main()
