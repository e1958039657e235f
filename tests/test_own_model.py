"""Evaluating your own model: `benchmark` on your images, the result file, the report's board, and
`rbl benchmark` with a `package.module:factory` model and its weights.

A linear classifier's minimal Linf distance per example is |s| / ||w||_1 (test_attack_success),
so the protocol's robust accuracy on (x, y) given as tensors, as a torch Dataset or as a
`data.Dataset` must be the share of examples farther than eps. Bad data, bad command lines and
unsafe or mismatched weights are one clear error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from test_attack_success import linear_case
from torch.utils.data import TensorDataset

import robustbench_bl
import robustbench_bl.evaluation.command
from robustbench_bl import data, report
from robustbench_bl.cli import command_line
from robustbench_bl.evaluation import leaderboard
from robustbench_bl.versions import versions

#: Small budgets: a linear model needs few steps; the decision-based attack is left nearly idle.
OPTIONS = {
    "apgd-ce-linf": {"steps": 20},
    "apgd-dlr-linf": {"steps": 20},
    "pgd-linf": {"steps": 20},
    "square-linf": {"n_queries": 50},
    "hopskipjump": {"steps": 1, "initial_gradient_eval_steps": 5, "max_gradient_eval_steps": 5},
}


def gap_eps(distance: torch.Tensor) -> float:
    """A budget in the widest relative gap between sorted minimal distances in their middle half (so
    it fools about half of the examples), with none within 10% of it."""
    d = distance.sort().values
    quarter = len(d) // 4
    middle = d[quarter : len(d) - quarter]
    i = int((middle[1:] / middle[:-1]).argmax())
    eps = float((middle[i] * middle[i + 1]).sqrt())
    assert middle[i + 1] > 1.1 * eps and middle[i] < eps / 1.1
    return eps


@pytest.mark.parametrize("form", ["tensors", "torch dataset", "Dataset"])
def test_benchmark_on_your_own_images_matches_the_linear_closed_form(form: str) -> None:
    model, x, y, distance = linear_case(n=24, seed=3)
    eps = gap_eps(distance["Linf"])
    forms: dict[str, data.UserData] = {
        "tensors": (x, y),
        "torch dataset": TensorDataset(x, y),
        "Dataset": data.Dataset("mine", "test", x, y, "user:mine", 3),
    }
    given = forms[form]
    result = robustbench_bl.benchmark(model, None, eps=eps, n=len(x), data=given, options=OPTIONS)
    assert result.row["n"] == len(x) and result.row["clean_accuracy"] == 1.0
    assert result.robust_accuracy == pytest.approx((distance["Linf"] > eps).float().mean().item())
    assert 0 < result.robust_accuracy < 1  # the budget splits the examples: the test can fail both ways


def test_a_subset_of_your_images_is_class_balanced_and_seeded() -> None:
    _, x, y, _ = linear_case(n=40, seed=1)
    a, b = data.user_data((x, y)).at_most(10, seed=5), data.user_data((x, y)).at_most(10, seed=5)
    assert torch.equal(a.x, b.x) and abs(int(a.y.sum()) - 5) <= 1


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ([1, 2], TypeError, "data must be an (x, y) pair of tensors"),
        (
            (torch.rand(4, 3, 8, 8) * 2, torch.zeros(4, dtype=torch.long)),
            ValueError,
            "data's images must hold values in [0, 1]",
        ),
        ((torch.rand(4, 3, 8, 8), torch.zeros(3, dtype=torch.long)), ValueError, "data's labels must be a 1-D tensor"),
        ((torch.rand(4, 3, 8, 8), torch.zeros(4)), TypeError, "data's labels must hold integer labels"),
        ((torch.rand(4, 3, 8, 8), -torch.ones(4, dtype=torch.long)), ValueError, "data's labels must be >= 0"),
        ((torch.rand(0, 3, 8, 8), torch.zeros(0, dtype=torch.long)), ValueError, "data holds no examples"),
        (TensorDataset(torch.rand(0, 3, 8, 8), torch.zeros(0)), ValueError, "data holds no examples"),
        (TensorDataset(torch.rand(2, 3, 8, 8)), TypeError, "data[0] must be an (image tensor, label) pair"),
    ],
)
def test_bad_user_data_is_one_clear_error(given: object, error: type[Exception], message: str) -> None:
    with pytest.raises(
        error, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    ):
        data.user_data(given)


def test_the_result_file_holds_the_protocol_and_the_report_ranks_result_files(tmp_path: Path) -> None:
    model, x, y, distance = linear_case(n=24, seed=3)
    eps = gap_eps(distance["Linf"])
    counted = [0]
    model.register_forward_pre_hook(lambda _, args: counted.__setitem__(0, counted[0] + len(args[0])))
    strong = robustbench_bl.benchmark(model, None, eps=eps, n=24, data=(x, y), options=OPTIONS, name="linear")
    weak = robustbench_bl.benchmark(model, None, eps=eps / 4, n=24, data=(x, y), options=OPTIONS, name="linear/4")
    doc = json.loads(strong.save(tmp_path).read_text())
    assert (tmp_path / "linear.benchmark.json").is_file() and weak.save(tmp_path).name == "linear_4.benchmark.json"
    assert doc["model"] == "linear" and doc["threat_model"] == {"norm": "Linf", "eps": eps}
    assert doc["robust_accuracy"]["value"] == strong.robust_accuracy and len(doc["robust_accuracy"]["ci95"]) == 2
    assert set(doc["per_attack_robust_accuracy"]) == set(OPTIONS)
    assert min(doc["per_attack_robust_accuracy"].values()) >= doc["robust_accuracy"]["value"]
    assert doc["attacker"]["threat"] == "whitebox" and "deterministic" in doc["attacker"]["why"]
    assert doc["attacker"]["cascade"] is True and doc["check_images"] == 24
    assert doc["forward_passes"] + weak.row["forward_passes"] == counted[0] > 0  # every image the model saw
    assert doc["versions"]["torch"] == versions()["torch"] and doc["data"]["source"] == "user"
    board = leaderboard.result_board(report.result_files(tmp_path))
    assert list(board.model) == ["linear/4", "linear"] and list(board["rank"]) == [
        1,
        2,
    ]  # the smaller budget ranks first
    page = report.write(tmp_path).read_text()
    assert "benchmark results" in page and page.index("linear/4") < page.index(">linear<")


def test_a_damaged_result_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "x.benchmark.json").write_text('{"model": "m"}')
    with pytest.raises(ValueError, match=r"x\.benchmark\.json is not a benchmark result file"):
        report.write(tmp_path)


FACTORY = """
import torch
class Net(torch.nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, width, 3)
        self.head = torch.nn.Linear(width, 10)
    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))
def make_net():
    return Net()
def wide():
    return Net(8)
def not_a_module():
    return 3
"""


class Payload:
    """A pickle that would run code when loaded without weights_only."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran",))


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A user's folder holding netfactory.py, made the working directory and importable; its names."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "netfactory.py").write_text(FACTORY)
    scope: dict[str, Any] = {}
    exec(FACTORY, scope)
    return scope


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "nocolon"], "--model: must be a zoo model"),
        (["--model", "absent_package_xyz:make"], "cannot import 'absent_package_xyz'"),
        (["--model", "netfactory:missing"], "has no callable 'missing'"),
        (["--model", "netfactory:not_a_module"], "not_a_module() must return a torch nn.Module, got int"),
        (["--model", "netfactory:make_net", "--weights", "none.pt"], "--weights must be an existing file"),
        (["--model", "netfactory:make_net", "--weights", "payload.pt"], "holds objects other than tensors"),
        (["--model", "netfactory:make_net", "--weights", "wide.pt"], "does not fit the model: of another shape"),
        (["--model", "netfactory:make_net", "--weights", "junk.safetensors"], "is not a readable weights file"),
        (["--model", "fastnet-0", "--weights", "wide.pt"], "--weights is for a factory model"),
        (["--model", "fastnet-0", "--eps", "-1"], "--eps: must be > 0"),
        (["--model", "fastnet-0", "--eps", "8/0"], "--eps: must be a number such as 8/255"),
    ],
)
def test_bad_benchmark_command_lines_are_one_line(
    argv: list[str],
    message: str,
    factory: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.save(factory["wide"]().state_dict(), tmp_path / "wide.pt")
    torch.save({"weight": Payload()}, tmp_path / "payload.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    monkeypatch.setattr(robustbench_bl.evaluation.command, "benchmark", lambda *a, **k: pytest.fail("benchmark ran"))
    try:
        code = command_line(robustbench_bl.evaluation.command.main, argv)
    except SystemExit as exit_:  # argparse's own one-line errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert "code ran" not in out and "weights_only=False" not in err  # nothing unpickled ran; no unsafe advice


def test_a_factory_model_with_its_weights_is_benchmarked_from_the_command_line(
    factory: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = factory["make_net"]()
    save_file(net.state_dict(), str(tmp_path / "net.safetensors"))
    seen: dict[str, Any] = {}

    def fake(model: torch.nn.Module, *args: object, **kwargs: object) -> object:
        seen["state"], seen["name"] = model.state_dict(), kwargs["name"]
        raise ValueError("stop here")

    monkeypatch.setattr(robustbench_bl.evaluation.command, "benchmark", fake)
    argv = ["--model", "netfactory:make_net", "--weights", "net.safetensors", "--n", "5"]
    assert command_line(robustbench_bl.evaluation.command.main, argv) == 2
    assert seen["name"] == "netfactory:make_net"
    assert all(torch.equal(seen["state"][k], v) for k, v in net.state_dict().items())  # the weights, not a fresh init
