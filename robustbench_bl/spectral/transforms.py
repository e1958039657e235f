"""The kept band of a convolution's spectra, by partial DFTs (small maps) or pruned FFTs (large).

Spectra are laid out frequency-first, (R_1, ..., R_d, B) complex, so that channel mixing is a
batched matmul over frequencies. A partial DFT costs O(L * R) per axis line and runs as GEMMs,
which wins on small maps; a pruned FFT costs O(L log L) and wins once maps grow (measured in
benchmarks/spectral.py). A `Plan` holds one shape's choice and its cached matrices; filters
(a few taps) always go through partial DFTs.
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Iterator
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


# ---- Partial DFTs: separable matrix products over any number of axes --------------------------


def _real_columns(m: torch.Tensor) -> torch.Tensor:
    """Complex (R, L) as real (L, 2R): x @ it gives the transform of real x, complex-interleaved."""
    return torch.view_as_real(m.T.contiguous()).reshape(m.shape[1], -1).contiguous()


def _real_rows(m: torch.Tensor) -> torch.Tensor:
    """Complex (L, R) as real (2R, L): interleaved complex u @ it gives Re(m @ u)."""
    return torch.stack([m.T.real, -m.T.imag], 1).reshape(-1, m.shape[0]).contiguous()


def analysis(x: torch.Tensor, mats: list[torch.Tensor], last_real: torch.Tensor | None = None) -> torch.Tensor:
    """Kept spectrum of real x (B, L_1, ..., L_d) as complex (R_1, ..., R_d, B); mats[a] is (R_a, L_a).

    The last axis is a real GEMM into interleaved complex (`last_real` = _real_columns(mats[-1]),
    precomputed by a Plan), the others batched complex GEMMs; one transpose copy of the
    (compressed) spectrum puts frequencies first.
    """
    batch, *lengths = x.shape
    real = _real_columns(mats[-1]) if last_real is None else last_real
    t = torch.view_as_complex((x.reshape(-1, lengths[-1]) @ real).view(-1, mats[-1].shape[0], 2))
    rest = mats[-1].shape[0]
    for a in reversed(range(len(mats) - 1)):
        t = torch.matmul(mats[a], t.reshape(-1, lengths[a], rest))  # (B * L_<a, R_a, R_>a)
        rest *= mats[a].shape[0]
    return t.reshape(batch, -1).T.contiguous().view(*(m.shape[0] for m in mats), batch)


def analysis_batch_last(x: torch.Tensor, mats: list[torch.Tensor], stop: int = 0) -> torch.Tensor:
    """Kept spectrum of real x (L_1, ..., L_d, B) as complex (R_1, ..., R_d, B); axes before `stop`
    stay untransformed (their length in place of R).

    Suits small signals with a large batch (filters): complex GEMMs only, no transpose.
    """
    lengths = x.shape[: len(mats)]
    t = x.to(mats[0].dtype)
    for a in reversed(range(stop, len(mats))):
        t = torch.matmul(mats[a], t.reshape(math.prod(lengths[:a]), lengths[a], -1))  # (L_<a, R_a, rest)
    return t.view(*lengths[:stop], *(m.shape[0] for m in mats[stop:]), -1)


def synthesis(spec: torch.Tensor, mats: list[torch.Tensor], last_real: torch.Tensor | None = None) -> torch.Tensor:
    """Real part of the partial inverse: complex (R_1, ..., R_d, B) to real (B, L_1, ..., L_d).

    mats[a] is (L_a, R_a), `last_real` = _real_rows(mats[-1]); one transpose copy puts the batch
    first, the rest are GEMMs.
    """
    batch = spec.shape[-1]
    kept = spec.shape[:-1]
    t = spec.reshape(-1, batch).T.contiguous().resolve_conj()
    for a in range(len(mats) - 1):
        t = torch.matmul(mats[a], t.reshape(-1, kept[a], math.prod(kept[a + 1 :])))  # (B * L_<=a, L_a, R_>a)
    real = _real_rows(mats[-1]) if last_real is None else last_real
    y = torch.view_as_real(t).reshape(-1, 2 * kept[-1]) @ real
    return y.view(batch, *(m.shape[0] for m in mats))


def synthesis_batch_last(spec: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    """Real part of the partial inverse, complex (R_1, ..., R_d, B) to real (L_1, ..., L_d, B)."""
    if spec.is_conj():  # Re(M conj(S)) = Re(conj(M) S): conjugate the small matrices, not the spectrum
        spec, mats = spec.conj(), [m.conj() for m in mats]
    kept = spec.shape[: len(mats)]
    t = spec
    for a in range(len(mats)):
        t = torch.matmul(mats[a], t.reshape(-1, kept[a], math.prod(kept[a + 1 :]) * spec.shape[-1]))
    return t.real.reshape(*(m.shape[0] for m in mats), spec.shape[-1])


# ---- Pruned FFTs: transform an axis, keep its band, go on with the kept part only -------------


def pruned_rfftn(x: torch.Tensor, n: tuple[int, ...], last_kept: int, index: list[torch.Tensor]) -> torch.Tensor:
    """Kept spectrum of real x (S_1, ..., S_d, B), zero-padded on the right to n, batch last.

    rfft the last spatial axis and keep its first `last_kept` bins, then fft each other axis a and
    keep the bins index[a]: every transform after the first runs on the compressed data only, and
    the batch stays the contiguous axis, so the output is frequency-first without a transpose.
    """
    d = len(n)
    t = torch.fft.rfft(x, n=n[-1], dim=d - 1).narrow(d - 1, 0, last_kept)
    for a in reversed(range(d - 1)):
        t = torch.fft.fft(t, n=n[a], dim=a).index_select(a, index[a])
    return t


def pruned_irfftn(t: torch.Tensor, n: tuple[int, ...], index: list[torch.Tensor], keep: list[slice]) -> torch.Tensor:
    """Re of sum_f (mult_f / prod(n)) e^{+i theta f p} t[f] at the positions `keep` (one slice per axis).

    t is frequency-first (R_1, ..., R_d, B), one-sided along the last spatial axis (bins 0..R_d-1);
    the other axes hold the bins index[a]. Each axis is scattered into its full length, inverted
    and cut to its kept positions before the next, so the last (real) inverse runs on those only.
    """
    d = len(n)
    for a in range(d - 1):
        full = t.new_zeros(*t.shape[:a], n[a], *t.shape[a + 1 :])
        t = torch.fft.ifft(full.index_copy_(a, index[a], t), dim=a)[(slice(None),) * a + (keep[a],)]
    return torch.fft.irfft(t, n=n[-1], dim=d - 1)[(slice(None),) * (d - 1) + (keep[-1],)]


def _batch_last(x: torch.Tensor) -> torch.Tensor:
    """(B, S_1, ..., S_d) -> contiguous (S_1, ..., S_d, B): one transpose of the real signal."""
    return x.permute(*range(1, x.dim()), 0).contiguous()


def _batch_first(x: torch.Tensor) -> torch.Tensor:
    """(S_1, ..., S_d, B) -> contiguous (B, S_1, ..., S_d)."""
    return x.permute(-1, *range(x.dim() - 1)).contiguous()


def _embed(x: torch.Tensor, n: tuple[int, ...], strides: tuple[int, ...]) -> torch.Tensor:
    """x (S..., B) placed at positions i * stride of a zero (n..., B) signal (stride 1: x itself)."""
    if all(s == 1 for s in strides):
        return x  # the FFTs zero-pad on the right
    z = x.new_zeros(*n, x.shape[-1])
    z[tuple(slice(0, s * (m - 1) + 1, s) for s, m in zip(strides, x.shape[:-1]))] = x
    return z


# ---- Plans: one shape's transforms, chosen and cached once ------------------------------------

ROUTES = ("auto", "dft", "fft")


def _multiplicity(geom: AxisGeometry, kept: int, dtype: torch.dtype) -> torch.Tensor:
    """How often each kept one-sided bin occurs in the full spectrum (1 at DC and Nyquist, else 2)."""
    idx = torch.arange(kept)
    return torch.where((idx == 0) | (2 * idx == geom.n), 1.0, 2.0).to(dtype)


def dft_cost(geoms: tuple[AxisGeometry, ...], kept: tuple[int, ...]) -> float:
    """Real multiply-adds per channel image of the forward input analysis by partial DFTs."""
    lengths = [g.length for g in geoms]
    cost = 2.0 * math.prod(lengths) * kept[-1]  # real GEMM on the last axis
    for a in reversed(range(len(geoms) - 1)):  # complex GEMMs (4 real each) on the others
        cost += 4.0 * math.prod(lengths[: a + 1]) * kept[a] * math.prod(kept[a + 1 :])
    return cost


def fft_cost(geoms: tuple[AxisGeometry, ...], kept: tuple[int, ...]) -> float:
    """The same for the pruned FFT, counting FFT_CONSTANT * n log2 n per transformed line."""
    n = [g.n for g in geoms]
    lines = math.prod(g.length for g in geoms[:-1])
    cost = FFT_CONSTANT * lines * n[-1] * max(math.log2(n[-1]), 1.0) / 2  # real FFT: half a complex one
    for a in reversed(range(len(geoms) - 1)):
        lines = math.prod(g.length for g in geoms[:a]) * math.prod(kept[a + 1 :])
        cost += FFT_CONSTANT * lines * n[a] * max(math.log2(n[a]), 1.0)
    return cost


# Real multiply-adds per FFT point and log2(n) stage that make the cost model's choice agree with
# whole-layer timings (benchmarks/spectral.py, the route table): a tall constant, as pocketfft/MKL
# FFTs on strided axes, the zero-padding and the scatter of the inverse run far below GEMM speed.
FFT_CONSTANT = 100.0


def choose_route(geoms: tuple[AxisGeometry, ...], bands: tuple[tuple[int, ...], ...]) -> str:
    """'fft' where the cost model says the pruned FFT is cheaper, else 'dft' (deterministic per shape).

    Strided convolutions stay on the DFT: its gradient analysis reads the strided output directly,
    the FFT transforms the zero-stuffed full-length signal.
    """
    if tuple(bands[-1]) != tuple(range(len(bands[-1]))) or any(g.stride > 1 for g in geoms):
        return "dft"  # the pruned FFT keeps a prefix of the one-sided axis
    kept = tuple(len(b) for b in bands)
    return "fft" if fft_cost(geoms, kept) < dft_cost(geoms, kept) else "dft"


class Plan(abc.ABC):
    """Transforms of one convolution shape restricted to its band: the maps of forward and backward.

    Built once per (geometry, band, dtype, device, route) by `plan()`; tensors live on the device.
    Subclasses compute the input-side spectra (partial DFT or pruned FFT); filters, a few taps
    each, always go through partial DFTs, formed a chunk of first-axis bins at a time.
    """

    route: str

    def __init__(
        self, geoms: tuple[AxisGeometry, ...], bands: tuple[tuple[int, ...], ...], dtype: torch.dtype, device: str
    ) -> None:
        d = len(geoms)
        self.kept = tuple(len(b) for b in bands)
        self.axes = [axis_dft(g, band, a == d - 1, dtype, device) for a, (g, band) in enumerate(zip(geoms, bands))]
        first = self.axes[0].weight_analysis
        self._first_rows = torch.cat([first.real, first.imag], 1).contiguous()  # [M_r, M_i], (R_1, 2 k_1)
        self._chunks: dict[int, list[slice]] = {}

    @abc.abstractmethod
    def input_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """X: real (B, L_1, ..., L_d) to complex (R_1, ..., R_d, B)."""

    @abc.abstractmethod
    def output(self, spec: torch.Tensor) -> torch.Tensor:
        """y = Re(synthesis of Y) at the output positions: (R..., B) to real (B, out_1, ..., out_d)."""

    @abc.abstractmethod
    def grad_spectrum(self, grad_y: torch.Tensor) -> torch.Tensor:
        """G for grad_y (B, out...), as a lazily conjugated (R..., B) view (what the backends want)."""

    @abc.abstractmethod
    def input_grad(self, spec: torch.Tensor) -> torch.Tensor:
        """Adjoint of input_spectrum under the real inner product: (R..., B) to real (B, L...)."""

    def filter_chunks(self, filters: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
        """The flipped filters' spectrum W, chunk by chunk of first-axis bins: (rows, complex W there,
        (rows, R_2, ..., R_d, B) flattened after the rows) for real filters (k_1, ..., k_d, B).

        One chunk: partial DFTs along every axis. More: the other axes once (V), then per chunk
        (M_r + i M_i) V as one real GEMM [M_r, M_i] @ [V; i V] (complex GEMMs with a few taps as
        the inner dimension run far slower)."""
        chunks = self.row_chunks(filters.shape[-1])
        mats = [a.weight_analysis for a in self.axes]
        if len(chunks) == 1:
            yield chunks[0], analysis_batch_last(filters, mats)
            return
        v = analysis_batch_last(filters, mats, stop=1).reshape(filters.shape[0], -1)
        operand = torch.cat([torch.view_as_real(v), torch.view_as_real(v * 1j)]).reshape(2 * len(v), -1)
        for rows in chunks:
            yield rows, torch.view_as_complex((self._first_rows[rows] @ operand).view(-1, v.shape[1], 2))

    def filter_grad_rows(self, spec: torch.Tensor, rows: slice) -> torch.Tensor:
        """The share of the filters' gradient (k_1, ..., k_d, B) of the gradient spectrum at `rows`."""
        mats = [self.axes[0].weight_adjoint[:, rows], *(a.weight_adjoint for a in self.axes[1:])]
        return synthesis_batch_last(spec, mats)

    def row_chunks(self, filters: int) -> list[slice]:
        """First-axis bins in chunks of about CHUNK_BYTES of the spectrum of `filters` filters each."""
        if filters not in self._chunks:
            row_bytes = math.prod(self.kept[1:]) * filters * self.axes[0].weight_analysis.element_size()
            rows = max(1, CHUNK_BYTES // row_bytes)
            self._chunks[filters] = [slice(i, min(i + rows, self.kept[0])) for i in range(0, self.kept[0], rows)]
        return self._chunks[filters]


class DFTPlan(Plan):
    """Input-side spectra by partial DFT matrices: GEMMs of O(L x kept) per line (small maps, compressed bands)."""

    route = "dft"

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self._analysis_real = _real_columns(self.axes[-1].input_analysis)
        self._synthesis_real = _real_rows(self.axes[-1].output_synthesis)
        self._grad_real = _real_columns(self.axes[-1].grad_analysis_conj)
        self._adjoint_real = _real_rows(self.axes[-1].input_adjoint)

    def input_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        return analysis(x, [a.input_analysis for a in self.axes], self._analysis_real)

    def output(self, spec: torch.Tensor) -> torch.Tensor:
        return synthesis(spec, [a.output_synthesis for a in self.axes], self._synthesis_real)

    def grad_spectrum(self, grad_y: torch.Tensor) -> torch.Tensor:
        return analysis(grad_y, [a.grad_analysis_conj for a in self.axes], self._grad_real).conj()

    def input_grad(self, spec: torch.Tensor) -> torch.Tensor:
        return synthesis(spec, [a.input_adjoint for a in self.axes], self._adjoint_real)


class FFTPlan(Plan):
    """Input-side spectra by pruned FFTs, batch last: O(L log L) per line (large maps, full bands)."""

    route = "fft"

    def __init__(
        self, geoms: tuple[AxisGeometry, ...], bands: tuple[tuple[int, ...], ...], dtype: torch.dtype, device: str
    ) -> None:
        super().__init__(geoms, bands, dtype, device)
        d = len(geoms)
        self.n = tuple(g.n for g in geoms)
        self._index = [torch.tensor(b, dtype=torch.int64, device=device) for b in bands[:-1]]
        # The input's left padding is a phase on its spectrum: e^{-i theta f pad_left} per axis.
        phase = torch.ones((), dtype=torch.complex128)
        for a, (g, band) in enumerate(zip(geoms, bands)):
            f = torch.tensor(band, dtype=torch.float64)
            shape = [1] * d
            shape[a] = -1
            phase = phase * torch.polar(torch.ones_like(f), -2 * math.pi * ((f * g.pad_left) % g.n) / g.n).view(shape)
        cdtype = self.axes[0].input_analysis.dtype
        self._phase = None if all(g.pad_left == 0 for g in geoms) else phase.to(cdtype).to(device)[..., None]
        mult = _multiplicity(geoms[-1], self.kept[-1], dtype).to(device)[:, None]  # (R_d, 1): over the batch
        self._grad_scale = mult / math.prod(self.n)  # G = (mult / prod n) * FFT(stuffed grad_y)
        self._adjoint_scale = math.prod(self.n) / mult  # undoes irfft's weights for the adjoint
        self._strides = tuple(g.stride for g in geoms)
        self._out_keep = [slice(0, g.stride * (g.out - 1) + 1, g.stride) for g in geoms]
        self._in_keep = [slice(g.pad_left, g.pad_left + g.length) for g in geoms]

    def input_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        t = pruned_rfftn(_batch_last(x), self.n, self.kept[-1], self._index)
        return t if self._phase is None else t.mul_(self._phase)

    def output(self, spec: torch.Tensor) -> torch.Tensor:
        return _batch_first(pruned_irfftn(spec.resolve_conj(), self.n, self._index, self._out_keep))

    def grad_spectrum(self, grad_y: torch.Tensor) -> torch.Tensor:
        t = pruned_rfftn(_embed(_batch_last(grad_y), self.n, self._strides), self.n, self.kept[-1], self._index)
        return torch.conj_physical(t).mul_(self._grad_scale).conj()

    def input_grad(self, spec: torch.Tensor) -> torch.Tensor:
        return _batch_first(pruned_irfftn(spec * self._adjoint_scale, self.n, self._index, self._in_keep))


# The filter spectrum W (K x C x O) outgrows the input's on large maps; layers form it CHUNK_BYTES at a
# time, so it stays in cache and never needs a large (page-faulting) allocation (benchmarks/spectral.py).
CHUNK_BYTES = 4 * 2**20


@functools.lru_cache(maxsize=512)
def plan(
    geoms: tuple[AxisGeometry, ...],
    bands: tuple[tuple[int, ...], ...],
    dtype: torch.dtype,
    device: str,
    route: str = "auto",
) -> Plan:
    """The cached Plan of one shape; route 'auto' asks choose_route, 'dft' / 'fft' force one."""
    if route == "auto":
        route = choose_route(geoms, bands)
    elif route == "fft" and tuple(bands[-1]) != tuple(range(len(bands[-1]))):
        raise ValueError("transform='fft' needs a band that keeps the lowest bins of the last axis")
    return (FFTPlan if route == "fft" else DFTPlan)(geoms, bands, dtype, device)
