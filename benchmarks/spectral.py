"""Band-limited convolution: time, saved-for-backward bytes and peak RSS against F.conv and the 0% path.

Every variant of a layer is timed round-robin in the same repeats (so machine load hits all of
them alike) and the medians are printed as ratios. Tables: the batch-128 layers (and, with
--device cuda and CuPy, the fused cupy kernels beside backend='torch'); scaling over map sizes
(batch 4, 32 -> 32, 32..224, k = 3 and 7, with 1 and 2 threads, peak RSS from fresh processes);
the 3D layer against F.conv3d; the two transforms ('dft', 'fft') against each other with the
route 'auto' picks; and the per-call overhead of a tiny layer.

    .venv/bin/python benchmarks/spectral.py [--repeats 5] [--batch 128] [--threads 2] [--device cpu|cuda]
        [--sizes 32 64 128 224] [--only batch128 scaling conv3d routes overhead]
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from robustbench_bl.cli import ArgumentParser, command_line, positive_int
from robustbench_bl.runtime.profiling import saved_bytes
from robustbench_bl.spectral import band_limited_conv1d, band_limited_conv2d
from robustbench_bl.spectral.backends import get_backend
from robustbench_bl.spectral.functional import _geometry, _static_band, band_limited_conv
from robustbench_bl.spectral.transforms import choose_route

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
    d: int,
    batch: int,
    cin: int,
    cout: int,
    size: int,
    k: int,
    padding: int,
    repeats: int,
    device: str = "cpu",
    cupy: bool = False,
) -> list[dict]:
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


def _layer(d: int, batch: int, cin: int, cout: int, size: int, k: int):
    x = torch.randn(batch, cin, *(size,) * d, requires_grad=True)
    w = torch.randn(cout, cin, *(k,) * d, requires_grad=True)
    return x, w


def _fb(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        y = fn()
        y.backward(torch.ones_like(y))

    return run


def _variants(d: int, x: torch.Tensor, w: torch.Tensor, padding: int, transform: str = "auto") -> dict:
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[d]
    fns: dict = {"conv": lambda: conv(x, w, None, 1, padding)}
    for rate in RATES:
        fns[rate] = lambda rate=rate: band_limited_conv(
            x, w, None, 1, padding, compress_rate=rate, transform=transform
        )[0]
    return fns


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_rss_probe(d: int, batch: int, cin: int, cout: int, size: int, k: int, variant: object, threads: int) -> float:
    """MiB by which one forward+backward raises the resident set above what it was before (in a child).

    The kernel's high-water mark is reset first (/proc/self/clear_refs), so imports do not hide it.
    """
    torch.set_num_threads(threads)
    x, w = _layer(d, batch, cin, cout, size, k)
    run = _fb(_variants(d, x, w, k // 2)[variant])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    run()
    return (_status_kib("VmHWM") - before) / 1024


def peak_rss(*args) -> float:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(peak_rss_probe, args)


def scaling_case(
    d: int, size: int, k: int, repeats: int, threads: tuple[int, ...], batch: int = 4, channels: int = 32
) -> list[dict]:
    """One map size: F.conv and the band-limited layer ('auto' transform) at each rate."""
    x, w = _layer(d, batch, channels, channels, size, k)
    fns = _variants(d, x, w, k // 2)
    fb = {}
    for t in threads:
        torch.set_num_threads(t)
        fb[t] = round_robin({name: _fb(fn) for name, fn in fns.items()}, repeats)
    torch.set_num_threads(max(threads))
    mem = {name: saved_bytes(fn) for name, fn in fns.items()}
    rss = {name: peak_rss(d, batch, channels, channels, size, k, name, max(threads)) for name in fns}
    geoms = _geometry(tuple(x.shape[2:]), tuple(w.shape[2:]), 1, k // 2, 1)
    rows = []
    for name in fns:
        route = "-" if name == "conv" else choose_route(geoms, _static_band(tuple(g.n for g in geoms), name))
        row = dict(
            layer=f"{d}D {batch}x{channels}->{channels}, {size}^{d}, k={k}",
            variant="F.conv" if name == "conv" else f"BL {int(100 * name)}% ({route})",
        )
        for t in threads:
            row[f"fb_ms_{t}t"] = 1e3 * fb[t][name]
            row[f"vs_conv_{t}t"] = fb[t][name] / fb[t]["conv"]
            row[f"vs_0_{t}t"] = fb[t][name] / fb[t][0.0]
        row.update(
            saved_mb=mem[name] / 2**20,
            saved_vs_conv=mem[name] / mem["conv"],
            rss_mb=rss[name],
            rss_vs_conv=rss[name] / max(rss["conv"], 1e-9),
        )
        rows.append(row)
    return rows


def route_case(d: int, size: int, k: int, repeats: int, batch: int = 4, channels: int = 32) -> list[dict]:
    """Both transforms on one layer, forward+backward, and which one 'auto' takes."""
    x, w = _layer(d, batch, channels, channels, size, k)
    geoms = _geometry(tuple(x.shape[2:]), tuple(w.shape[2:]), 1, k // 2, 1)
    rows = []
    for rate in RATES:
        fns = {t: _fb(_variants(d, x, w, k // 2, t)[rate]) for t in ("dft", "fft")}
        med = round_robin(fns, repeats)
        auto = choose_route(geoms, _static_band(tuple(g.n for g in geoms), rate))
        rows.append(
            dict(
                layer=f"{d}D {batch}x{channels}->{channels}, {size}^{d}, k={k}",
                rate=rate,
                dft_ms=1e3 * med["dft"],
                fft_ms=1e3 * med["fft"],
                dft_vs_fft=med["dft"] / med["fft"],
                auto=auto,
                auto_is_faster="yes" if (auto == "dft") == (med["dft"] <= med["fft"]) else "no",
            )
        )
    return rows


def overhead_case(repeats: int) -> list[dict]:
    """Per-call cost of a tiny layer (1 x 2 -> 2, 6 x 6, k=3): what is left is Python and dispatch."""
    x, w = _layer(2, 1, 2, 2, 6, 3)
    fns = _variants(2, x, w, 1)
    calls = 200

    def many(fn):
        def run():
            for _ in range(calls):
                fn()

        return run

    with torch.no_grad():
        fwd = round_robin({name: many(fn) for name, fn in fns.items()}, repeats)
    fb = round_robin({name: many(_fb(fn)) for name, fn in fns.items()}, repeats)
    return [
        dict(
            variant="F.conv" if n == "conv" else f"BL {int(100 * n)}%",
            fwd_us=1e6 * fwd[n] / calls,
            fb_us=1e6 * fb[n] / calls,
        )
        for n in fns
    ]


def print_table(rows: list[dict], digits: int = 2) -> None:
    """Rows of dicts as a markdown table, floats to `digits` places (also used by protocol.py)."""
    keys = list(rows[0])
    cells = [[f"{r[k]:.{digits}f}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" for _ in keys) + "|")
    for c in cells:
        print("| " + " | ".join(c) + " |")
    print()


TABLES = ("batch128", "scaling", "conv3d", "routes", "overhead")


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the layers run")
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[32, 64, 128, 224], help="scaling table sizes")
    parser.add_argument("--only", choices=TABLES, nargs="+", default=list(TABLES), help="tables to run")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(f"torch {torch.__version__}, {where}, median of {args.repeats} round-robin repeats\n")
    if "batch128" in args.only:
        cupy = False
        if args.device == "cpu":
            print(
                "cupy columns skipped: the layers run on the CPU; the cupy kernels need CUDA tensors (--device cuda)\n"
            )
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
        return  # the other tables measure CPU strategies
    threads = tuple(sorted({1, args.threads}))
    if "scaling" in args.only:
        print_table(
            [row for k in (3, 7) for size in args.sizes for row in scaling_case(2, size, k, args.repeats, threads)]
        )
    if "conv3d" in args.only:
        print_table([row for size in (8, 16, 32) for row in scaling_case(3, size, 3, args.repeats, threads, 2, 16)])
    if "routes" in args.only:
        cases = [(2, s, 3) for s in args.sizes] + [(1, s, 3) for s in (270, 1024, 4096)] + [(3, 32, 3)]
        print_table([row for d, size, k in cases for row in route_case(d, size, k, args.repeats)])
    if "overhead" in args.only:
        print_table(overhead_case(args.repeats), digits=0)


if __name__ == "__main__":
    sys.exit(command_line(main))
