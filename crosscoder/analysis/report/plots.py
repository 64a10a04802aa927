"""The four distribution charts of an analysis folder, shared by the report, the plot files and W&B.

`distribution_charts(data)` draws them (`crosscoder.analysis.report.charts`); `make_plots(analysis_dir)` writes each
— and, for a checkpoint series, the trajectory charts (`crosscoder.analysis.report.trajectory`) — into
`<analysis_dir>/plots/` as `<name>.png` and as a self-contained `<name>.html` (the inline SVG with hover text,
opens offline) and returns the paths.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from crosscoder import charts
from crosscoder.analysis.report.data import CLASS_COLORS, CLASS_ORDER, AnalysisData, load_analysis, nu_box
from crosscoder.analysis.report.html import CSS
from crosscoder.analysis.report.trajectory import trajectory_charts
from crosscoder.io import atomic_write_text

log = logging.getLogger(__name__)

PLOT_NAMES = ("rel_norm", "cosine", "beta_scatter", "candidate_scores")
"""The plots, in order (file stems)."""
TOP_SCORES = 25
"""Candidates shown in the score chart."""
NAMED_POINTS = 15
"""Top candidates whose latent id is written next to their scatter point (every candidate is highlighted)."""


def rel_norm_column(data: AnalysisData) -> tuple[np.ndarray, str]:
    """The exclusivity axis: `rel_norm` for a pair, else the last model's decoder-norm share."""
    rel = data.column("rel_norm")
    if np.isfinite(rel).any():
        return (
            rel,
            f"relative decoder norm  ||d_{data.models[-1]}|| / (||d_{data.models[0]}|| + ||d_{data.models[-1]}||)",
        )
    last = data.column(f"share_{data.models[-1]}") if data.models else rel
    return last, f"decoder-norm share of {data.models[-1] if data.models else 'last model'}"


def by_class(data: AnalysisData, values: np.ndarray) -> dict[str, np.ndarray]:
    """`values` split by latent class, in display order."""
    classes = data.columns.get("class")
    if classes is None:
        return {"latents": values}
    out = {c: values[classes == c] for c in CLASS_ORDER if (classes == c).any()}
    others = ~np.isin(classes, CLASS_ORDER)
    if others.any():
        out["other"] = values[others]
    return out


def _scatter(data: AnalysisData) -> charts.Chart | None:
    nu_r, nu_e = data.column("nu_recon"), data.column("nu_err")
    is_cand = data.columns.get("is_candidate", np.zeros(data.n_latents, dtype=bool)).astype(bool)
    latent, rank = data.column("latent"), data.column("rank")
    empty = np.array([""] * data.n_latents, dtype=object)
    classes = data.columns.get("class", empty)
    labels, artifacts = data.columns.get("label", empty), data.columns.get("ls_artifact", empty)
    tips = [
        f"latent {int(latent[i])} | {classes[i]} | nu_recon {nu_r[i]:.3g} | nu_err {nu_e[i]:.3g}"
        + (f" | {labels[i]}" if labels[i] else "")
        + (f" | rejected: {artifacts[i]}" if artifacts[i] else "")
        for i in range(data.n_latents)
    ]
    names = [f"#{int(v)}" if np.isfinite(r) and r <= NAMED_POINTS else "" for v, r in zip(latent, rank, strict=True)]
    return charts.scatter(nu_r, nu_e, tips, is_cand, names, "Latent Scaling: base / ft beta ratios",
                          "nu_recon  (beta_recon base / ft)", "nu_err  (beta_err base / ft)", box=nu_box(data.summary))  # fmt: skip


def distribution_charts(data: AnalysisData) -> dict[str, charts.Chart | None]:
    """The four charts (None where there is nothing to draw), keyed by `PLOT_NAMES`."""
    rel, rel_label = rel_norm_column(data)
    cos = data.column("cos")
    lo = min(0.0, float(np.nanmin(cos))) if np.isfinite(cos).any() else 0.0
    cos_label = f"cos(d_{data.models[0]}, d_{data.models[-1]})" if data.models else "cosine"
    top = data.candidates[:TOP_SCORES]
    return {
        "rel_norm": charts.stacked_histogram(by_class(data, rel), CLASS_COLORS, 50, (0.0, 1.0), "Relative decoder norm",
                                             rel_label, vlines=[(0.1, "0.1"), (0.9, "0.9")]),
        "cosine": charts.stacked_histogram(by_class(data, cos), CLASS_COLORS, 50, (lo, 1.0),
                                           "Decoder cosine (base vs final model)", cos_label),
        "beta_scatter": _scatter(data),
        "candidate_scores": charts.hbars(
            [f"#{c['latent']} {c.get('label') or ''}"[:22] for c in top], [float(c.get("score") or 0.0) for c in top],
            [CLASS_COLORS.get(str(c.get("class")), "#868e96") for c in top], f"Candidate scores (top {len(top)})",
            "score"),
    }  # fmt: skip


def make_plots(analysis_dir: Path) -> list[Path]:
    """Write each chart of `analysis_dir` as PNG and as self-contained HTML into `analysis_dir/plots/`."""
    analysis_dir = Path(analysis_dir)
    data = load_analysis(analysis_dir)
    out = analysis_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, chart in {**distribution_charts(data), **trajectory_charts(analysis_dir)}.items():
        if chart is None:
            continue
        paths.append(chart.png(out / f"{name}.png"))
        atomic_write_text(out / f"{name}.html", charts.html_page(chart.title, charts.inline(chart, chart.title), CSS))
        paths.append(out / f"{name}.html")
    log.info("wrote %d plots to %s", len(paths), out)
    return paths
