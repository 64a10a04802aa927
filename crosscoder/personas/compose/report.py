"""A self-contained HTML report for the composition tools: tables, and heatmaps drawn by the project's chart stack
(`crosscoder.charts`, inline SVG with a hover text on every cell).

No script, stylesheet or image is fetched from anywhere: the file opens offline and can be mailed as it is.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from crosscoder import charts
from crosscoder.io import atomic_write_text
from crosscoder.personas.compose.leakage import LeakageColumn

Cell = str | float | int | None


@dataclass
class Table:
    """One table of the report."""

    title: str
    headers: list[str]
    rows: list[list[Cell]]
    note: str = ""
    signed: bool = True
    """Numbers are changes (shown with a sign); False for absolute values."""


@dataclass
class Heatmap:
    """One heatmap: rows x columns of numbers (NaN shows blank)."""

    title: str
    rows: list[str]
    columns: list[str]
    values: list[list[float]]
    note: str = ""
    cmap: str = "RdBu_r"
    limit: float | None = None
    """Symmetric colour limit; None = the largest absolute value."""


@dataclass
class Report:
    title: str
    intro: str = ""
    heatmaps: list[Heatmap] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def _fmt(x: Cell, signed: bool = True) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return "–"
        if abs(x) >= 100:
            return f"{x:.0f}"
        if x != 0 and abs(x) < 0.01:
            return f"{x:+.1e}" if signed else f"{x:.1e}"
        return f"{x:+.2f}" if signed else f"{x:.3g}"
    return html.escape(str(x))


def heatmap_svg(h: Heatmap) -> str:
    """The heatmap as an inline SVG (`crosscoder.charts.heatmap`)."""
    return charts.inline(charts.heatmap(h.values, h.rows, h.columns, h.title, limit=h.limit, cmap=h.cmap), h.title)


def leakage_heatmap(columns: list[LeakageColumn], traits: list[str]) -> Heatmap:
    """Trait x edit matrix of expression changes, with the capability change as the last row."""
    vals = [[c.delta.get(t, float("nan")) for c in columns] for t in traits]
    vals.append([c.capability_change for c in columns])
    return Heatmap(
        "Leakage: change in each trait's expression (keyword rate) per edit; last row: capability change",
        [*traits, "capability change"],
        [c.edit for c in columns],
        vals,
        note="Each column is an edit against the model it edits (its reference). Capability change = the larger of "
        "the relative perplexity change on held-out base answers and the absolute change in factual accuracy.",
        limit=1.0,
    )


def leakage_table(columns: list[LeakageColumn], traits: list[str]) -> Table:
    """Trait x edit table of keyword-rate changes, then the capability changes."""
    rows: list[list[Cell]] = [[t, *[c.delta.get(t) for c in columns]] for t in traits]
    rows.append(["perplexity change (relative)", *[c.perplexity_change for c in columns]])
    rows.append(["accuracy change", *[c.accuracy_change for c in columns]])
    return Table(
        "Leakage matrix (change in keyword rate)",
        ["trait", *[f"{c.edit} (vs {c.reference})" for c in columns]],
        rows,
    )


_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th{background:#f3f3f3}"
    "td:first-child,th:first-child{text-align:left}.note,.muted{color:#555;font-size:13px}"
)


def render(report: Report) -> str:
    """The report as one HTML string."""
    parts = [f"<h1>{html.escape(report.title)}</h1>", f"<p>{html.escape(report.intro)}</p>" if report.intro else ""]
    for h in report.heatmaps:
        parts.append(f"<h2>{html.escape(h.title)}</h2>{heatmap_svg(h)}")
        if h.note:
            parts.append(f"<p class='note'>{html.escape(h.note)}</p>")
    for t in report.tables:
        parts.append(f"<h2>{html.escape(t.title)}</h2><table><tr>")
        parts.extend(f"<th>{html.escape(x)}</th>" for x in t.headers)
        parts.append("</tr>")
        for row in t.rows:
            parts.append("<tr>" + "".join(f"<td>{_fmt(x, t.signed)}</td>" for x in row) + "</tr>")
        parts.append("</table>")
        if t.note:
            parts.append(f"<p class='note'>{html.escape(t.note)}</p>")
    return charts.html_page(report.title, "\n".join(p for p in parts if p), _CSS)


def write_report(path: str | Path, report: Report) -> Path:
    """Write the report atomically; returns its path."""
    atomic_write_text(path, render(report))
    return Path(path)
