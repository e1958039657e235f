"""The CuPy backend's CUDA kernels, verified without a GPU.

Every .cu file compiles to PTX with nvcc. The same sources, built by the host C++ compiler under
kernels/cuda_emulation.h and called through ctypes, drive CupyBackend on CPU tensors and must
agree with the independent torch backend. Where CUDA and CuPy exist, the real backend is checked.
"""

from __future__ import annotations

import ctypes
import functools
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from robustbench_bl.spectral import band_limited_conv1d, band_limited_conv2d, functional
from robustbench_bl.spectral.backends import TorchBackend, cupy_backend, get_backend
from robustbench_bl.spectral.backends.cupy_backend import KERNEL_NAMES, KERNEL_SOURCE, LAYOUTS, CupyBackend

pytestmark = pytest.mark.xdist_group("cupy_kernels")  # one worker builds the emulation, once

KERNELS = KERNEL_SOURCE.parent
SOURCES = sorted(KERNELS.glob("*.cu"))
NVCC = shutil.which("nvcc")
CXX = shutil.which("g++") or shutil.which("c++")
CXXFLAGS = ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{KERNELS}"]
REFERENCE = {
    "band_forward": TorchBackend.forward_product,
    "band_grad_input": TorchBackend.grad_input_product,
    "band_grad_weight": TorchBackend.grad_weight_product,
}
HAS_GPU_CUPY = torch.cuda.is_available() and not isinstance(cupy_backend._compiled(), str)


def _run(cmd: list) -> None:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout}\n{done.stderr}"


@functools.cache
def _nvcc_arches() -> tuple[str, list[str]]:
    """(nvcc's release, the virtual architectures it can target)."""
    assert NVCC is not None  # the tests that call this skip without nvcc
    version = re.search(r"release [\d.]+", subprocess.run([NVCC, "--version"], capture_output=True, text=True).stdout)
    arches = subprocess.run([NVCC, "--list-gpu-arch"], capture_output=True, text=True).stdout.split()
    return version.group(0) if version else "unknown release", arches


def test_kernel_sources_exist():
    assert KERNEL_SOURCE in SOURCES


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed, so the kernels cannot be compiled to PTX here")
@pytest.mark.parametrize("arch", [70, 75, 90])
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_kernels_compile_to_ptx(source: Path, arch: int, tmp_path: Path):
    version, arches = _nvcc_arches()
    if f"compute_{arch}" not in arches:
        pytest.skip(f"nvcc {version} cannot target sm_{arch} (CUDA 13 dropped Volta); sm_75 is the oldest checked")
    ptx = tmp_path / f"{source.stem}.sm_{arch}.ptx"
    _run([NVCC, "-ptx", f"-arch=sm_{arch}", "--Werror", "all-warnings", "-o", ptx, source])
    entries = set(re.findall(r"\.entry\s+(\w+)\(", ptx.read_text()))
    if source == KERNEL_SOURCE:
        assert entries == set(KERNEL_NAMES), "the PTX must export exactly the kernels CupyBackend launches"


@pytest.mark.skipif(CXX is None, reason="no host C++ compiler (g++/c++) to build the emulation")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_kernels_compile_on_the_host(source: Path, tmp_path: Path):
    unit = tmp_path / "unit.cpp"
    unit.write_text(f'#include "cuda_emulation.h"\n#include "{source.name}"\n')
    _run([CXX, *CXXFLAGS, "-fsyntax-only", unit])


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> cupy_backend.Launch:
    """A Launch that runs the host-compiled kernels (every block and thread in turn) via ctypes."""
    if CXX is None:
        pytest.skip("no host C++ compiler (g++/c++) to build the emulation")
    build = tmp_path_factory.mktemp("cuda_emulation")
    unit = build / "emulated_kernels.cpp"
    exports = "".join(f"EMU_EXPORT({name})\n" for name in KERNEL_NAMES)
    unit.write_text(f'#include "cuda_emulation.h"\n#include "{KERNEL_SOURCE.name}"\n{exports}')
    library = build / "emulated_kernels.so"
    _run([CXX, *CXXFLAGS, "-shared", "-fPIC", "-o", library, unit])
    lib = ctypes.CDLL(str(library))

    def run(kernel: str, blocks: int, threads: int, args: tuple) -> None:
        types: list[Any] = [ctypes.c_uint, ctypes.c_uint]
        values: list[Any] = [blocks, threads]
        for a in args:
            if isinstance(a, torch.Tensor):
                assert a.device.type == "cpu" and a.is_contiguous() and not a.is_conj(), "kernels need plain memory"
                types.append(ctypes.c_void_p)
                values.append(a.data_ptr())
            else:
                types.append(ctypes.c_int)
                values.append(a)
        address = ctypes.c_void_p.in_dll(lib, f"emu_launch_{kernel}").value
        assert address is not None, f"emu_launch_{kernel} is missing from the emulation library"
        ctypes.CFUNCTYPE(None, *types)(address)(*values)

    return run


def _spectrum(shape: tuple[int, ...], dtype: torch.dtype, lazy_conj: bool, gen: torch.Generator) -> torch.Tensor:
    """Random complex values; with lazy_conj the same values as a lazy conj view of conjugated memory."""
    t = torch.randn(shape, dtype=dtype, generator=gen)
    return t.conj().resolve_conj().conj() if lazy_conj else t


def _operands(kernel: str, k: int, n: int, c: int, o: int, groups: int, dtype, lazy: tuple[bool, bool], seed: int = 0):
    size = dict(K=k, N=n, C=c, O=o, c=c // groups)
    shapes = [tuple(size[d] for d in layout) for layout in LAYOUTS[kernel]]
    gen = torch.Generator().manual_seed(seed)
    return _spectrum(shapes[0], dtype, lazy[0], gen), _spectrum(shapes[1], dtype, lazy[1], gen), shapes[2]


def _tolerance(dtype: torch.dtype) -> dict:
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.complex64 else dict(rtol=1e-12, atol=1e-12)


CASES = [  # K kept frequencies, N batch, C in channels, O out channels, groups
    (1, 1, 1, 1, 1),  # a single cell
    (7, 3, 1, 5, 1),  # one input channel
    (5, 2, 6, 1, 1),  # one output channel
    (9, 4, 6, 4, 2),  # two groups
    (11, 3, 9, 15, 3),  # odd widths, three groups
    (6, 2, 4, 8, 4),  # one input channel per group (depthwise)
    (19, 5, 7, 3, 1),  # 285..665 cells: several blocks, the last one partial
]


@pytest.mark.parametrize("block", [7, 32, 256])
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "K{}N{}C{}O{}g{}".format(*c))
@pytest.mark.parametrize("kernel", list(LAYOUTS))
def test_emulated_kernels_match_torch_backend(launch, kernel: str, case, dtype, block: int):
    k, n, c, o, groups = case
    backend = CupyBackend(launch, block=block)
    product = getattr(backend, REFERENCE[kernel].__name__)
    for lazy in ((False, False), (True, True), (False, True)):  # lazy conj views: kernels conjugate on load
        a, b, out_shape = _operands(kernel, k, n, c, o, groups, dtype, lazy, seed=sum(case))
        got = product(a, b, groups)
        assert got.shape == out_shape and not got.is_conj()
        expected = REFERENCE[kernel](a.resolve_conj(), b.resolve_conj(), groups).resolve_conj()
        torch.testing.assert_close(got, expected, **_tolerance(dtype), msg=lambda m: f"{kernel} lazy={lazy}: {m}")


@pytest.mark.parametrize("block", [1, 32, 64])
@pytest.mark.parametrize("kernel", list(LAYOUTS))
def test_kernels_stay_inside_their_buffers(launch, kernel: str, block: int):
    """NaN guards around the inputs must never reach an output, a sentinel guard around the output
    must stay untouched, including under an extra block whose every thread overhangs the output."""
    k, n, c, o, groups, guard = 5, 3, 6, 9, 3, 40
    a, b, out_shape = _operands(kernel, k, n, c, o, groups, torch.complex64, (False, False))
    nan, sentinel = complex("nan+nanj"), complex(7, -7)

    def guarded(shape: tuple[int, ...], fill: complex) -> tuple[torch.Tensor, torch.Tensor]:
        buffer = torch.full((2 * guard + math.prod(shape),), fill, dtype=torch.complex64)
        return buffer, buffer[guard : guard + math.prod(shape)].view(shape)

    (_, a_in), (_, b_in), (out_buffer, out) = guarded(a.shape, nan), guarded(b.shape, nan), guarded(out_shape, sentinel)
    a_in.copy_(a)
    b_in.copy_(b)
    blocks = -(-out.numel() // block) + 1
    launch(f"{kernel}_f32", blocks, block, (a_in, b_in, out, k, n, c, o, groups, 0, 0))
    outside = torch.cat([out_buffer[:guard], out_buffer[-guard:]])
    assert torch.equal(outside, torch.full_like(outside, sentinel)), "a kernel wrote outside its output"
    torch.testing.assert_close(out, REFERENCE[kernel](a, b, groups).resolve_conj(), rtol=1e-5, atol=1e-5)


def test_emulated_backend_inside_band_limited_conv(launch, monkeypatch: pytest.MonkeyPatch):
    """The backend as functional.py drives it (lazily conjugated G, grouped spectra), both ranks."""
    emulated = CupyBackend(launch, block=64)
    gen = torch.Generator().manual_seed(1)
    cases = [
        (band_limited_conv2d, (2, 4, 9, 7), (6, 2, 3, 3), 2, torch.float32),
        (band_limited_conv1d, (3, 3, 12), (4, 3, 4), 1, torch.float64),
    ]
    for conv, x_shape, w_shape, groups, dtype in cases:
        results = []
        for backend in (TorchBackend(), emulated):
            monkeypatch.setattr(functional, "get_backend", lambda *args, backend=backend: backend)
            x = torch.randn(x_shape, dtype=dtype, generator=gen.manual_seed(2)).requires_grad_()
            w = torch.randn(w_shape, dtype=dtype, generator=gen).requires_grad_()
            y = conv(x, w, padding=1, groups=groups, compress_rate=0.5)
            y.backward(torch.randn(y.shape, dtype=dtype, generator=gen))
            results.append((y.detach(), x.grad, w.grad))
        for got, expected, name in zip(results[1], results[0], ("output", "grad input", "grad weight")):
            message = f"{conv.__name__} {name}"
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=lambda m: f"{message}: {m}")


def test_backend_rejects_mismatched_spectra(launch):
    backend = CupyBackend(launch)
    x, w = torch.zeros(3, 2, 4, dtype=torch.complex64), torch.zeros(3, 4, 6, dtype=torch.complex64)
    with pytest.raises(ValueError, match=r"second spectrum must have shape \(3, 2, 6\)"):
        backend.forward_product(x, w, 2)
    with pytest.raises(ValueError, match="groups must divide"):
        backend.forward_product(x, w[:, :1], 4)
    with pytest.raises(TypeError, match="complex64 or complex128"):
        backend.forward_product(x, w.to(torch.complex128), 1)


# Backend selection, on any machine.


@pytest.mark.skipif(HAS_GPU_CUPY, reason="CuPy and a CUDA device are present, so 'auto' picks cupy there")
def test_auto_is_torch_without_gpu_cupy():
    assert get_backend("auto", "cpu").name == "torch"
    assert get_backend("auto", "cuda").name == "torch"


def test_cupy_on_a_cpu_tensor_is_a_clear_error():
    with pytest.raises(ValueError, match="backend='cupy' runs on CUDA tensors, got a tensor on cpu"):
        band_limited_conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), backend="cupy")


@pytest.mark.skipif(HAS_GPU_CUPY, reason="CuPy and a CUDA device are present")
def test_cupy_without_gpu_or_cupy_is_a_clear_error():
    with pytest.raises(ValueError, match=r"backend='cupy' needs (CuPy|a CUDA device)"):
        get_backend("cupy")


def test_importing_the_package_never_imports_cupy():
    """With `import cupy` made to fail, the package imports and a band-limited conv runs on CPU."""
    code = (
        "import sys; sys.modules['cupy'] = None\n"
        "import torch, robustbench_bl, robustbench_bl.spectral as s\n"
        "y = s.band_limited_conv2d(torch.ones(1, 1, 5, 5), torch.ones(1, 1, 3, 3), compress_rate=0.5)\n"
        "assert y.shape == (1, 1, 3, 3)\n"
    )
    _run([sys.executable, "-c", code])


# The real CuPy backend, where a GPU and CuPy are present (not on CPU-only CI).


@pytest.mark.skipif(not HAS_GPU_CUPY, reason="needs a CUDA device and CuPy with compiled kernels")
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", list(LAYOUTS))
def test_cupy_kernels_match_torch_backend_on_gpu(kernel: str, dtype):
    backend = get_backend("cupy", "cuda")
    for k, n, c, o, groups in [*CASES, (300, 64, 32, 48, 2)]:
        a, b, _ = _operands(kernel, k, n, c, o, groups, dtype, (False, True))
        a, b = a.cuda(), b.cuda()
        got = getattr(backend, REFERENCE[kernel].__name__)(a, b, groups)
        expected = REFERENCE[kernel](a, b, groups).resolve_conj()
        torch.testing.assert_close(got, expected, **_tolerance(dtype))


@pytest.mark.skipif(not HAS_GPU_CUPY, reason="needs a CUDA device and CuPy with compiled kernels")
def test_cupy_backend_conv_matches_f_conv_on_gpu():
    assert get_backend("auto", "cuda").name == "cupy"
    x = torch.randn(4, 6, 11, 10, device="cuda", requires_grad=True)
    w = torch.randn(8, 3, 3, 3, device="cuda", requires_grad=True)
    y = band_limited_conv2d(x, w, padding=1, groups=2, backend="cupy")
    grads = torch.autograd.grad(y, (x, w), torch.ones_like(y))
    y_ref = F.conv2d(x, w, padding=1, groups=2)
    grads_ref = torch.autograd.grad(y_ref, (x, w), torch.ones_like(y_ref))
    for got, expected in zip((y, *grads), (y_ref, *grads_ref)):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)
