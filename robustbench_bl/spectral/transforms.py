"""Partial DFTs that compute only the kept band, as separable real matrix products.

Spectra are laid out frequency-first, (R_1, ..., R_d, B) complex, so that channel mixing is a
batched matmul over frequencies; the transposes ride on BLAS's transposed operands, not copies.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AxisGeometry:
    """One spatial axis of a convolution: input length, kernel, stride, dilation, padding."""

    length: int
    kernel: int
    stride: int = 1
    dilation: int = 1
    pad_left: int = 0
    pad_right: int = 0

    @property
    def n(self) -> int:
        """Transform length: the padded input, long enough that valid outputs never wrap."""
        return self.length + self.pad_left + self.pad_right

    @property
    def out(self) -> int:
        return (self.n - self.dilation * (self.kernel - 1) - 1) // self.stride + 1


@dataclass(frozen=True)
class AxisDFT:
    """Partial DFT matrices of one axis restricted to its kept bins (complex, R = kept bins).

    Forward: X = input_analysis @ x, W = weight_analysis @ w, y = Re(output_synthesis @ Y);
    backward uses their adjoints under the real inner product (conjugate transposes).
    """

    input_analysis: torch.Tensor  # (R, length): e^{-i theta (j + pad_left)}
    weight_analysis: torch.Tensor  # (R, kernel): e^{+i theta m dilation}, the flipped filter
    output_synthesis: torch.Tensor  # (out, R): multiplicity / n * e^{+i theta i stride}
    grad_analysis_conj: torch.Tensor  # (R, out): conj of the adjoint of output_synthesis
    input_adjoint: torch.Tensor  # (length, R)
    weight_adjoint: torch.Tensor  # (kernel, R)


def _phases(freqs: torch.Tensor, positions: torch.Tensor, n: int, sign: int) -> torch.Tensor:
    # Reduce f * position mod n in integers so large products keep full phase precision.
    k = (freqs[:, None] * positions[None, :]) % n
    return torch.polar(torch.ones(k.shape, dtype=torch.float64), sign * 2 * math.pi * k.double() / n)


@functools.lru_cache(maxsize=512)
def axis_dft(geom: AxisGeometry, kept: tuple[int, ...], one_sided: bool, dtype: torch.dtype, device: str) -> AxisDFT:
    """Matrices for `geom` restricted to the bins `kept` (indices into the rfft/fft axis)."""
    n = geom.n
    idx = torch.tensor(kept, dtype=torch.int64)
    freqs = idx if one_sided else torch.where(idx <= n // 2, idx, idx - n)
    if one_sided:
        weight = torch.where((idx == 0) | (2 * idx == n), 1.0, 2.0).double() / n
    else:
        weight = torch.full((len(kept),), 1.0 / n, dtype=torch.float64)
    taps = torch.arange(geom.kernel) * geom.dilation
    rows = torch.arange(geom.length) + geom.pad_left
    outs = torch.arange(geom.out) * geom.stride
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    mats = {
        "input_analysis": _phases(freqs, rows, n, -1),
        "weight_analysis": _phases(freqs, taps, n, +1),
        "output_synthesis": (_phases(freqs, outs, n, +1) * weight[:, None]).T,
    }
    mats["grad_analysis_conj"] = mats["output_synthesis"].T
    mats["input_adjoint"] = mats["input_analysis"].T.conj()
    mats["weight_adjoint"] = mats["weight_analysis"].T.conj()
    return AxisDFT(**{k: m.resolve_conj().to(dtype=cdtype, device=device).contiguous() for k, m in mats.items()})


def _real_columns(m: torch.Tensor) -> torch.Tensor:
    """Complex (R, L) as real (L, 2R): x @ it gives the transform of real x, complex-interleaved."""
    return torch.view_as_real(m.T.contiguous()).reshape(m.shape[1], -1)


def _real_rows(m: torch.Tensor) -> torch.Tensor:
    """Complex (L, R) as real (2R, L): interleaved complex u @ it gives Re(m @ u)."""
    return torch.stack([m.T.real, -m.T.imag], 1).reshape(-1, m.shape[0])


def analysis(x: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    """Kept spectrum of real x (B, L_1, ..., L_d) as complex (R_1, ..., R_d, B); mats[a] is (R_a, L_a).

    Suits large signals: the last axis is a real GEMM into interleaved complex, the first a
    batched complex GEMM, and one transpose copy of the (compressed) spectrum puts frequencies first.
    """
    batch, *lengths = x.shape
    t = torch.view_as_complex((x.reshape(-1, lengths[-1]) @ _real_columns(mats[-1])).view(-1, mats[-1].shape[0], 2))
    if len(mats) == 2:
        t = torch.matmul(mats[0], t.view(batch, lengths[0], -1))  # (B, R_1, R_2)
    return t.reshape(batch, -1).T.contiguous().view(*(m.shape[0] for m in mats), batch)


def analysis_batch_last(x: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    """Kept spectrum of real x (L_1, ..., L_d, B) as complex (R_1, ..., R_d, B).

    Suits small signals with a large batch (filters): complex GEMMs only, no transpose.
    """
    t = x.to(mats[0].dtype)
    if len(mats) == 2:
        t = torch.matmul(mats[1], t)  # (L_1, R_2, B)
    return (mats[0] @ t.reshape(t.shape[0], -1)).view(*(m.shape[0] for m in mats), -1)


def synthesis(spec: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    """Real part of the partial inverse: complex (R_1, ..., R_d, B) to real (B, L_1, ..., L_d).

    mats[a] is (L_a, R_a); one transpose copy puts the batch first, the rest are GEMMs.
    """
    batch = spec.shape[-1]
    kept = spec.shape[:-1]
    t = spec.reshape(-1, batch).T.contiguous().resolve_conj().view(batch, *kept)
    if len(mats) == 2:
        t = torch.matmul(mats[0], t)  # (B, L_1, R_2)
    y = torch.view_as_real(t).reshape(-1, 2 * kept[-1]) @ _real_rows(mats[-1])
    return y.view(batch, *(m.shape[0] for m in mats))


def synthesis_batch_last(spec: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    """Real part of the partial inverse, complex (R_1, ..., R_d, B) to real (L_1, ..., L_d, B)."""
    if spec.is_conj():  # Re(M conj(S)) = Re(conj(M) S): conjugate the small matrices, not the spectrum
        spec, mats = spec.conj(), [m.conj() for m in mats]
    t = (mats[0] @ spec.reshape(spec.shape[0], -1)).view(mats[0].shape[0], *spec.shape[1:])
    if len(mats) == 2:
        t = torch.matmul(mats[1], t)  # (L_1, L_2, B)
    return t.real
