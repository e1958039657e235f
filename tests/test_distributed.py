"""Scale-out: the Ray executor stores what the local one stores, survives failures and restarts;
2-process DDP training (gloo, CPU) under torchrun matches single-process training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from robustbench_bl.runtime.checkpoints import CheckpointStore
from robustbench_bl.runtime.results import ResultsStore
from robustbench_bl.runtime.sweep import SweepError, grid, make_executor, run
from robustbench_bl.training import TrainConfig, load_train_data

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # one local Ray instance per test worker

TESTS = Path(__file__).parent
VOLATILE = {"wall_seconds"}


def square(cell: dict) -> list[dict]:
    return [{"metric": "square", "value": cell["a"] ** 2}, {"metric": "pid_is_int", "value": float(os.getpid() > 0)}]


def flaky(cell: dict) -> list[dict]:
    """Raises for a == 3; kills its worker the first time it sees a == 1 (Ray must retry it)."""
    if cell["a"] == 3:
        raise RuntimeError("measurement broke on purpose")
    marker = Path(cell["marker"])
    if cell["a"] == 1 and not marker.exists():
        marker.touch()
        os._exit(1)
    return square(cell)


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _stable(frame):
    cols = sorted(set(frame.columns) - VOLATILE)
    return frame[cols].sort_values(cols).reset_index(drop=True)


def test_ray_stores_the_same_rows_as_local(tmp_path: Path, ray_instance: None) -> None:
    cells = grid(a=range(6), b=["x", "y"])
    local = run(cells, square, ResultsStore(tmp_path / "local.jsonl"), progress=False)
    remote = run(cells, square, ResultsStore(tmp_path / "ray.jsonl"), executor="ray", progress=False)
    assert len(remote) == 24
    assert _stable(local).equals(_stable(remote))


def test_failed_task_is_reported_and_dead_worker_retried(tmp_path: Path, ray_instance: None) -> None:
    store = ResultsStore(tmp_path / "r.jsonl")
    cells = grid(a=range(5), marker=[str(tmp_path / "killed-once")])
    with pytest.raises(SweepError, match=r"(?s)1 cell\(s\) failed.*measurement broke on purpose") as info:
        run(cells, flaky, store, executor=make_executor("ray", max_retries=2), progress=False)
    assert [c["a"] for c, _ in info.value.failures] == [3]
    assert (tmp_path / "killed-once").exists()  # a == 1 killed its worker once, then succeeded
    table = store.frame()
    assert sorted(table[table.metric == "square"].a) == [0, 1, 2, 4]


def test_local_executor_reports_failures_the_same_way(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.jsonl")
    with pytest.raises(SweepError) as info:
        run(grid(a=[2, 3, 4], marker=["unused"]), flaky, store, progress=False)
    assert [c["a"] for c, _ in info.value.failures] == [3]
    assert sorted(store.frame().a.unique()) == [2, 4]


def test_unknown_executor() -> None:
    with pytest.raises(ValueError, match=r"executor must be one of \['local', 'ray'\]"):
        make_executor("dask")


DRIVER = textwrap.dedent(
    """
    import sys, time
    from robustbench_bl.runtime.results import ResultsStore
    from robustbench_bl.runtime.sweep import grid, run

    DELAY = float(sys.argv[2])  # read here: inside a Ray worker sys.argv is the worker's

    def slow(cell):
        time.sleep(DELAY)
        return [{"metric": "square", "value": cell["a"] ** 2}]

    run(grid(a=range(40)), slow, ResultsStore(sys.argv[1]), executor="ray", progress=False)
    """
)


def test_killed_ray_driver_resumes_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen([sys.executable, str(script), str(path), "0.3"], env=env, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not path.exists() or len(path.read_bytes().splitlines()) < 4):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    proc.wait()
    partial = len(path.read_bytes().splitlines())
    assert 4 <= partial < 40
    subprocess.run([sys.executable, str(script), str(path), "0"], env=env, check=True, timeout=300)
    keys = [json.loads(line)["key"] for line in path.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 40
    table = ResultsStore(path).frame()
    assert sorted(table.a) == list(range(40)) and (table.value == table.a**2).all()


DDP_SCRIPT = textwrap.dedent(
    """
    import atexit, os, pathlib, sys
    import torch.distributed as dist
    from robustbench_bl.runtime.checkpoints import CheckpointStore
    from robustbench_bl.training import TrainConfig

    def left() -> None:  # registered before the process group's teardown, so it runs after it
        pathlib.Path(sys.argv[1], f"left-{os.environ['RANK']}").write_text(str(not dist.is_initialized()))

    atexit.register(left)
    config = TrainConfig(**eval(sys.argv[2]))
    CheckpointStore(sys.argv[1]).get_or_train(config, device="cpu", progress=False)
    """
)


def test_ddp_two_processes_match_single_process(tmp_path: Path) -> None:
    config = TrainConfig(model="lenet", epochs=2, batch_size=16, lr=0.05, limit=70, augment=True, seed=3)
    settings = {k: getattr(config, k) for k in ("model", "epochs", "batch_size", "lr", "limit", "augment", "seed")}
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
        str(script),
        str(tmp_path / "ddp"),
        repr(settings),
    ]
    subprocess.run(command, check=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    # each rank left the process group before exit (else Gloo's threads can abort it at finalization)
    assert [(tmp_path / "ddp" / f"left-{rank}").read_text() for rank in (0, 1)] == ["True", "True"]
    ddp_store = CheckpointStore(tmp_path / "ddp")
    fingerprint = load_train_data(config).fingerprint
    assert ddp_store.metadata(config, fingerprint)["metrics"]["ranks"] == 2
    ddp_state = ddp_store.load_state(config, fingerprint)

    single, _ = CheckpointStore(tmp_path / "single").get_or_train(config, device="cpu", progress=False)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(ddp_state[key], value, rtol=1e-4, atol=1e-5)


def test_ray_executor_without_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'robustbench-bl\[ray\]'"):
        make_executor("ray")
