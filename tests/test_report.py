"""`rbl report DIR`: which folders it reads, what each part of the page says, and the page itself
in a real headless browser (system Chromium driven by Playwright): it loads with no console
errors, every figure decodes, sorting orders numbers as numbers and reverses on a second click."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from robustbench_bl import plots, report, studies
from robustbench_bl.__main__ import main as rbl
from robustbench_bl.cli import command_line
from robustbench_bl.evaluation import stats

CHROMIUM = next(
    (
        p
        for p in (os.environ.get("RBL_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser")
        if p and Path(p).is_file()
    ),
    None,
)
#: CI sets RBL_REQUIRE_BROWSER=1, so a missing browser fails there instead of skipping.
REQUIRE_BROWSER = os.environ.get("RBL_REQUIRE_BROWSER") == "1"


def fake_study(folder: Path, name: str, values: list[float], finding: stats.Finding | None) -> Path:
    """A study folder as the studies write it: results.csv, a figure, finding.json."""
    folder.mkdir(parents=True)
    rows = pd.DataFrame(
        {
            "study": name,
            "metric": "accuracy",
            "level": range(len(values)),
            "value": values,
            "seed": 0,
            "correct": "x" * 500,
            "version_torch": "2.x",
        }
    )
    rows.to_csv(folder / "results.csv", index=False)
    plots.lines(rows, x="level", y="value", xlabel="level", ylabel="accuracy", title=name, stem=folder / name)
    if finding is not None:
        (folder / "finding.json").write_text(json.dumps(finding.to_json()))
    return folder


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    fails = stats.Claim("x <bigger>", -0.1, -0.2, -0.05, paper="paper: 5%")
    fake_study(root / "a", "alpha", [10.0, 9.0, 100.0, 0.5], stats.finding("x", [fails], "on 4 images", ["more"]))
    open_ = stats.Claim.measured("a", lambda level: (0.1, -0.1, 0.2))
    holds = stats.Claim.measured("b", lambda level: (-0.3, -0.4, -0.2), threshold=-0.1, direction="below")
    fake_study(root / "b", "beta", [0.3, 0.2], stats.finding("y", [open_, holds], "on 2 images"))
    fake_study(root / "nested" / "c", "gamma", [0.1, 0.2], None)
    board = pd.DataFrame(
        {
            "rank": [1, 2],
            "channel": ["jpeg", "identity"],
            "clean": [0.8, 0.9],
            "clean_ci_low": [0.7, 0.85],
            "clean_ci_high": [0.9, 0.95],
            "robust": [0.31, 0.18],
            "robust_ci_low": [0.22, 0.11],
            "robust_ci_high": [0.41, 0.27],
            "threat": ["bpda", "whitebox"],
        }
    )
    board.to_csv(root / "b" / "leaderboard.csv", index=False)
    return root


def test_folders_are_the_root_or_every_study_below_it(results: Path, tmp_path: Path) -> None:
    assert report.study_folders(results) == [results / "a", results / "b", results / "nested" / "c"]
    assert report.study_folders(results / "a") == [results / "a"]
    (tmp_path / "empty").mkdir()
    assert report.study_folders(tmp_path / "empty") == [] and report.result_files(tmp_path / "empty") == []
    with pytest.raises(ValueError, match=r"holds no results\.csv or results\.csv\.gz and no \*\.benchmark\.json"):
        report.write(tmp_path / "empty")
    with pytest.raises(ValueError, match="not a folder"):
        report.study_folders(tmp_path / "missing")


def test_a_gzipped_results_table_is_a_study_folder_read_like_the_csv(results: Path) -> None:
    """The reference runs ship a large results.csv gzipped: the folder is found and its rows read the same."""
    plain = report.load(results / "a").rows
    csv = results / "a" / "results.csv"
    (results / "a" / "results.csv.gz").write_bytes(gzip.compress(csv.read_bytes()))
    csv.unlink()
    assert report.study_folders(results) == [results / "a", results / "b", results / "nested" / "c"]
    assert report.study_folders(results / "a") == [results / "a"]
    pd.testing.assert_frame_equal(report.load(results / "a").rows, plain)
    assert "alpha" in report.write(results).read_text()


def test_verdicts_come_from_the_finding_json(results: Path) -> None:
    loaded = {f.name: report.load(f) for f in report.study_folders(results)}
    assert loaded["a"].verdict == "DOES NOT HOLD"
    assert loaded["b"].verdict == "INCONCLUSIVE"  # the finding's verdict, not a claim's
    finding = loaded["b"].finding
    assert finding is not None and [c.verdict for c in finding.claims] == ["INCONCLUSIVE", "HOLDS"]
    assert loaded["c"].verdict == "no finding"
    assert loaded["a"].name == "alpha" and len(loaded["a"].figures) == 1 and loaded["b"].board is not None


def test_constant_and_long_columns_leave_the_row_table(results: Path) -> None:
    rows, constant, long = report.split_columns(report.load(results / "a").rows)
    assert list(rows.columns) == ["level", "value"]
    assert constant == {"study": "alpha", "metric": "accuracy", "seed": 0, "version_torch": "2.x"}
    assert long == ["correct"]


def test_board_shows_percent_with_intervals(results: Path) -> None:
    page = report.board_table(report.load(results / "b").board)
    assert "31.0 [22.0, 41.0]" in page and "90.0 [85.0, 95.0]" in page and "clean_ci_low" not in page


def test_a_finding_shows_as_a_table_of_claims_with_a_forest_plot(results: Path) -> None:
    page = report.section(report.load(results / "a"))
    assert "<td class='label'>x &lt;bigger&gt;</td><td>-0.100</td><td>[-0.200, -0.050]</td><td>&gt; +0.000</td>" in page
    assert '<span class="verdict fails">DOES NOT HOLD</span>' in page and "paper: 5%" in page
    assert page.count("data:image/png;base64,") == 2  # the study's figure and the forest plot
    assert "<li>more</li>" in page


@pytest.mark.parametrize(
    "content", [b"", b"\xff\xfe binary", b'{"claim": "x"}', b'{"claim": "x", "context": "", "claims": []}']
)
def test_damaged_finding_json_is_a_clear_error_naming_the_file(results: Path, content: bytes) -> None:
    (results / "a" / "finding.json").write_bytes(content)
    with pytest.raises(ValueError, match=r"finding\.json is damaged"):
        report.load(results / "a")


def test_damaged_csv_is_a_clear_error(results: Path) -> None:
    (results / "a" / "results.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="damaged CSV"):
        report.load(results / "a")


def test_command_writes_the_page_and_refuses_a_bad_folder(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command_line(rbl, ["report", str(results), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").read_text().count("<section") == 3
    assert command_line(rbl, ["report", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err


def browser_page(path: Path):
    """(playwright, browser, page) on `path` in headless system Chromium, or skip / fail when absent."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRE_BROWSER:
            raise
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if CHROMIUM is None:
        if REQUIRE_BROWSER:
            pytest.fail("no Chromium at /usr/bin/chromium (apt-get install chromium) and RBL_REQUIRE_BROWSER=1")
        pytest.skip("no system Chromium (apt-get install chromium)")
    manager = sync_playwright().start()
    browser = manager.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    return manager, browser, browser.new_page()


@pytest.mark.xdist_group("browser")
def test_page_in_a_real_browser(results: Path, tmp_path: Path) -> None:
    # One real study's output beside the fixtures: the smoke conv_error study (seconds, no training).
    studies.module("conv_error").main(["--preset", "smoke", "--out", str(results / "conv_error"), "--quiet"])
    page_path = report.write(results)
    manager, browser, page = browser_page(page_path)
    try:
        errors: list[str] = []
        page.on(
            "console", lambda message: errors.append(message.text) if message.type in ("error", "warning") else None
        )
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(page_path.as_uri())
        page.wait_for_load_state("load")
        assert errors == []
        sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        # a figure per study and a forest plot per finding (alpha, beta, conv_error; gamma has none)
        assert len(sizes) == 7 and all(done and w > 100 and h > 50 for done, w, h in sizes)
        assert page.locator("section").count() == 4
        assert page.locator("#conv_error h2 .verdict").inner_text() in ("HOLDS", "DOES NOT HOLD")
        claims = page.locator("#beta table.claims tbody tr")
        assert claims.count() == 2 and claims.nth(1).locator(".verdict").inner_text() == "HOLDS"
        assert page.locator("#beta table.claims .verdict.holds").count() == 1  # coloured by verdict

        table = page.locator("#alpha table.sortable").last
        column = table.locator("th", has_text="value")
        shown = lambda: [float(v) for v in table.locator("tbody tr td:nth-child(2)").all_inner_texts()]
        assert shown() == [10.0, 9.0, 100.0, 0.5]
        column.click()
        assert shown() == [0.5, 9.0, 10.0, 100.0]  # numbers, not text: "100" < "9" as text
        column.click()
        assert shown() == [100.0, 10.0, 9.0, 0.5]
        assert column.get_attribute("aria-sort") == "descending"
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
        assert (tmp_path / "report.png").stat().st_size > 10_000
        if os.environ.get("RBL_SCREENSHOT"):  # how docs/figures/report.png is made
            shutil.copy(tmp_path / "report.png", os.environ["RBL_SCREENSHOT"])
    finally:
        browser.close()
        manager.stop()
