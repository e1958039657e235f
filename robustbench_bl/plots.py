"""Seaborn figures from result tables, saved as PNG and PDF side by side."""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

if TYPE_CHECKING:
    from robustbench_bl.evaluation.stats import Finding


def save(fig: plt.Figure, stem: str | os.PathLike[str]) -> list[Path]:
    """Save `fig` as stem.png and stem.pdf; return both paths and close the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    plt.close(fig)
    return paths


def lines(
    table: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str | None = None,
    col: str | None = None,
    style: str | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    col_wrap: int | None = None,
    sharex: bool = True,
    stem: str | os.PathLike[str],
) -> list[Path]:
    """A line plot of y against x (one panel per `col` value, `col_wrap` per row), with markers; saved as PNG and PDF.

    `sharex=False` gives each panel its own x range (e.g. noise levels on different scales).
    """
    if table.empty:
        raise ValueError("table is empty: nothing to plot")
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(
        data=table,
        x=x,
        y=y,
        hue=hue,
        col=col,
        style=style,
        kind="line",
        marker="o",
        height=3.2,
        aspect=1.2,
        col_wrap=col_wrap,
        facet_kws={"sharex": sharex},
    )
    grid.set_axis_labels(xlabel or x, ylabel or y)
    title_lines = 1
    for ax in grid.axes.flat:  # long panel names wrap instead of running into the next panel's
        ax.set_title(textwrap.fill(ax.get_title(), 48))
        title_lines = max(title_lines, ax.get_title().count("\n") + 1)
    if title:
        grid.figure.suptitle(title, y=1.03 + 0.06 * (title_lines - 1))
    return save(grid.figure, stem)


def heatmap(
    table: pd.DataFrame,
    *,
    index: str,
    columns: str,
    values: str,
    title: str | None = None,
    stem: str | os.PathLike[str],
) -> list[Path]:
    """A annotated heatmap of `values` pivoted by index x columns (mean over duplicates)."""
    if table.empty:
        raise ValueError("table is empty: nothing to plot")
    sns.set_theme(style="white", context="paper")
    pivot = table.pivot_table(index=index, columns=columns, values=values, aggfunc="mean")
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * pivot.shape[1], 0.8 + 0.6 * pivot.shape[0]))
    sns.heatmap(pivot, annot=True, fmt=".2f", cmap="viridis", ax=ax)
    if title:
        ax.set_title(title)
    return save(fig, stem)


def intervals(
    table: pd.DataFrame,
    *,
    x: str,
    y: str,
    low: str,
    high: str,
    hue: str | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    stem: str | os.PathLike[str],
) -> list[Path]:
    """Points with given interval bars (e.g. accuracies with confidence intervals), one line per `y`
    value in table order, `hue` groups side by side; saved as PNG and PDF."""
    if table.empty:
        raise ValueError("table is empty: nothing to plot")
    sns.set_theme(style="whitegrid", context="paper")
    labels = list(dict.fromkeys(table[y]))
    groups = list(dict.fromkeys(table[hue])) if hue else [None]
    fig, ax = plt.subplots(figsize=(6.4, 1.0 + 0.35 * len(labels)))
    for i, (group, color) in enumerate(zip(groups, sns.color_palette(n_colors=len(groups)))):
        part = table if group is None else table[table[hue] == group]
        offset = (i - (len(groups) - 1) / 2) * 0.25
        where = [labels.index(v) + offset for v in part[y]]
        bars = [part[x] - part[low], part[high] - part[x]]
        ax.errorbar(part[x], where, xerr=bars, fmt="o", color=color, capsize=3, label=group)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel or x)
    if hue:
        ax.legend(title=hue, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes, never over a bar
    if title:
        ax.set_title(title)
    return save(fig, stem)


def rank_intervals(
    ranks: pd.Series, cd: float, *, title: str | None = None, stem: str | os.PathLike[str]
) -> list[Path]:
    """Critical-difference plot: average rank per treatment with a bar of +-cd/2 (lower is better).

    Two treatments differ significantly exactly when their bars do not overlap (|r_i - r_j| > cd).
    """
    if ranks.empty:
        raise ValueError("ranks is empty: nothing to plot")
    sns.set_theme(style="whitegrid", context="paper")
    ordered = ranks.sort_values()
    labels = [str(t) for t in ordered.index]
    fig, ax = plt.subplots(figsize=(5.0, 0.9 + 0.4 * len(ordered)))
    ax.errorbar(ordered.to_numpy(), labels, xerr=cd / 2, fmt="o", capsize=4, color=sns.color_palette()[0])
    ax.invert_yaxis()
    ax.set_xlabel(f"average rank (1 = best); bars +-CD/2, CD = {cd:.2f}")
    if title:
        ax.set_title(title)
    return save(fig, stem)


def distributions(
    table: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str | None = None,
    col: str | None = None,
    log: bool = False,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    stem: str | os.PathLike[str],
) -> list[Path]:
    """Box plots of the distribution of y per x value (one panel per `col` value, each with its own
    y axis, log-scaled on request for values spanning decades); saved as PNG and PDF."""
    if table.empty:
        raise ValueError("table is empty: nothing to plot")
    sns.set_theme(style="whitegrid", context="paper")
    boxes = table[x].nunique() * (table[hue].nunique() if hue else 1)
    grid = sns.catplot(
        data=table,
        x=x,
        y=y,
        hue=hue,
        col=col,
        kind="box",
        sharey=False,
        log_scale=log or None,
        fliersize=1.5,
        height=3.2,
        aspect=max(1.2, 0.12 * boxes),
    )
    grid.set_axis_labels(xlabel or x, ylabel or y)
    grid.set_titles("{col_name}")
    grid.tick_params(axis="x", labelrotation=20)
    if title:
        grid.figure.suptitle(title, y=1.03)
    return save(grid.figure, stem)


#: Verdict colours shared by the forest plot and the report's badges.
VERDICT_COLOURS = {"HOLDS": "#2a7d2a", "DOES NOT HOLD": "#b22222", "INCONCLUSIVE": "#cc8800"}


def forest(finding: Finding) -> bytes:
    """A forest plot of a finding's claims as PNG bytes: each claim's estimate and 95% interval,
    coloured by its verdict, against its own threshold (the black tick; the paper predicts the effect
    on the side the arrow points to)."""
    claims = finding.claims
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(claims) + 1.0))
    for row, claim in enumerate(claims):
        colour = VERDICT_COLOURS[claim.verdict.value]
        ax.plot([claim.low, claim.high], [row, row], color=colour, linewidth=2.5)
        ax.plot([claim.estimate], [row], "o", color=colour, markersize=6)
        ax.plot([claim.threshold], [row], "|", color="black", markersize=16, markeredgewidth=2)
        arrow = ">" if claim.direction == "above" else "<"
        ax.plot([claim.threshold], [row + 0.28], arrow, color="black", markersize=5)
    ax.set_yticks(range(len(claims)), [_short(c.label) for c in claims], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("effect (estimate and 95% interval); tick: the claim's threshold", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _short(label: str, width: int = 60) -> str:
    """A claim label cut to `width` characters for an axis."""
    return label if len(label) <= width else label[: width - 1] + "…"
