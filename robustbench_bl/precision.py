"""The network's working precision for attacking and training: float32, or bfloat16 autocast where the
hardware computes it natively. Judging (every reported accuracy, whether an example is fooled) never
goes through here: it stays in the model's own float32.

'auto' picks bfloat16 only where it is fast: a CUDA GPU with bf16 support, or a CPU with native
bf16 dot products (the `avx512_bf16` or `amx_bf16` flags of /proc/cpuinfo). On a CPU without them
(AVX2 only) oneDNN emulates bf16 and a FastNet attack step runs ~10x *slower* than in float32
(benchmarks/precision.py), so 'auto' stays in float32 there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path

import torch
from torch import nn

from robustbench_bl.validation import check_choice

PRECISIONS = ("auto", "float32", "bfloat16")
#: CPU flags (Linux /proc/cpuinfo) that mean bf16 matrix products run in hardware.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The first CPU's feature flags, or none where /proc/cpuinfo is absent (macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes bfloat16 matrix products natively (so autocast to bf16 pays off)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(flag in _cpu_flags() for flag in NATIVE_BF16_FLAGS)
    return False


def flush_denormals() -> None:
    """Treat float denormals (|x| < 1.2e-38 in float32) as zero in this process, as GPUs do: the
    convolution backward of a trained model on channels_last input (the attacker's view) ran 2.9-3.1x
    slower on them in float32 and 1.3x in bfloat16 on an AVX-512 Xeon (benchmarks/README.md). The
    commands call it first: threads torch starts later inherit it, ones already running do not."""
    torch.set_flush_denormal(True)


def resolve(precision: str, device: torch.device | str) -> str:
    """'float32' or 'bfloat16' for `precision` in PRECISIONS on `device` ('auto': see the module doc)."""
    precision = check_choice(precision, "precision", PRECISIONS)
    if precision == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the enclosed forward in `precision` ('bfloat16': torch.autocast; 'float32': as it is)."""
    device = torch.device(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve(precision, device) == "bfloat16"):
        yield


class AttackerView(nn.Module):
    """`model` as an attacker runs it: image batches in channels_last (the same values; CPU convolutions
    run ~1.2x faster, benchmarks/precision.py) and, with `bfloat16`, the forward under autocast with
    float32 scores out. Parameters stay the model's own, shared, not copied."""

    def __init__(self, model: nn.Module, bfloat16: bool = False) -> None:
        super().__init__()
        self.model = model
        self.autocast = bfloat16
        self.training = model.training  # its own flag only: the model's modules keep theirs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.autocast:
            return self.model(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            out = self.model(x)
        return out.float()

    def extra_repr(self) -> str:
        return f"autocast to bfloat16: {self.autocast}"


def for_attacker(model: nn.Module, precision: str, device: torch.device | str) -> AttackerView:
    """`model` as an attacker differentiates it, in `precision` (resolved: see `resolve`)."""
    return AttackerView(model, bfloat16=resolve(precision, device) == "bfloat16")


def rounded(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """A copy of `model` that emulates reduced-precision arithmetic (RPA, the first paper's comparator):
    every parameter and buffer and every leaf module's input is rounded to `dtype`, products and sums
    stay float32 (as mixed precision accumulates). Runs at float32 speed on any CPU; for judging how
    a model behaves in reduced precision, not for speed."""
    if not dtype.is_floating_point or torch.finfo(dtype).bits >= 32:
        raise ValueError(f"dtype must be a floating type narrower than float32 (bfloat16, float16), got {dtype}")
    copy = deepcopy(model)
    with torch.no_grad():
        for tensor in [*copy.parameters(), *copy.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(dtype).to(tensor.dtype))

    def round_inputs(_: nn.Module, inputs: tuple[object, ...]) -> tuple[object, ...]:
        return tuple(
            i.to(dtype).to(i.dtype) if isinstance(i, torch.Tensor) and i.is_floating_point() else i for i in inputs
        )

    for module in copy.modules():
        if not any(True for _ in module.children()):
            module.register_forward_pre_hook(round_inputs)
    return copy
