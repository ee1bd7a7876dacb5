"""Report pieces both loads use: table cells, CSV and interval charts.

Each load's own tables are in its package (``offline.report``,
``serve.report``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional


def fmt(v: Any, digits: int = 2) -> str:
    """A cell: ``-`` for None, yes/NO for booleans, floats with ``digits``
    decimals (a percentage with one decimal when ``digits`` < 0)."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v * 100:.1f}%" if digits < 0 else f"{v:.{digits}f}"
    return str(v)


def write_csv(rows: list[dict[str, Any]], path: Path, columns: Sequence[str]) -> None:
    """``rows`` as CSV, one column per name in ``columns`` (missing: empty)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in columns})


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend, or None when matplotlib
    is not installed (the charts are optional; the tables are not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


class Bar(NamedTuple):
    """One bar of ``write_interval_png``: its label, height and interval
    (``low``/``high`` None: no whisker)."""

    label: str
    value: Optional[float]
    low: Optional[float] = None
    high: Optional[float] = None


def write_interval_png(panels: Sequence[tuple[str, Sequence[Bar]]], path: Path, title: str,
                       ylabel: str = "") -> bool:
    """One panel per (panel title, bars): bars with interval whiskers, each
    panel on its own scale. False when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return False
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 0.8, 3.8), squeeze=False)
    colors = ("#8c8c8c", "#1f77b4", "#2ca02c", "#d62728")
    for ax, (name, bars) in zip(axes[0], panels):
        xs = list(range(len(bars)))
        heights = [b.value or 0.0 for b in bars]
        errs = [[max(b.value - b.low, 0.0) if b.value is not None and b.low is not None else 0.0
                 for b in bars],
                [max(b.high - b.value, 0.0) if b.value is not None and b.high is not None else 0.0
                 for b in bars]]
        ax.bar(xs, heights, 0.6, yerr=errs, capsize=6,
               color=[colors[i % len(colors)] for i in xs])
        ax.set_xticks(xs)
        ax.set_xticklabels([b.label for b in bars], fontsize=8)
        ax.set_title(name, fontsize=9)
        if ylabel:
            ax.set_ylabel(ylabel, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
