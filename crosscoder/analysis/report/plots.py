"""PNG (matplotlib, Agg) and interactive HTML (plotly) plots of an analysis folder: `make_plots(analysis_dir)`.

Writes into `<analysis_dir>/plots/`: `rel_norm.png`, `cosine.png`, `beta_scatter.png`, `candidate_scores.png`, one
self-contained `<name>.html` per plot (plotly.js inlined, opens offline), and returns their paths. The same plotly
figures are reused by the W&B logger (:func:`plotly_figures`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from crosscoder.analysis.report.data import CLASS_COLORS, CLASS_ORDER, AnalysisData, load_analysis, nu_box
from crosscoder.analysis.report.page import rel_norm_column
from crosscoder.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

PLOT_NAMES = ("rel_norm", "cosine", "beta_scatter", "candidate_scores")
"""The plots written, in order (file stems)."""
_TOP_SCORES = 30


def _groups(data: AnalysisData, values: np.ndarray) -> list[tuple[str, np.ndarray]]:
    classes = data.columns.get("class")
    if classes is None:
        return [("latents", values[np.isfinite(values)])]
    out = []
    for c in CLASS_ORDER:
        v = values[(classes == c) & np.isfinite(values)]
        if v.size:
            out.append((c, v))
    return out


def _scatter_arrays(data: AnalysisData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    nu_r, nu_e = data.column("nu_recon"), data.column("nu_err")
    ok = np.isfinite(nu_r) & np.isfinite(nu_e)
    cand = data.columns.get("is_candidate", np.zeros(data.n_latents, dtype=bool)).astype(bool)
    return nu_r, nu_e, ok, cand


def _nu_box(data: AnalysisData) -> tuple[float, float] | None:
    return nu_box(data.summary)


# ----------------------------------------------------------------------------------------------- matplotlib (PNG)
def _png_plots(data: AnalysisData, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []

    def save(fig: Any, name: str) -> None:
        target = out / f"{name}.png"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")
        plt.close(fig)
        paths.append(target)

    rel, rel_label = rel_norm_column(data)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    groups = _groups(data, rel)
    ax.hist([v for _, v in groups], bins=50, range=(0, 1), stacked=True, color=[CLASS_COLORS.get(g, "#868e96") for g, _ in groups],
            label=[g.replace("_", " ") for g, _ in groups], log=True)  # fmt: skip
    for x in (0.1, 0.9):
        ax.axvline(x, color="#495057", ls="--", lw=0.8)
    ax.set(xlabel=rel_label, ylabel="latents", title="Relative decoder norm")
    ax.set_ylim(top=ax.get_ylim()[1] * 12)  # head room for the legend
    ax.legend(fontsize=8, ncols=3)
    save(fig, "rel_norm")

    cos = data.column("cos")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    groups = _groups(data, cos)
    lo = min(0.0, float(np.nanmin(cos))) if np.isfinite(cos).any() else 0.0
    ax.hist([v for _, v in groups], bins=50, range=(lo, 1), stacked=True, color=[CLASS_COLORS.get(g, "#868e96") for g, _ in groups],
            label=[g.replace("_", " ") for g, _ in groups], log=True)  # fmt: skip
    ax.set(xlabel="decoder cosine (base vs final model)", ylabel="latents", title="Decoder cosine")
    ax.set_ylim(top=ax.get_ylim()[1] * 12)
    ax.legend(fontsize=8, ncols=3, loc="upper left")
    save(fig, "cosine")

    nu_r, nu_e, ok, cand = _scatter_arrays(data)
    fig, ax = plt.subplots(figsize=(6, 5))
    box = _nu_box(data)
    if box is not None:
        ax.add_patch(matplotlib.patches.Rectangle((0, 0), box[0], box[1], color="#d3f9d8", alpha=0.7, zorder=0))
    ax.scatter(nu_r[ok & ~cand], nu_e[ok & ~cand], s=9, c="#adb5bd", alpha=0.6, label="other latent")
    ax.scatter(nu_r[ok & cand], nu_e[ok & cand], s=30, c="#d9480f", edgecolors="white", label="candidate")
    latent = data.column("latent")
    for i in np.flatnonzero(ok & cand)[:40]:
        ax.annotate(
            f"#{int(latent[i])}",
            (nu_r[i], nu_e[i]),
            fontsize=7,
            color="#c92a2a",
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set(xlabel="nu_recon (beta_recon base / ft)", ylabel="nu_err (beta_err base / ft)", title="Latent Scaling")
    ax.legend(fontsize=8)
    save(fig, "beta_scatter")

    top = data.candidates[:_TOP_SCORES]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.25 * max(len(top), 1)))
    names = [f"#{c['latent']} {c.get('label') or ''}" for c in top]
    ax.barh(range(len(top)), [float(c.get("score") or 0.0) for c in top],
            color=[CLASS_COLORS.get(str(c.get("class")), "#868e96") for c in top])  # fmt: skip
    ax.set_yticks(range(len(top)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="score", title=f"Candidate scores (top {len(top)})")
    save(fig, "candidate_scores")
    return paths


# ----------------------------------------------------------------------------------------------- plotly (HTML)
def plotly_figures(data: AnalysisData) -> dict[str, Any]:
    """The four plots as plotly figures (hover shows latent ids, labels and values)."""
    import plotly.graph_objects as go

    figs: dict[str, Any] = {}
    rel, rel_label = rel_norm_column(data)
    cos = data.column("cos")
    for name, values, title, xlabel in (
        ("rel_norm", rel, "Relative decoder norm", rel_label),
        ("cosine", cos, "Decoder cosine (base vs final model)", "decoder cosine"),
    ):
        fig = go.Figure()
        for g, v in _groups(data, values):
            fig.add_histogram(x=v, name=g.replace("_", " "), marker_color=CLASS_COLORS.get(g, "#868e96"), nbinsx=50)
        fig.update_layout(barmode="stack", title=title, xaxis_title=xlabel, yaxis_title="latents", yaxis_type="log")
        figs[name] = fig

    nu_r, nu_e, ok, cand = _scatter_arrays(data)
    latent = data.column("latent")
    labels = data.columns.get("label", np.array([""] * data.n_latents, dtype=object))
    classes = data.columns.get("class", np.array([""] * data.n_latents, dtype=object))
    fig = go.Figure()
    for mask, name, color, size in (
        (ok & ~cand, "other latent", "#adb5bd", 5),
        (ok & cand, "candidate", "#d9480f", 10),
    ):
        idx = np.flatnonzero(mask)
        fig.add_scatter(
            x=nu_r[idx], y=nu_e[idx], mode="markers", name=name, marker={"color": color, "size": size},
            text=[f"latent {int(latent[i])}<br>{classes[i]}<br>{labels[i]}" for i in idx],
            hovertemplate="%{text}<br>nu_recon %{x:.3f}<br>nu_err %{y:.3f}<extra></extra>",
        )  # fmt: skip
    box = _nu_box(data)
    if box is not None:
        fig.add_shape(
            type="rect", x0=0, y0=0, x1=box[0], y1=box[1], fillcolor="#d3f9d8", opacity=0.5, line_width=0, layer="below"
        )
    fig.update_layout(title="Latent Scaling: base / ft beta ratios", xaxis_title="nu_recon", yaxis_title="nu_err")
    figs["beta_scatter"] = fig

    top = data.candidates[:_TOP_SCORES]
    fig = go.Figure(
        go.Bar(
            x=[float(c.get("score") or 0.0) for c in top],
            y=[f"#{c['latent']} {c.get('label') or ''}" for c in top],
            orientation="h",
            marker_color=[CLASS_COLORS.get(str(c.get("class")), "#868e96") for c in top],
            hovertext=[
                f"{c.get('class')} | conf {c.get('label_confidence')} | runner-up {c.get('runner_up')}" for c in top
            ],
        )
    )
    fig.update_layout(title=f"Candidate scores (top {len(top)})", xaxis_title="score", yaxis_autorange="reversed")
    figs["candidate_scores"] = fig
    for f in figs.values():
        f.update_layout(template="plotly_white", font_family="DejaVu Sans, Arial, sans-serif")
    return figs


def _html_plots(data: AnalysisData, out: Path) -> list[Path]:
    paths = []
    for name, fig in plotly_figures(data).items():
        target = out / f"{name}.html"
        atomic_write_text(target, fig.to_html(include_plotlyjs=True, full_html=True))
        paths.append(target)
    return paths


def make_plots(analysis_dir: Path) -> list[Path]:
    """Write the PNG and interactive HTML plots of `analysis_dir` into `analysis_dir/plots/`; returns the paths."""
    analysis_dir = Path(analysis_dir)
    data = load_analysis(analysis_dir)
    out = analysis_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    paths = _png_plots(data, out) + _html_plots(data, out)
    log.info("wrote %d plots to %s", len(paths), out)
    return paths
