"""The project's one chart stack (matplotlib): inline SVG for HTML pages (report.html, plots/*.html, the layer scan),
PNG files for plots/ and W&B, from the same figure.

A chart function returns a `Chart` (or None when there is nothing to draw). `Chart.svg()` is the inline SVG the
report embeds (text kept as text, the bulk of a large scatter rasterised so the page stays light), with a hover
tooltip (`<title>`) on every bar and highlighted point and `class="chart"` on the root; `Chart.png()` writes the
same figure as a PNG file.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crosscoder.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

_DPI = 100
_STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: lighter, selectable, styled by the page
    "svg.hashsalt": "crosscoder",  # the same figure gives the same SVG ids
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.grid": True,
    "grid.color": "#e9ecef",
    "axes.edgecolor": "#495057",
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
HIGHLIGHT = "#d9480f"
MUTED = "#adb5bd"


@dataclass
class Chart:
    """A drawn figure with the hover text of its marked parts (matplotlib gids)."""

    fig: Figure
    title: str
    tips: dict[str, str] = field(default_factory=dict)
    """gid -> hover text."""
    classes: dict[str, str] = field(default_factory=dict)
    """gid -> CSS class of that part."""

    def svg(self) -> str:
        """The figure as an inline `<svg class="chart">` element (no XML prologue), hover titles added."""
        import matplotlib.pyplot as plt

        buf = io.StringIO()
        with plt.rc_context(_STYLE):  # svg.fonttype is read while saving
            self.fig.savefig(buf, format="svg", dpi=_DPI, metadata=_NO_METADATA)
        text = buf.getvalue()
        text = re.sub(r"\s*\n\s*", " ", text[text.index("<svg") :]).replace("> <", "><")
        text = text.replace("<svg ", f'<svg class="chart" role="img" aria-label="{escape(self.title)}" ', 1)
        text = re.sub(r'\s(width|height)="[0-9.]+pt"', "", text, count=2)  # scale with the panel (viewBox kept)

        def annotate(m: re.Match[str]) -> str:
            gid = m.group(1)
            cls = f' class="{self.classes[gid]}"' if gid in self.classes else ""
            tip = f"<title>{escape(self.tips[gid])}</title>" if gid in self.tips else ""
            return f'<g id="{gid}"{cls}>{tip}'

        return re.sub(r'<g id="([^"]+)">', lambda m: annotate(m) if m.group(1) in self.tips else m.group(0), text)

    def png(self, path: Path) -> Path:
        """Write the figure as a PNG file (atomically)."""
        with atomic_path(path) as tmp:
            self.fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")
        return path

    def png_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
        return buf.getvalue()

    def close(self) -> None:
        import matplotlib.pyplot as plt

        plt.close(self.fig)


def _axes(width: float, height: float) -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    ax.set_axisbelow(True)
    return fig, ax


def _finish(fig: Figure, ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    import matplotlib.pyplot as plt

    with plt.rc_context(_STYLE):
        ax.set_title(title, loc="left", fontsize=10.5, fontweight="bold")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        fig.tight_layout()


def stacked_histogram(
    groups: dict[str, np.ndarray], colors: dict[str, str], bins: int, value_range: tuple[float, float], title: str,
    xlabel: str, vlines: Sequence[tuple[float, str]] = (), log_y: bool = True, width: int = 620, height: int = 300,
    unit: str = "latents",
) -> Chart:  # fmt: skip
    """Histogram of several groups stacked per bin (e.g. latents by class); NaN dropped; optional reference lines.
    Every non-empty (group, bin) bar has a hover text "<group>: <n> <unit> in [lo, hi)"."""
    fig, ax = _axes(width, height)
    chart = Chart(fig, title)
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    bottom = np.zeros(bins)
    for g, values in groups.items():
        counts = np.histogram(values[np.isfinite(values)], bins=edges)[0]
        if counts.sum() == 0:
            continue
        nz = np.flatnonzero(counts)  # empty bins draw nothing
        bars = ax.bar(edges[nz], counts[nz], width=np.diff(edges)[nz], bottom=bottom[nz], align="edge", log=log_y,
                      color=colors.get(g, "#868e96"), label=g.replace("_", " "), linewidth=0)  # fmt: skip
        for bar, i in zip(bars, nz, strict=True):
            gid = f"bar-{g}-{i}"
            bar.set_gid(gid)
            chart.tips[gid] = f"{g}: {int(counts[i])} {unit} in [{edges[i]:.3g}, {edges[i + 1]:.3g})"
        bottom = bottom + counts
    for x, name in vlines:
        ax.axvline(x, color="#495057", ls="--", lw=0.8)
        ax.annotate(name, (x, 0), xycoords=("data", "axes fraction"), xytext=(3, 3), textcoords="offset points",
                    fontsize=8, color="#495057")  # fmt: skip
    if log_y and bottom.max() > 0:
        ax.set_ylim(0.7, bottom.max() * 12)  # head room for the legend
    ax.set_xlim(*value_range)
    ax.legend(fontsize=8, ncols=3, loc="upper left", frameon=False)
    _finish(fig, ax, title, xlabel, f"{unit} (log)" if log_y else unit)
    return chart


def scatter(
    x: np.ndarray, y: np.ndarray, tips: Sequence[str], highlight: np.ndarray, labels: Sequence[str], title: str,
    xlabel: str, ylabel: str, box: tuple[float, float] | None = None, width: int = 620, height: int = 360,
) -> Chart | None:  # fmt: skip
    """Scatter of the finite (x, y): highlighted points on top, each with its hover text and `class="pt-hi"` (and its
    `labels` entry as text when non-empty); an optional shaded "good" box [0, bx] x [0, by]. The axes cover the bulk
    of the data (0.5-99.5th percentile, [0, 1] and every highlighted point); points beyond are pinned to the edge."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return None
    keep = highlight.astype(bool) & ok
    xs, ys = x[ok], y[ok]
    lo_x = min(0.0, float(np.percentile(xs, 0.5)), float(x[keep].min()) if keep.any() else 0.0)
    hi_x = max(1.0, float(np.percentile(xs, 99.5)), float(x[keep].max()) if keep.any() else 1.0)
    lo_y = min(0.0, float(np.percentile(ys, 0.5)), float(y[keep].min()) if keep.any() else 0.0)
    hi_y = max(1.0, float(np.percentile(ys, 99.5)), float(y[keep].max()) if keep.any() else 1.0)
    fig, ax = _axes(width, height)
    chart = Chart(fig, title)
    if box is not None:
        ax.fill_between(
            [0, box[0]], 0, box[1], color="#d3f9d8", alpha=0.7, zorder=0, lw=0, label="passes Latent Scaling"
        )
    rest = ok & ~keep
    ax.scatter(np.clip(x[rest], lo_x, hi_x), np.clip(y[rest], lo_y, hi_y), s=7, c=MUTED, alpha=0.6, lw=0,
               label="other latent", rasterized=bool(rest.sum() > 2000))  # fmt: skip
    for n, i in enumerate(np.flatnonzero(keep)):
        gid = f"pt-hi-{i}"
        pt = ax.scatter([x[i]], [y[i]], s=34, c=HIGHLIGHT, edgecolors="white", lw=0.8, zorder=3,
                        label="candidate" if n == 0 else None)  # fmt: skip
        pt.set_gid(gid)
        chart.tips[gid], chart.classes[gid] = tips[int(i)], "pt-hi"
        if labels[int(i)]:
            ax.annotate(labels[int(i)], (x[i], y[i]), xytext=(4, 4), textcoords="offset points", fontsize=7.5,
                        color="#c92a2a", fontweight="bold")  # fmt: skip
    pad_x, pad_y = 0.04 * (hi_x - lo_x), 0.04 * (hi_y - lo_y)
    ax.set_xlim(lo_x - pad_x, hi_x + pad_x)
    ax.set_ylim(lo_y - pad_y, hi_y + pad_y)
    ax.legend(fontsize=8, loc="upper right", frameon=False)
    _finish(fig, ax, title, xlabel, ylabel)
    return chart


def hbars(
    names: Sequence[str], values: Sequence[float], colors: Sequence[str], title: str, xlabel: str, width: int = 620
) -> Chart | None:
    """Horizontal bars, one per name, top to bottom in the given order, each with its hover text."""
    if not names:
        return None
    vals = [v if math.isfinite(v) else 0.0 for v in values]
    fig, ax = _axes(width, 90 + 20 * len(names))
    chart = Chart(fig, title)
    bars = ax.barh(range(len(vals)), vals, color=list(colors), height=0.7)
    for i, (bar, name, v) in enumerate(zip(bars, names, vals, strict=True)):
        bar.set_gid(f"hbar-{i}")
        chart.tips[f"hbar-{i}"] = f"{name}: {v:.4g}"
    ax.set_yticks(range(len(vals)), list(names), fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    _finish(fig, ax, title, xlabel, "")
    return chart


def line(
    xs: Sequence[float], ys: Sequence[float], title: str, xlabel: str, ylabel: str, width: int = 300, height: int = 200
) -> Chart | None:
    """A small line chart with markers (e.g. trait score against steering strength); each point has its hover text."""
    pts = [(float(a), float(b)) for a, b in zip(xs, ys, strict=False) if b is not None and math.isfinite(float(a))
           and math.isfinite(float(b))]  # fmt: skip
    if not pts:
        return None
    fig, ax = _axes(width, height)
    chart = Chart(fig, title)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], color=HIGHLIGHT, lw=2)
    for i, (a, b) in enumerate(pts):
        (dot,) = ax.plot([a], [b], "o", color=HIGHLIGHT, ms=5)
        dot.set_gid(f"pt-{i}")
        chart.tips[f"pt-{i}"] = f"{a:g}: {b:.3g}"
    _finish(fig, ax, title, xlabel, ylabel)
    return chart


def lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[str]]], title: str, xlabel: str, ylabel: str,
    width: int = 760, height: int = 380, *, hlines: Mapping[str, float] | None = None,
    spans: Sequence[tuple[float, float]] = (), xticks: Sequence[str] | None = None, marker_size: float = 4,
) -> Chart | None:  # fmt: skip
    """Several named line series with markers ({name: (xs, ys, hover texts)}), each point with its hover text.
    `hlines` draws a dashed reference line per series name in that series' colour (e.g. an alert threshold),
    `spans` shades x ranges (e.g. assistant turns), `xticks` names the integer x positions 0, 1, ..."""
    if not any(xs for xs, _, _ in series.values()):
        return None
    fig, ax = _axes(width, height)
    chart = Chart(fig, title)
    for lo, hi in spans:
        ax.axvspan(lo, hi, color="#fff3bf", zorder=0, lw=0)
    for name, (xs, ys, tips) in series.items():
        if not xs:
            continue
        (ln,) = ax.plot(list(xs), list(ys), lw=1.6 if marker_size >= 3 else 1.1, label=name)
        for i, (a, b, tip) in enumerate(zip(xs, ys, tips, strict=True)):
            (dot,) = ax.plot([a], [b], "o", color=ln.get_color(), ms=marker_size)
            dot.set_gid(f"pt-{name}-{i}")
            chart.tips[f"pt-{name}-{i}"] = tip
        if hlines and name in hlines:
            ax.axhline(hlines[name], color=ln.get_color(), ls="--", lw=0.9)
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), list(xticks), fontsize=8)
    ax.legend(fontsize=8, frameon=False)
    _finish(fig, ax, title, xlabel, ylabel)
    return chart


def heatmap(
    values: Sequence[Sequence[float]], rows: Sequence[str], columns: Sequence[str], title: str,
    limit: float | None = None, cmap: str = "RdBu_r", width: int | None = None,
) -> Chart | None:  # fmt: skip
    """A rows x columns matrix of signed numbers on a diverging colour scale symmetric about 0 (`limit`, default the
    largest finite |value|), each cell printed and with its hover text "<row> / <column>: <value>"; NaN cells blank."""
    vals = np.array(values, dtype=float).reshape(len(rows), len(columns))
    if vals.size == 0:
        return None
    finite = np.isfinite(vals)
    lim = limit or max(float(np.abs(vals[finite]).max()) if finite.any() else 1.0, 1e-6)
    fig, ax = _axes(width or int(220 + 95 * len(columns)), int(110 + 26 * len(rows)))
    chart = Chart(fig, title)
    im = ax.imshow(np.where(finite, vals, np.nan), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(len(columns)), list(columns), rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), list(rows), fontsize=8)
    for i, j in zip(*np.nonzero(finite), strict=True):
        txt = ax.text(j, i, f"{vals[i, j]:+.2f}", ha="center", va="center", fontsize=7)
        gid = f"cell-{i}-{j}"
        txt.set_gid(gid)
        chart.tips[gid] = f"{rows[i]} / {columns[j]}: {vals[i, j]:+.4g}"
    fig.colorbar(im, ax=ax, fraction=0.04)
    _finish(fig, ax, title, "", "")
    return chart


def html_page(title: str, body: str, css: str = "") -> str:
    """A self-contained HTML page around inline charts (no external resources)."""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>svg.chart{{max-width:100%;height:auto}}{css}</style></head><body><main>{body}</main></body></html>"
    )


def inline(chart: Chart | None, title: str, empty: str = "nothing to plot") -> str:
    """A chart's inline SVG (the figure is closed afterwards), or a muted note when there was nothing to draw."""
    if chart is None:
        return f'<p class="muted">{escape(title)}: {escape(empty)}.</p>'
    try:
        return chart.svg()
    finally:
        chart.close()
