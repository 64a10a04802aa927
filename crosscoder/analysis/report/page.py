"""The self-contained HTML report of an analysis folder: `write_report(analysis_dir) -> analysis_dir/report.html`.

One file, no external URLs: inline CSS, inline SVG charts (matplotlib, `crosscoder.analysis.report.charts`), a few lines of inline JS (expand / collapse all). It opens
offline in any browser. Sections: summary metrics (FVE, class counts, splice), distributions (relative decoder norm,
decoder cosine, the Latent Scaling scatter, candidate scores), the activation-difference baseline, and the ranked
candidate table whose rows expand into their evidence (top-activating contexts with token highlighting, logit lens,
label evidence, pos/neg activations, steering and ablation).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crosscoder import charts
from crosscoder.analysis.report.data import CLASS_COLORS, CLASS_ORDER, AnalysisData, as_dict, load_analysis
from crosscoder.analysis.report.html import CSS, bar_cell, class_badge, esc, fmt
from crosscoder.analysis.report.parts import baseline_section, candidate_body, splice_section
from crosscoder.analysis.report.plots import distribution_charts
from crosscoder.analysis.report.trajectory import trajectory_section
from crosscoder.io import atomic_write_text

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
_JS = """
function setAll(open){document.querySelectorAll('details.cand').forEach(d=>{d.open=open;});}
"""


def _cards(data: AnalysisData) -> str:
    s = data.summary
    cards = [("latents", fmt(int(s.get("n_latents", data.n_latents)))), ("candidates", fmt(len(data.candidates)))]
    fve = s.get("fve") or {}
    if isinstance(fve, dict):
        cards += [(f"FVE {k}", fmt(float(v)) if isinstance(v, int | float) else fmt(v)) for k, v in fve.items()]
    counts = s.get("class_counts")
    if not isinstance(counts, dict) and "class" in data.columns:
        counts = {c: int((data.columns["class"] == c).sum()) for c in CLASS_ORDER}
    for c in CLASS_ORDER:
        if isinstance(counts, dict) and c in counts:
            cards.append(
                (f'<span style="color:{CLASS_COLORS[c]}">&#9632;</span> {c.replace("_", " ")}', fmt(int(counts[c])))
            )
    html = "".join(f'<div class="card"><div class="v">{v}</div><div class="k">{k}</div></div>' for k, v in cards)
    return f'<div class="cards">{html}</div>'


def _personas(data: AnalysisData) -> str:
    """The personas the labels found, each with its latents (linked to their candidate entries) and model-diff ranks."""
    personas = data.summary.get("personas")
    if not isinstance(personas, list):
        return ""
    if not personas:
        return '<p class="note">Personas found: none (no candidate passed the label threshold).</p>'
    parts = []
    for p in personas:
        links = ", ".join(
            f'<a href="#latent-{esc(x.get("latent"))}">{esc(x.get("latent"))}</a> (#{esc(x.get("rank"))}, '
            f"{fmt(float(x['confidence'])) if isinstance(x.get('confidence'), int | float) else '?'})"
            for x in p.get("latents", [])
        )
        parts.append(f"<b>{esc(p.get('trait'))}</b>: latents {links}")
    return (
        f'<p class="note">Personas found (label, latents with model-diff rank and confidence): {"; ".join(parts)}.</p>'
    )


def _control(data: AnalysisData) -> str:
    """A note when the ranking set a control fine-tune's shared attribution aside."""
    path = data.summary.get("control_activations")
    if not path:
        return ""
    return (
        f'<p class="note">Ranked against a control fine-tune (activations <code>{esc(path)}</code>): each score keeps '
        "only the attribution the control does not share; the table's <code>score_uncontrolled</code> is the score "
        "without it.</p>"
    )


def _timings(data: AnalysisData) -> str:
    t = data.summary.get("timings")
    if not isinstance(t, dict) or not t:
        return ""
    parts = {k: float(v) for k, v in t.items() if isinstance(v, int | float) and k != "total"}
    cells = ", ".join(f"{esc(k)} {fmt(v)} s" for k, v in parts.items())
    total = float(t["total"]) if isinstance(t.get("total"), int | float) else sum(parts.values())
    return f'<p class="note">Timings: {cells} (total {fmt(total)} s).</p>'


def _distributions(data: AnalysisData) -> str:
    panels = "".join(
        f'<div class="panel">{charts.inline(chart, name.replace("_", " "), "no finite values to plot")}</div>'
        for name, chart in distribution_charts(data).items()
    )
    note = (
        '<p class="note">Relative norm near 1: the latent decodes only into the final model; near 0: only into the base. '
        "Shifted latents keep a shared norm but their decoder direction turned (low cosine). The Latent Scaling ratios "
        "nu = beta<sub>base</sub>/beta<sub>ft</sub> (Minder et al. 2025) are near 0 for truly fine-tune-specific latents; "
        "a large nu_err means the base model's error still carries the latent (Complete Shrinkage), a large nu_recon means "
        "the base reconstruction does (Latent Decoupling). Hover any bar or candidate point for its values.</p>"
    )
    return f'<h2 id="distributions">Latent distributions</h2>{note}<div class="grid2">{panels}</div>'


def _label_cell(c: dict[str, Any]) -> str:
    label = c.get("label")
    if not label or label == "unlabelled":
        return '<span class="label-unl">unlabelled</span>'
    return f"<b>{esc(label)}</b>"


def _candidate_row(c: dict[str, Any], hi_score: float, open_: bool, models: list[str]) -> str:
    conf = c.get("label_confidence")
    conf_html = bar_cell(float(conf), 1.0, "#2b8a3e") if isinstance(conf, int | float) else fmt(conf)
    cells = [
        f'<span class="num">{fmt(c.get("rank"))}</span>',
        f'<span class="num">#{esc(c.get("latent"))}</span>',
        class_badge(str(c.get("class", "")), CLASS_COLORS),
        bar_cell(float(c.get("score") or 0.0), hi_score),
        f'<span class="num">{fmt(c.get("rel_norm"))}</span>',
        f'<span class="num">{fmt(c.get("cos"))}</span>',
        f'<span class="num">{fmt(c.get("nu_err"))}</span>',
        f'<span class="num">{fmt(c.get("nu_recon"))}</span>',
        _label_cell(c),
        conf_html,
        f'<span class="muted">{esc(c.get("runner_up") or "")}</span>',
    ]
    summary = "".join(f"<span>{x}</span>" for x in cells)
    attr = " open" if open_ else ""
    return f'<details class="cand" id="latent-{esc(c.get("latent"))}"{attr}><summary>{summary}</summary>{candidate_body(c, models)}</details>'


def _candidates(data: AnalysisData) -> str:
    cands = data.candidates
    intro = (
        '<p class="note">Ranked ft-exclusive and shifted latents that pass the Latent Scaling test. Unlabelled latents stay '
        "in the list: no trait in the library explains them, which is what a search for unknown personas needs to see. "
        'Click a row for its evidence. <button onclick="setAll(true)">expand all</button> '
        '<button onclick="setAll(false)">collapse all</button></p>'
    )
    if not cands:
        return f'<h2 id="candidates">Candidates</h2>{intro}<p class="muted">No candidate latent passed the filters.</p>'
    head_cells = [
        "rank",
        "latent",
        "class",
        "score",
        "rel norm",
        "cos",
        "&nu; err",
        "&nu; recon",
        "label",
        "conf.",
        "runner-up",
    ]
    head = '<div class="cand-head">' + "".join(f"<span>{h}</span>" for h in head_cells) + "</div>"
    scores = [float(c.get("score") or 0.0) for c in cands]
    hi = max([s for s in scores if math.isfinite(s)] + [1e-12])
    rows = "".join(_candidate_row(c, hi, i == 0, data.models) for i, c in enumerate(cands))
    return f'<h2 id="candidates">Candidates ({len(cands)})</h2>{intro}{head}{rows}'


def _header(data: AnalysisData) -> str:
    s = data.summary
    hooks = ", ".join(str(h) for h in s.get("hooks", []) or [])
    arch = s.get("architecture") or as_dict(s.get("crosscoder")).get("architecture") or ""
    models = " &rarr; ".join(esc(m) for m in data.models)
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    run = esc(s.get("run_dir", data.folder.parent))
    return (
        f"<header><h1>Crosscoder model diff: {models}</h1><div class='meta'>run <code>{run}</code> &middot; hooks "
        f"<code>{esc(hooks)}</code>{' &middot; ' + esc(arch) if arch else ''} &middot; "
        f"{fmt(int(s.get('n_latents', data.n_latents)))} latents &middot; report written {when}</div></header>"
    )


def _summary(data: AnalysisData) -> str:
    return (
        '<h2 id="summary">Summary</h2>'
        + _cards(data)
        + _personas(data)
        + _control(data)
        + splice_section(data.splice, data.models)
        + _timings(data)
    )


def _footer(data: AnalysisData) -> str:
    return (
        f'<footer>Files in {esc(data.folder)}: <span class="files">{esc(", ".join(data.files))}</span>. '
        "Generated by crosscoder.analysis.report; self-contained, no external resources.</footer>"
    )


SECTIONS: list[Callable[[AnalysisData], str]] = [
    _summary,
    _distributions,
    lambda data: baseline_section(data.baseline, data.models),
    lambda data: trajectory_section(data.folder),
    _candidates,
    _footer,
]
"""The report's sections, top to bottom: each renders one part of the page from the analysis files. A new section
(another diffing method's results, a trajectory over checkpoints) is a function appended here."""


def render_report(data: AnalysisData) -> str:
    """The full report HTML for loaded analysis data."""
    body = "".join(section(data) for section in SECTIONS)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Crosscoder diff report</title><style>{CSS}</style><script>{_JS}</script></head><body>"
        + _header(data)
        + f"<main>{body}</main></body></html>"
    )


def write_report(analysis_dir: Path) -> Path:
    """Read `analysis_dir`'s files and write the self-contained `analysis_dir/report.html`; returns its path."""
    analysis_dir = Path(analysis_dir)
    data = load_analysis(analysis_dir)
    out = analysis_dir / REPORT_NAME
    atomic_write_text(out, render_report(data))
    log.info("wrote %s (%d candidates, %.0f kB)", out, len(data.candidates), out.stat().st_size / 1024)
    return out
