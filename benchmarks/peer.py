"""Band-limited convolution at 0% against the peer FFT-convolution library fft-conv-pytorch.

Both compute the same linear convolution through the Fourier domain; timed round-robin
(forward+backward) with saved-for-backward bytes, on the batch-128/32 layers of spectral.py.
The peer is not a dependency: `pip install fft-conv-pytorch` first.

    .venv/bin/python benchmarks/peer.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch
from spectral import _fb, print_table, round_robin  # benchmarks/spectral.py, beside this script

from robustbench_bl.cli import ArgumentParser, command_line, positive_int
from robustbench_bl.runtime.profiling import saved_bytes
from robustbench_bl.spectral.functional import band_limited_conv

LAYERS = ((2, 32, 64, 64, 32, 3), (2, 32, 64, 64, 32, 7), (1, 32, 128, 256, 274, 5), (1, 32, 256, 128, 272, 3))


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--threads", type=positive_int, default=2)
    args = parser.parse_args(argv)
    try:
        from fft_conv_pytorch import fft_conv
    except ImportError:
        parser.error("the peer library is not installed: pip install fft-conv-pytorch")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for d, n, c, o, size, k in LAYERS:
        x = torch.randn(n, c, *(size,) * d, requires_grad=True)
        w = torch.randn(o, c, *(k,) * d, requires_grad=True)
        fns = {
            "ours": lambda: band_limited_conv(x, w, None, 1, k // 2)[0],
            "peer": lambda: fft_conv(x, w, None, padding=k // 2),
        }
        torch.testing.assert_close(fns["ours"](), fns["peer"](), rtol=1e-3, atol=1e-3)  # the same convolution
        fb = round_robin({name: _fb(fn) for name, fn in fns.items()}, args.repeats)
        saved = {name: saved_bytes(fn) for name, fn in fns.items()}
        rows.append(
            dict(
                layer=f"{d}D {n}x{c}->{o}, {size}^{d}, k={k}",
                ours_fb_ms=1e3 * fb["ours"],
                peer_fb_ms=1e3 * fb["peer"],
                ours_faster=fb["peer"] / fb["ours"],
                ours_saved_mb=saved["ours"] / 2**20,
                peer_saved_mb=saved["peer"] / 2**20,
                peer_saves_x=saved["peer"] / saved["ours"],
            )
        )
    print_table(rows)


if __name__ == "__main__":
    sys.exit(command_line(main))
