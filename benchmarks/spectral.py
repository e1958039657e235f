"""Band-limited convolution: time and saved-for-backward bytes against F.conv and the 0% path.

Every variant of a layer is timed round-robin in the same repeats (so machine load hits all of
them alike) and the medians are printed as ratios. Also compares the two ways of computing the
kept band of an input: partial DFT as matrix products (used) and a pruned FFT (measured only).
With --device cuda and CuPy installed, a cupy column times the fused kernels beside backend='torch'.

    .venv/bin/python benchmarks/spectral.py [--repeats 5] [--batch 128] [--threads 2] [--device cpu|cuda]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from robustbench_bl.cli import ArgumentParser, command_line, positive_int
from robustbench_bl.costs import saved_bytes
from robustbench_bl.spectral import band_limited_conv1d, band_limited_conv2d, compression
from robustbench_bl.spectral.backends import get_backend
from robustbench_bl.spectral.functional import _static_band
from robustbench_bl.spectral.transforms import AxisGeometry, analysis, axis_dft

RATES = (0.0, 0.5, 0.85)


def timed(fn: Callable[[], object], device: str = "cpu") -> float:
    """Seconds for fn(); on CUDA, waits for the GPU before and after (launches are asynchronous)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def round_robin(variants: dict, repeats: int, device: str = "cpu") -> dict:
    """Median seconds per variant, all variants timed within each repeat after two warm-ups."""
    for fn in list(variants.values()) * 2:
        fn()
    times: dict[object, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(ts) for name, ts in times.items()}


def conv_case(
    d: int, batch: int, cin: int, cout: int, size: int, k: int, padding: int, repeats: int,
    device: str = "cpu", cupy: bool = False,
) -> list[dict]:  # fmt: skip
    """One layer: F.conv and the band-limited layer at each rate, forward and forward+backward;
    with `cupy`, the band-limited layer also with backend='cupy' (the cupy columns)."""
    x = torch.randn(batch, cin, *(size,) * d, device=device, requires_grad=True)
    w = torch.randn(cout, cin, *(k,) * d, device=device, requires_grad=True)
    conv, blconv = (F.conv1d, band_limited_conv1d) if d == 1 else (F.conv2d, band_limited_conv2d)
    fns = {"conv": lambda: conv(x, w, None, 1, padding)}
    for rate in RATES:
        fns[rate] = lambda rate=rate: blconv(x, w, None, 1, padding, compress_rate=rate, backend="torch")
        if cupy:
            fns["cupy", rate] = lambda rate=rate: blconv(x, w, None, 1, padding, compress_rate=rate, backend="cupy")

    def fwd_bwd(fn):
        def run():
            y = fn()
            y.backward(torch.ones_like(y))

        return run

    with torch.no_grad():
        fwd = round_robin(fns, repeats, device)
    fb = round_robin({name: fwd_bwd(fn) for name, fn in fns.items()}, repeats, device)
    mem = {name: saved_bytes(fns[name]) for name in ("conv", *RATES)}
    rows = []
    layer = f"{d}D {cin}->{cout}, {'x'.join([str(size)] * d)}, k={k}"
    for name in ("conv", *RATES):
        row = dict(
            layer=layer,
            variant="F.conv" if name == "conv" else f"BL {int(100 * name)}%",
            fwd_ms=1e3 * fwd[name],
            fb_ms=1e3 * fb[name],
            saved_mb=mem[name] / 2**20,
            fb_vs_conv=fb[name] / fb["conv"],
            fb_vs_0=fb[name] / fb[0.0],
            saved_vs_0=mem[name] / mem[0.0],
        )
        if cupy:
            fused = ("cupy", name)
            row.update(
                cupy_fwd_ms=1e3 * fwd[fused] if name != "conv" else "-",
                cupy_fb_ms=1e3 * fb[fused] if name != "conv" else "-",
                cupy_fb_vs_torch=fb[fused] / fb[name] if name != "conv" else "-",
            )
        rows.append(row)
    return rows


def pruned_fft_analysis(x: torch.Tensor, n: tuple[int, ...], pad: int, bands: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    """The alternative to partial DFTs: rfft the last axis, keep its kept columns, fft those
    along the first axis, keep the kept rows, put frequencies first (as analysis() returns)."""
    xp = F.pad(x, [pad, n[-1] - x.shape[-1] - pad] * (x.dim() - 1))
    t = torch.fft.rfft(xp, dim=-1)[..., : len(bands[-1])]
    if len(n) == 2:
        t = torch.fft.fft(t, dim=-2)[:, torch.tensor(bands[0])]
    return t.reshape(x.shape[0], -1).T.contiguous()


def transform_case(d: int, batch: int, size: int, k: int, repeats: int) -> list[dict]:
    """Input-spectrum cost: partial DFT matmuls versus pruned FFT, per rate."""
    pad = k // 2
    x = torch.randn(batch, *(size,) * d)
    geom = AxisGeometry(size, k, pad_left=pad, pad_right=pad)
    n = (geom.n,) * d
    rows = []
    for rate in RATES:
        bands = _static_band(n, rate)
        mats = [axis_dft(geom, band, a == d - 1, x.dtype, "cpu").input_analysis for a, band in enumerate(bands)]
        fft = lambda: pruned_fft_analysis(x, n, pad, bands)  # noqa: E731
        dft = lambda: analysis(x, mats)  # noqa: E731
        torch.testing.assert_close(dft().reshape(-1), fft().reshape(-1), rtol=1e-3, atol=1e-3)
        med = round_robin({"dft": dft, "fft": fft}, repeats)
        rows.append(
            dict(
                shape=f"{d}D {'x'.join([str(size)] * d)} pad {pad}, batch {batch}",
                rate=rate,
                kept=compression.fraction_kept(compression.static_mask(n, rate)),
                dft_ms=1e3 * med["dft"],
                fft_ms=1e3 * med["fft"],
                dft_vs_fft=med["dft"] / med["fft"],
            )
        )
    return rows


def print_table(rows: list[dict], digits: int = 2) -> None:
    """Rows of dicts as a markdown table, floats to `digits` places (also used by protocol.py)."""
    keys = list(rows[0])
    cells = [[f"{r[k]:.{digits}f}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" for _ in keys) + "|")
    for c in cells:
        print("| " + " | ".join(c) + " |")
    print()


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the layers run")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(f"torch {torch.__version__}, {where}, median of {args.repeats} round-robin repeats\n")
    cupy = False
    if args.device == "cpu":
        print("cupy columns skipped: the layers run on the CPU; the cupy kernels need CUDA tensors (--device cuda)\n")
    else:
        try:
            cupy = bool(get_backend("cupy", args.device))
        except ValueError as err:
            print(f"cupy columns skipped: {err}\n")
    case = dict(repeats=args.repeats, device=args.device, cupy=cupy)
    rows = []
    for k in (3, 5, 7):
        rows += conv_case(2, args.batch, 64, 64, 32, k, k // 2, **case)
    # The FCN's layers (1 -> 128, k=8; 128 -> 256, k=5; 256 -> 128, k=3) on a length-270 series,
    # 'same' padding as the model applies it (explicitly, before an unpadded conv).
    for cin, cout, k in ((1, 128, 8), (128, 256, 5), (256, 128, 3)):
        rows += conv_case(1, args.batch // 4, cin, cout, 270 + k - 1, k, 0, **case)
    print_table(rows)
    if args.device == "cuda":
        return  # the transform comparison below measures CPU strategies
    transforms = []
    for d, size, k in ((2, 32, 3), (2, 32, 7), (1, 270, 5)):
        transforms += transform_case(d, args.batch * 64, size, k, args.repeats)
    print_table(transforms)


if __name__ == "__main__":
    sys.exit(command_line(main))
