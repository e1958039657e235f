"""CuPy backend: the three band products as fused CUDA kernels (kernels/band_products.cu).

Torch tensors reach the kernels through DLPack (no copies), on torch's current stream. CuPy is
imported only when this backend is loaded, so importing robustbench_bl never needs it.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

KERNEL_SOURCE = Path(__file__).with_name("kernels") / "band_products.cu"
BLOCK = 256  # threads per block; each thread owns one output cell
PRECISION = {torch.complex64: "f32", torch.complex128: "f64"}
# Operand a, operand b and output of each kernel, in letters of (K, N, C, O, c = C/groups).
LAYOUTS = {
    "band_forward": ("KNC", "KcO", "KNO"),
    "band_grad_input": ("KNO", "KcO", "KNC"),
    "band_grad_weight": ("KNC", "KNO", "KcO"),
}
KERNEL_NAMES = tuple(f"{kernel}_{p}" for kernel in LAYOUTS for p in PRECISION.values())

# launch(kernel name, blocks, threads per block, kernel arguments: tensors and ints)
Launch = Callable[[str, int, int, tuple], None]


def _memory(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The plain contiguous memory behind `t`, and 1 if it holds conj(t) (a lazy conj view).

    Kernels conjugate on load instead, so a lazily conjugated spectrum is never copied.
    """
    conj = t.is_conj()
    return (t.conj() if conj else t).resolve_neg().contiguous(), int(conj)


class CupyBackend:
    """Band products by fused kernels: one thread per output cell, Gauss's 3-multiply product.

    `launch` runs a named kernel; `load()` gives the CuPy one, and tests pass a host-compiled
    emulation, so this class's index and layout logic is shared by both.
    """

    name = "cupy"

    def __init__(self, launch: Launch, block: int = BLOCK) -> None:
        self._launch = launch
        self.block = block

    def forward_product(self, x_spec: torch.Tensor, w_spec: torch.Tensor, groups: int) -> torch.Tensor:
        """Y[k, n, o] = sum_c X[k, n, c] W[k, c, o] within each group."""
        k, n, c = x_spec.shape
        return self._product("band_forward", x_spec, w_spec, groups, (k, n, c, w_spec.shape[-1]))

    def grad_input_product(self, g_spec: torch.Tensor, w_spec: torch.Tensor, groups: int) -> torch.Tensor:
        """gX[k, n, c] = sum_o G[k, n, o] conj(W[k, c, o]) within each group."""
        k, n, o = g_spec.shape
        return self._product("band_grad_input", g_spec, w_spec, groups, (k, n, w_spec.shape[1] * groups, o))

    def grad_weight_product(self, x_spec: torch.Tensor, g_spec: torch.Tensor, groups: int) -> torch.Tensor:
        """gW[k, c, o] = sum_n conj(X[k, n, c]) G[k, n, o] within each group."""
        k, n, c = x_spec.shape
        return self._product("band_grad_weight", x_spec, g_spec, groups, (k, n, c, g_spec.shape[-1]))

    def _product(
        self, kernel: str, a: torch.Tensor, b: torch.Tensor, groups: int, dims: tuple[int, int, int, int]
    ) -> torch.Tensor:
        """Check the spectra against the kernel's layout, then launch one thread per output cell."""
        k, n, c, o = dims
        if c % groups or o % groups:
            raise ValueError(f"groups must divide channels in={c} and out={o}, got groups={groups}")
        size = dict(K=k, N=n, C=c, O=o, c=c // groups)
        a_shape, b_shape, out_shape = ([size[d] for d in layout] for layout in LAYOUTS[kernel])
        for name, t, shape in (("first spectrum", a, a_shape), ("second spectrum", b, b_shape)):
            if list(t.shape) != shape:
                raise ValueError(f"{kernel}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
        if a.dtype not in PRECISION or b.dtype != a.dtype or b.device != a.device:
            raise TypeError(
                f"{kernel}: spectra must share a dtype (complex64 or complex128) and a device, "
                f"got {a.dtype}/{a.device} and {b.dtype}/{b.device}"
            )
        (a_mem, a_conj), (b_mem, b_conj) = _memory(a), _memory(b)
        out = torch.empty(out_shape, dtype=a.dtype, device=a.device)
        if out.numel():
            blocks = -(-out.numel() // self.block)
            args = (a_mem, b_mem, out, k, n, c, o, groups, a_conj, b_conj)
            self._launch(f"{kernel}_{PRECISION[a.dtype]}", blocks, self.block, args)
        return out


def _current_stream(cupy, device: torch.device):
    """Torch's current stream on `device` as a CuPy stream, so kernels queue behind torch's work."""
    stream = torch.cuda.current_stream(device)
    if stream.cuda_stream == 0:  # torch's default stream is CUDA's legacy null stream
        return cupy.cuda.Stream.null
    if hasattr(cupy.cuda.Stream, "from_external"):  # CuPy >= 14; ExternalStream is deprecated there
        return cupy.cuda.Stream.from_external(stream)
    return cupy.cuda.ExternalStream(stream.cuda_stream, device.index)


def _cupy_launch(module) -> Launch:
    """A Launch running kernels of a compiled cupy.RawModule on torch's current CUDA stream."""
    import cupy
    import numpy as np

    functions: dict[tuple[int, str], Any] = {}

    def launch(kernel: str, blocks: int, threads: int, args: tuple) -> None:
        device = args[0].device
        if device.type != "cuda":
            raise ValueError(f"backend='cupy' runs on CUDA tensors, got a tensor on {device}; use 'torch' or 'auto'")
        with cupy.cuda.Device(device.index), _current_stream(cupy, device):
            key = (device.index, kernel)
            if key not in functions:
                functions[key] = module.get_function(kernel)
            cupy_args = tuple(cupy.from_dlpack(a) if isinstance(a, torch.Tensor) else np.int32(a) for a in args)
            functions[key]((blocks,), (threads,), cupy_args)

    return launch


@functools.cache
def _compiled() -> CupyBackend | str:
    """The backend with its kernels compiled, or why there is none (cached: tried once)."""
    try:
        import cupy
    except ImportError:
        return "backend='cupy' needs CuPy (pip install 'robustbench-bl[gpu]'); use 'torch' or 'auto'"
    if not torch.cuda.is_available():
        return "backend='cupy' needs a CUDA device, and torch sees none; use 'torch' or 'auto'"
    try:
        module = cupy.RawModule(code=KERNEL_SOURCE.read_text(), options=("-std=c++14",))
        with cupy.cuda.Device(torch.cuda.current_device()):
            for kernel in KERNEL_NAMES:  # compile now, not inside the first forward
                module.get_function(kernel)
    except Exception as err:  # NVRTC missing, compile error, driver too old: all mean "no cupy"
        reason = (
            f"backend='cupy': the kernels in {KERNEL_SOURCE.name} did not compile or load ({type(err).__name__}: {err})"
        )
        warnings.warn(reason + "; falling back to backend='torch' where backend='auto'", RuntimeWarning, stacklevel=2)
        return reason
    return CupyBackend(_cupy_launch(module))


def load() -> CupyBackend:
    """The CuPy backend, its kernels compiled once per process; a ValueError says why not."""
    backend = _compiled()
    if isinstance(backend, str):
        raise ValueError(backend)
    return backend
