"""One self-contained HTML page for a results folder: each study's verdict and finding (read from
`finding.json`: a table of its claims and a forest plot of their intervals), its figures, a sortable table of its rows, the settings and versions that produced them, and a
ranked board for leaderboard results, and one board of every benchmark result file
(`*.benchmark.json`) found (`rbl report DIR`).

A study folder is any folder holding `results.csv` (what every study's --out gets) or, where it is
large, `results.csv.gz` (how the reference runs ship it); a folder of study folders (`results/`)
gives one page for all of them. Figures are embedded as data URIs and
the sorting script is inline, so the page needs no server, no network and no other file.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from robustbench_bl import plots
from robustbench_bl.evaluation import leaderboard
from robustbench_bl.evaluation.benchmark import RESULT_SUFFIX
from robustbench_bl.evaluation.stats import Claim, Finding, Verdict
from robustbench_bl.versions import versions

#: Cells longer than this (packed per-image outcomes, JSON blobs) are left out of the row tables.
LONG_CELL = 120
#: At most this many rows per table on the page; all of them stay in results.csv.
MAX_ROWS = 1000
#: A study folder's rows: the CSV every study writes, or the same gzipped (pandas reads both).
RESULT_TABLES = ("results.csv", "results.csv.gz")


@dataclass(frozen=True)
class StudyResults:
    """What the report shows of one study folder."""

    name: str
    folder: Path
    rows: pd.DataFrame
    finding: Finding | None
    figures: tuple[Path, ...]
    board: pd.DataFrame | None

    @property
    def verdict(self) -> str:
        """The finding's verdict ('no finding' when the study wrote none)."""
        return "no finding" if self.finding is None else self.finding.verdict.value


def results_table(folder: Path) -> Path | None:
    """The study folder's rows file (one of RESULT_TABLES), None when `folder` is not a study folder."""
    return next((folder / name for name in RESULT_TABLES if (folder / name).is_file()), None)


def study_folders(root: str | Path) -> list[Path]:
    """`root` itself when it holds a study's rows (RESULT_TABLES), else every folder below it that does (sorted)."""
    root = _folder(root)
    if results_table(root) is not None:
        return [root]
    return sorted({p.parent for name in RESULT_TABLES for p in root.rglob(name)})


def result_files(root: str | Path) -> list[Path]:
    """Every benchmark result file (`*.benchmark.json`, `rbl benchmark`'s) at or below `root` (sorted)."""
    return sorted(_folder(root).rglob(f"*{RESULT_SUFFIX}"))


def _folder(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"DIR must be a results folder, got {str(root)!r} (not a folder)")
    return root


def load(folder: Path) -> StudyResults:
    """Read one study folder: rows, finding.txt, PNG figures and leaderboard.csv when present."""
    table = results_table(folder)
    if table is None:
        raise ValueError(f"{folder} holds neither of {', '.join(RESULT_TABLES)}: give a study's --out folder")
    try:
        rows = pd.read_csv(table)
        board = pd.read_csv(folder / "leaderboard.csv") if (folder / "leaderboard.csv").is_file() else None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{folder} holds a damaged CSV file ({err}); rerun the study to rewrite it") from None
    name = str(rows["study"].iloc[0]) if "study" in rows.columns and len(rows) else folder.name
    return StudyResults(name, folder, rows, read_finding(folder), tuple(sorted(folder.glob("*.png"))), board)


def read_finding(folder: Path) -> Finding | None:
    """The Finding in folder/finding.json, None when there is none; a damaged file is a ValueError naming it."""
    path = folder / "finding.json"
    if not path.is_file():
        return None
    try:
        return Finding.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{path} is damaged ({type(err).__name__}: {err}); rerun the study to rewrite it") from None


def _cell(value: object) -> tuple[str, str]:
    """(sort key, shown text) of one table cell: numbers sort as numbers, shown to 4 significant digits."""
    if isinstance(value, float) and math.isnan(value):
        return "", ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value)), f"{value:.4g}" if isinstance(value, float) else str(value)
    text = html.escape(str(value))  # quotes escaped too: the same text serves as the attribute
    return text, text


def table(frame: pd.DataFrame, caption: str = "") -> str:
    """A sortable HTML table (click a header; again to reverse) of at most MAX_ROWS rows."""
    shown = frame.head(MAX_ROWS)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for record in shown.itertuples(index=False):
        cells = (_cell(v) for v in record)
        body.append("<tr>" + "".join(f'<td data-sort="{key}">{text}</td>' for key, text in cells) + "</tr>")
    note = f" (first {MAX_ROWS} of {len(frame)} rows)" if len(frame) > MAX_ROWS else ""
    caption_html = f'<p class="caption">{html.escape(caption)}{note}</p>' if caption or note else ""
    return f'{caption_html}<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def split_columns(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, object], list[str]]:
    """(rows with the columns that vary and stay short, the constant columns' values, the long columns left out)."""
    long = [c for c in rows.columns if rows[c].astype(str).str.len().max() > LONG_CELL] if len(rows) else []
    constant = {
        c: rows[c].iloc[0]
        for c in rows.columns
        if c not in long and len(rows) > 1 and rows[c].nunique(dropna=False) == 1
    }
    varying = [c for c in rows.columns if c not in long and c not in constant]
    return rows[varying], constant, long


def board_table(board: pd.DataFrame) -> str:
    """A leaderboard ranked by robust accuracy: rank, the defense's keys, accuracies in percent with 95% intervals."""
    return table(leaderboard.percent_intervals(board), "leaderboard: ranked by robust accuracy, then clean accuracy")


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(path.name)}</figcaption></figure>'


def finding_html(finding: Finding) -> str:
    """A finding as the claim, a table of its claims (estimate, interval, threshold, the paper's
    number, a coloured verdict), a forest plot of the intervals, and its notes."""
    rows = []
    for c in finding.claims:
        side = ">" if c.direction == "above" else "<"
        rows.append(
            f"<tr><td class='label'>{html.escape(c.label)}</td><td>{c.estimate:+.3f}</td>"
            f"<td>[{c.low:+.3f}, {c.high:+.3f}]</td><td>{html.escape(side)} {c.threshold:+.3f}</td>"
            f"<td class='label'>{html.escape(c.paper)}</td>"
            f'<td><span class="verdict {_verdict_class(c.verdict.value)}">{c.verdict.value}</span></td>'
            f"<td>{_family(c)}</td></tr>"
        )
    plot = base64.b64encode(plots.forest(finding)).decode("ascii")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in finding.notes)
    return (
        f'<p class="claim">Claim: {html.escape(finding.claim)} <span class="context">({html.escape(finding.context)})</span></p>'
        '<div class="scroll"><table class="claims"><thead><tr><th>claim</th><th>estimate</th><th>95% interval</th>'
        f"<th>needs</th><th>paper</th><th>verdict</th><th>family-wise</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f'<figure><img alt="forest plot of the claims" src="data:image/png;base64,{plot}">'
        "<figcaption>each claim's estimate and 95% interval against its threshold (tick)</figcaption></figure>"
        + f"<p class='rule'>Overall: {html.escape(finding.rule)}</p>"
        + (f"<ul class='notes'>{notes}</ul>" if notes else "")
    )


def _family(claim: Claim) -> str:
    """A claim's family-wise interval and verdict where it decides: for a claim contradicted at 95%."""
    if claim.family_low is None or claim.family_high is None or claim.verdict != Verdict.DOES_NOT_HOLD:
        return ""
    word = claim.family_verdict.value
    return f'[{claim.family_low:+.3f}, {claim.family_high:+.3f}] <span class="verdict {_verdict_class(word)}">{word}</span>'


def _verdict_class(verdict: str) -> str:
    return {"HOLDS": "holds", "DOES NOT HOLD": "fails", "INCONCLUSIVE": "open"}.get(verdict, "partial")


def section(study: StudyResults) -> str:
    """One study's part of the page."""
    rows, constant, long = split_columns(study.rows)
    versions_ = {k: v for k, v in constant.items() if k.startswith("version_")}
    settings = {k: v for k, v in constant.items() if not k.startswith("version_")}
    settings_frame = pd.DataFrame({"setting": list(settings), "value": [str(v) for v in settings.values()]})
    versions_frame = pd.DataFrame(
        {"package": [k.removeprefix("version_") for k in versions_], "version": [str(v) for v in versions_.values()]}
    )
    parts = [
        f'<section id="{html.escape(study.name)}"><h2>{html.escape(study.name)} '
        f'<span class="verdict {_verdict_class(study.verdict)}">{html.escape(study.verdict)}</span></h2>',
        f'<p class="folder">{html.escape(str(study.folder))}: {len(study.rows)} rows</p>',
        finding_html(study.finding)
        if study.finding is not None
        else "<p>No finding.json: the study did not finish, or predates it.</p>",
        *(_figure(p) for p in study.figures),
        board_table(study.board) if study.board is not None else "",
        f"<details><summary>settings shared by every row ({len(settings)})</summary>{table(settings_frame)}</details>",
        f"<details><summary>versions ({len(versions_)})</summary>{table(versions_frame)}</details>",
        table(
            rows, "rows (click a header to sort)" + (f"; left out, too long to show: {', '.join(long)}" if long else "")
        ),
        "</section>",
    ]
    return "\n".join(parts)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
nav ul{columns:2;list-style:none;padding:0} section{border-top:1px solid #ccc;margin-top:2em}
.verdict{font-size:.7em;padding:.15em .5em;border-radius:.3em;color:#fff;background:#777;vertical-align:middle}
.verdict.holds{background:#2a7d2a}.verdict.fails{background:#b22}.verdict.open{background:#c80}.verdict.partial{background:#36a}
p.claim{font-weight:bold} p.claim .context{font-weight:normal;color:#555}
table.claims td.label{text-align:left;white-space:normal;max-width:32em} ul.notes{font-size:.85em;color:#444}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #ddd}
.scroll{overflow:auto;max-height:40em;margin:.3em 0 1em} table{border-collapse:collapse;font-size:.8em}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right;white-space:nowrap}
th{background:#eee;cursor:pointer;position:sticky;top:0} th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"} p.caption{font-weight:bold;margin:.8em 0 .2em}
"""

_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.sort, y = b.cells[column].dataset.sort;
        var nx = parseFloat(x), ny = parseFloat(y), order;
        if (x === "" || y === "") order = (x === "") - (y === "");
        else if (!isNaN(nx) && !isNaN(ny) && String(nx) !== "NaN") order = nx - ny;
        else order = x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def results_section(board: pd.DataFrame) -> str:
    """The benchmark result files as one board ranked by robust accuracy."""
    return (
        '<section id="benchmark-results"><h2>benchmark results</h2>'
        f'<p class="folder">{len(board)} result file(s) of rbl benchmark / BenchmarkResult.save</p>'
        + table(leaderboard.percent_intervals(board), "ranked by robust accuracy, then clean accuracy")
        + "</section>"
    )


def render(studies: Sequence[StudyResults], source: Path, board: pd.DataFrame | None = None) -> str:
    """The whole page: the benchmark results' board (when there are result files), then each study."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    made_by = ", ".join(f"{k} {v}" for k, v in versions().items())
    index = "".join(
        f'<li><a href="#{html.escape(s.name)}">{html.escape(s.name)}</a> <span class="verdict {_verdict_class(s.verdict)}">{html.escape(s.verdict)}</span></li>'
        for s in studies
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>robustbench_bl report</title>'
        '<link rel="icon" href="data:,">'
        f"<style>{_STYLE}</style></head><body><h1>robustbench_bl report</h1>"
        f"<p>{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}"
        f"{'' if board is None else f' and {len(board)} benchmark result(s)'} from {html.escape(str(source))}, "
        f"written {stamp} by {html.escape(made_by)}.</p>"
        f"<nav><ul>{index}</ul></nav>"
        + ("" if board is None else results_section(board))
        + "\n".join(section(s) for s in studies)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write(root: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of every study folder and benchmark result file under `root` to `out`
    (default root/report.html)."""
    folders, results = study_folders(root), result_files(root)
    if not folders and not results:
        raise ValueError(
            f"DIR {str(root)!r} holds no {' or '.join(RESULT_TABLES)} and no *{RESULT_SUFFIX}: give a study's --out folder, "
            "rbl benchmark's, or a folder of them (e.g. results/)"
        )
    board = leaderboard.result_board(results) if results else None
    target = Path(out).expanduser() if out is not None else Path(root).expanduser() / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render([load(f) for f in folders], Path(root), board), encoding="utf-8")
    return target
