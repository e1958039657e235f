"""Property suite over the public API: for any input hypothesis draws, the result is valid or the
package raises a ValueError/TypeError of its own that names the argument, never an exception
from inside torch, numpy, eagerpy or zipfile.

Deterministic in the normal test run (the `ci` profile in conftest.py: derandomized, bounded
examples); HYPOTHESIS_PROFILE=fuzz draws many more random examples.
"""

from __future__ import annotations

import json
import math
import os
import re
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from torch import nn

import robustbench_bl as rbl
from robustbench_bl import attacks, channels, data
from robustbench_bl.evaluation import probes
from robustbench_bl.runtime.results import ResultsStore
from robustbench_bl.spectral import band_limited_conv1d, band_limited_conv2d, bandlimit

PACKAGE = Path(rbl.__file__).resolve().parent
T = TypeVar("T")


def examples(n: int) -> settings:
    """`n` examples in the normal run (the `ci` profile), ten times as many under HYPOTHESIS_PROFILE=fuzz."""
    scale = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 1
    return settings(
        max_examples=n * scale, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
    )


def clean(call: Callable[[], T], *names: str) -> T | None:
    """call()'s result, or None when it raised a ValueError/TypeError raised by this package whose
    message names one of `names`; any other exception fails the property."""
    try:
        result = call()
    except (ValueError, TypeError) as err:
        origin = Path(traceback.extract_tb(err.__traceback__)[-1].filename).resolve()
        assert origin.is_relative_to(PACKAGE), f"{type(err).__name__} from inside {origin}: {err}"
        assert any(name in str(err) for name in names), f"the message names none of {names}: {err}"
        event("refused: " + re.sub(r"/\S+", "<path>", str(err))[:50])  # --hypothesis-show-statistics
        return None
    event(f"{getattr(call, '__qualname__', 'call')}: result")
    return result


# --- strategies ---------------------------------------------------------------------------------


def mostly(valid: st.SearchStrategy[Any], *invalid: st.SearchStrategy[Any], odds: int = 4) -> st.SearchStrategy[Any]:
    """`valid` `odds` times as often as one of `invalid`: with many arguments per call, the valid
    path stays well exercised (st.one_of would merge repeated branches)."""
    if not invalid:
        return valid
    return st.integers(0, odds).flatmap(lambda i: valid if i < odds else st.one_of(*invalid))


DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool]


@st.composite
def tensors(draw: st.DrawFn, max_rank: int = 5, max_side: int = 6, dtypes: list[torch.dtype] = DTYPES) -> torch.Tensor:
    """Tensors of any rank 0..max_rank and dtype, values mostly in [0, 1], sometimes out of range or NaN."""
    shape = draw(st.lists(st.integers(0, max_side), min_size=0, max_size=max_rank))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**16))
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    special = draw(st.sampled_from([None, None, None, -0.5, 1.5, math.nan, math.inf]))
    if special is not None and x.numel():
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = special
    return x.to(dtype) if dtype.is_floating_point else (x * 3).nan_to_num(0, 0, 0).to(dtype)


def images(max_side: int = 6) -> st.SearchStrategy[torch.Tensor]:
    """Mostly RGB N x 3 x H x W batches in [0, 1] (N may be 0), else anything a user might pass."""
    batch = st.builds(
        lambda n, c, h, w, dtype, seed: torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)).to(dtype),
        st.integers(0, 3),
        mostly(st.just(3), st.just(1)),
        st.integers(1, max_side),
        st.integers(1, max_side),
        st.sampled_from([torch.float32, torch.float64, torch.float16]),
        st.integers(0, 2**16),
    )
    other = st.one_of(tensors(), st.none(), st.just([[0.5]]), st.builds(lambda: np.zeros((1, 3, 4, 4), np.float32)))
    return mostly(batch, other)


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-5, 300),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)


@st.composite
def channel_args(draw: st.DrawFn) -> tuple[str, Any, Any, Any]:
    """(name, strength, seed, gradient), each valid most of the time."""
    name = draw(mostly(st.sampled_from(channels.names()), st.sampled_from(["blur", "", "Gauss"])))
    if name in channels.names():
        cls = channels.channel_class(name)
        low, high = cls.bounds
        valid = st.integers(int(low), int(high)) if cls.integer else st.floats(low, high, exclude_max=cls.open_high)
        strength = draw(st.one_of(valid, valid, numbers))
    else:
        strength = draw(numbers)
    seed = draw(
        mostly(st.one_of(st.none(), st.integers(0, 2**31)), st.integers(-2, -1), st.floats(0, 3), st.text(max_size=2))
    )
    gradient = draw(mostly(st.sampled_from(["exact", "bpda"]), st.sampled_from(["none", 0])))
    return name, strength, seed, gradient


# --- channels and the defended classifier ---------------------------------------------------------


@given(args=channel_args(), x=images())
@examples(300)
def test_channels(args: tuple[str, Any, Any, Any], x: Any) -> None:
    name, strength, seed, gradient = args
    channel = clean(
        lambda: channels.make(name, strength, seed=seed, gradient=gradient), "channel", "strength", "seed", "gradient"
    )
    if channel is None:
        return
    y = clean(lambda: channel(x), "x")
    if y is None:
        return
    batch = x if x.dim() == 4 else x.unsqueeze(0)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all() and (len(batch) == 0 or (y.min() >= 0 and y.max() <= 1))
    d = clean(lambda: channel.distortion(batch), "x")
    assert d is not None and d.shape == (len(batch),) and torch.isfinite(d).all()


class _AnySize(nn.Module):
    """A 3-channel classifier of any image size (global pooling), tiny so that examples are cheap."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).relu().mean((2, 3)))


MODEL = _AnySize().eval()


@given(
    x=images(),
    votes=mostly(st.integers(1, 5), st.integers(-1, 0), numbers),
    seed=mostly(st.none() | st.integers(0, 9), st.just(-1)),
    spec=st.sampled_from(["identity", "gauss:0.1", "fft:0.5", "cd:2", "jpeg:30"]),
    alpha=mostly(st.none() | st.floats(0.001, 0.5), numbers),
)
@example(x=torch.rand(2, 3, 5, 5), votes=3, seed=0, spec="gauss:0.1", alpha=0.1)
@examples(200)
def test_defended(x: Any, votes: Any, seed: Any, spec: str, alpha: Any) -> None:
    defended = clean(lambda: rbl.Defended(MODEL, channels.make(spec), votes, seed=seed), "votes", "seed")
    if defended is None:
        return
    out = clean(lambda: defended.predict(x, alpha=alpha), "x", "alpha")
    if out is None:
        return
    labels, counts = out
    assert labels.shape == (len(x),) and counts.shape == (len(x), 5)
    assert (counts.sum(1) == defended.votes).all() and ((labels >= -1) & (labels < 5)).all()
    scores = clean(lambda: defended(x), "x")
    assert scores is not None and scores.shape == (len(x), 5) and torch.isfinite(scores).all()


# --- band-limited convolution ---------------------------------------------------------------------


def _reference(fn: Callable[[], torch.Tensor]) -> torch.Tensor | None:
    """F.conv's answer, or None when F.conv itself refuses the arguments."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Using padding='same'", UserWarning)  # torch's note on even kernels
            return fn()
    except (RuntimeError, ValueError, TypeError, IndexError):
        return None


@given(
    d=st.sampled_from([1, 2]),
    n=st.integers(0, 2),
    c=st.integers(1, 3),
    o=st.integers(1, 3),
    size=st.integers(1, 9),
    k=st.integers(1, 5),
    stride=mostly(st.integers(1, 3), st.integers(-1, 0)),
    padding=mostly(st.integers(0, 3) | st.sampled_from(["same", "valid"]), st.just(-1), st.just("full")),
    dilation=mostly(st.integers(1, 2), st.just(0)),
    groups=mostly(st.integers(1, 3), st.just(0)),
    rate=mostly(st.floats(0, 0.95) | st.just(0.0), st.floats(-0.5, 1.5)),
    bias=st.booleans(),
    dtype=mostly(st.sampled_from([torch.float32, torch.float64]), st.just(torch.float16)),
)
@examples(400)
def test_band_limited_conv_agrees_with_fconv_on_what_it_accepts(
    d: int,
    n: int,
    c: int,
    o: int,
    size: int,
    k: int,
    stride: int,
    padding: Any,
    dilation: int,
    groups: int,
    rate: float,
    bias: bool,
    dtype: torch.dtype,
) -> None:
    gen = torch.Generator().manual_seed(n * 1000 + c * 100 + o * 10 + k)
    c, o = c * max(groups, 1), o * max(groups, 1)  # per-group counts, so that valid groups divide both
    x = torch.randn(n, c, *([size] * d), generator=gen).to(dtype).requires_grad_()  # attacks differentiate to x
    w = torch.randn(o, c // max(groups, 1), *([k] * d), generator=gen).to(dtype)
    b = torch.randn(o, generator=gen).to(dtype) if bias else None
    ours = band_limited_conv2d if d == 2 else band_limited_conv1d
    theirs = F.conv2d if d == 2 else F.conv1d
    got = clean(
        lambda: ours(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups, compress_rate=rate),
        "input",
        "weight",
        "bias",
        "stride",
        "padding",
        "dilation",
        "groups",
        "compress_rate",
        "kernel",
    )
    expected = _reference(
        lambda: theirs(x.double(), w.double(), None if b is None else b.double(), stride, padding, dilation, groups)
    )
    if got is None:
        return
    assert expected is not None, "accepted arguments that F.conv refuses"
    assert got.shape == expected.shape and got.dtype == x.dtype
    (grad,) = torch.autograd.grad(got.sum(), x)  # every accepted call differentiates to its input
    if rate == 0:
        torch.testing.assert_close(got.double(), expected, rtol=1e-3, atol=1e-3)
        (expected_grad,) = torch.autograd.grad(expected.sum(), x)
        torch.testing.assert_close(grad.double(), expected_grad.double(), rtol=1e-3, atol=1e-3)


@given(
    rate=mostly(st.none() | st.floats(0, 0.99), st.floats(-1, 2), numbers),
    energy=mostly(st.none(), st.floats(-1, 2), numbers),
    backend=mostly(st.sampled_from(["auto", "torch"]), st.sampled_from(["cupy", "numpy"])),
    what=mostly(st.just("model"), st.sampled_from(["conv", "other"])),
)
@examples(100)
def test_bandlimit(rate: Any, energy: Any, backend: str, what: str) -> None:
    torch.manual_seed(0)
    target: Any = {
        "model": lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv1d(4, 4, 1)),
        "conv": lambda: nn.Conv2d(3, 3, 1),
        "other": lambda: "model",
    }[what]()
    converted = clean(
        lambda: bandlimit(target, compress_rate=rate, energy=energy, backend=backend),
        "model",
        "compress_rate",
        "energy",
        "backend",
        "CUDA",
    )
    if converted is not None:
        assert all(type(m) not in (nn.Conv1d, nn.Conv2d) for m in converted.modules())


# --- attacks and probes ---------------------------------------------------------------------------


@given(
    attack=mostly(st.sampled_from(["fgsm", "pgd-linf", "deepfool-linf", "salt-and-pepper"]), st.just("pgd"), odds=9),
    threat=mostly(st.sampled_from(["nonadaptive", "bpda", "eot"]), st.just("greybox"), odds=9),
    epsilons=mostly(
        st.lists(st.floats(0, 0.3), min_size=1, max_size=3),
        st.lists(st.one_of(st.floats(-0.1, 0.3), st.just(math.nan)), max_size=3),
        numbers,
        odds=9,
    ),
    labels=mostly(st.just("ok"), st.sampled_from(["float", "short", "range", "list"]), odds=9),
    x=images(max_side=5),
    eot=mostly(st.integers(1, 2), st.integers(-1, 0), numbers, odds=9),
    seed=mostly(st.integers(0, 3), st.just(-1), numbers, odds=9),
)
@example(attack="pgd-linf", threat="eot", epsilons=[0.0, 0.1], labels="ok", x=torch.rand(3, 3, 5, 5), eot=2, seed=1)
@examples(120)
def test_attacks_evaluate(attack: str, threat: str, epsilons: Any, labels: str, x: Any, eot: Any, seed: Any) -> None:
    n = len(x) if isinstance(x, torch.Tensor) and x.dim() else 1
    y: Any = {
        "ok": torch.arange(n) % 5,
        "float": torch.zeros(n),
        "short": torch.zeros(max(n - 1, 0), dtype=torch.long),
        "range": torch.full((n,), 7),
        "list": [0] * n,
    }[labels]
    defended = rbl.Defended(MODEL, channels.make("cd:3"))
    options = (
        {"steps": 2} if attack in ("pgd-linf", "deepfool-linf") else {"steps": 5} if attack == "salt-and-pepper" else {}
    )
    rows = clean(
        lambda: attacks.evaluate(defended, attack, x, y, threat, epsilons, eot, seed, options=options),
        "attack",
        "threat",
        "epsilons",
        "eot_samples",
        "seed",
        "x",
        "y",
    )
    if rows is not None:
        robust = rows[rows.metric == "robust_accuracy"].value
        clean_acc = rows[rows.metric == "clean_accuracy"].value.iloc[0]
        assert robust.notna().all() and ((robust >= 0) & (robust <= clean_acc + 1e-9)).all()


@given(
    x=images(max_side=5),
    target=mostly(st.sampled_from([None, "ok"]), st.sampled_from(["range", "float"])),
    iters=mostly(st.integers(1, 4), st.integers(-1, 0), numbers),
    tol=mostly(st.floats(1e-4, 0.5), st.floats(-1, 2), numbers),
    batch=mostly(st.integers(1, 3), st.integers(-1, 0), numbers),
)
@example(x=torch.rand(3, 3, 4, 4), target="ok", iters=3, tol=1e-3, batch=2)
@examples(120)
def test_probes(x: Any, target: Any, iters: Any, tol: Any, batch: Any) -> None:
    n = len(x) if isinstance(x, torch.Tensor) and x.dim() else 1
    goal = {None: None, "ok": torch.arange(n) % 5, "range": torch.full((n,), 9), "float": torch.zeros(n)}[target]
    names = ("x", "target", "iters", "tol", "batch_size")
    m1 = clean(lambda: probes.gradient_norm(MODEL, x, goal, batch_size=batch), *names)
    if m1 is not None:
        assert m1.shape == (n,) and torch.isfinite(m1).all() and (m1 >= 0).all()
    m2 = clean(lambda: probes.hessian_top_eigenvalue(MODEL, x, goal, iters=iters, tol=tol, batch_size=batch), *names)
    if m2 is not None:
        assert m2.shape == (n,) and torch.isfinite(m2).all()


# --- stored files ---------------------------------------------------------------------------------


@st.composite
def npz_contents(draw: st.DrawFn) -> bytes | dict[str, np.ndarray]:
    """Raw bytes (damaged files) or arrays for an npz: right or wrong keys, shapes, dtypes, labels."""
    if draw(st.integers(0, 6)) == 0:
        return draw(st.one_of(st.binary(max_size=64), st.just(b"PK\x03\x04" + b"\x00" * 40)))
    n = draw(st.integers(0, 4))
    shape = draw(
        mostly(st.sampled_from([(32, 32, 3), (28, 28)]), st.sampled_from([(32, 32), (3, 32, 32), (28, 28, 1)]))
    )
    dtype = draw(mostly(st.just(np.uint8), st.sampled_from([np.float32, np.int64])))
    labels = draw(st.lists(mostly(st.integers(0, 9), st.sampled_from([-1, 10]), odds=20), min_size=n, max_size=n))
    arrays = {"x": np.zeros((n, *shape), dtype), "y": np.asarray(labels, np.int64)}
    damage = draw(mostly(st.none(), st.sampled_from(["no x", "no y", "short y", "float y", "2-D y"])))
    if damage in ("no x", "no y"):
        del arrays[damage[-1]]
    elif damage == "short y":
        arrays["y"] = arrays["y"][: max(0, n - 1)]
    elif damage == "float y":
        arrays["y"] = arrays["y"].astype(np.float32)
    elif damage == "2-D y":
        arrays["y"] = arrays["y"][:, None]
    return arrays


@given(content=npz_contents(), name=st.sampled_from(["cifar10", "mnist"]), nested=st.booleans())
@examples(200)
def test_data_loading_from_any_npz(
    tmp_path_factory: pytest.TempPathFactory, content: Any, name: str, nested: bool
) -> None:
    root = tmp_path_factory.mktemp("npz")
    folder = root / name if nested else root
    folder.mkdir(exist_ok=True)
    file = folder / "test.npz"
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        np.savez(file, **content)
    ds = clean(lambda: data.load(name, "test", root=root, download=False), str(file), "root=")
    if ds is not None:
        side = 32 if name == "cifar10" else 28
        assert ds.x.shape[1:] == ((3, side, side) if name == "cifar10" else (1, side, side)) and len(ds.x) == len(ds.y)
        assert ds.y.dtype == torch.int64 and (len(ds) == 0 or (ds.y.min() >= 0 and ds.y.max() <= 9))


GOOD = {"key": "k1", "cell": {"a": 1}, "rows": [{"a": 1, "metric": "m", "value": 0.5}]}


def _json_values(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One level of JSON nesting over `children`, with the store's own key names likely."""
    return st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["key", "cell", "rows", "x"]), children, max_size=4
    )


JSON_LINES = st.builds(
    lambda v: json.dumps(v).encode(),
    st.recursive(st.none() | st.integers() | st.text(max_size=4), _json_values, max_leaves=8),
)


@given(lines=st.lists(st.one_of(st.binary(max_size=40), st.just(json.dumps(GOOD).encode()), JSON_LINES), max_size=8))
@examples(200)
def test_results_store_reads_any_file(tmp_path_factory: pytest.TempPathFactory, lines: list[bytes]) -> None:
    path = tmp_path_factory.mktemp("store") / "r.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + (b"\n" if lines else b""))
    store = ResultsStore(path)
    table = store.frame()
    assert len(table) == sum(len(rows) for rows in _intact(lines).values())
    assert store.keys() == set(_intact(lines))
    store.append({"a": 2}, [{"metric": "m", "value": 1.0}])  # a writer after any damage stays readable
    assert store.has({"a": 2}) and len(store.frame()) == len(table) + 1


def _intact(lines: list[bytes]) -> dict[str, list[Any]]:
    """The spec, written out: rows per key of the lines that are UTF-8 JSON objects with a string
    key, an object cell and a list of object rows; the first record of a key wins."""
    found: dict[str, list[Any]] = {}
    for line in lines:
        try:
            record = json.loads(line.replace(b"\n", b" ").decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if (
            isinstance(record, dict)
            and isinstance(record.get("key"), str)
            and isinstance(record.get("cell"), dict)
            and isinstance(record.get("rows"), list)
            and all(isinstance(r, dict) for r in record["rows"])
        ):
            found.setdefault(record["key"], record["rows"])
    return found
