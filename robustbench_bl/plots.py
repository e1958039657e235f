"""Seaborn figures from result tables, saved as PNG and PDF side by side."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402


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
    stem: str | os.PathLike[str],
) -> list[Path]:
    """A line plot of y against x (one panel per `col` value), with markers; saved as PNG and PDF."""
    if table.empty:
        raise ValueError("table is empty: nothing to plot")
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(data=table, x=x, y=y, hue=hue, col=col, style=style, kind="line", marker="o", height=3.2, aspect=1.2)
    grid.set_axis_labels(xlabel or x, ylabel or y)
    if title:
        grid.figure.suptitle(title, y=1.03)
    return save(grid.figure, stem)


def heatmap(
    table: pd.DataFrame, *, index: str, columns: str, values: str, title: str | None = None, stem: str | os.PathLike[str]
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
