"""Files the monitor writes: per-token and per-turn CSVs, a JSON summary, the directions, and a self-contained HTML.

The HTML inlines its charts as SVG (crosscoder.charts, the project's one chart stack) and its styles; it makes no network request. Each conversation
shows a per-token projection chart per direction (threshold dashed, assistant turns shaded), its per-turn table with
alerts, and its tokens coloured by the first direction's projection (red above the calibrated threshold's side,
blue below; hover shows the values). A checkpoint series adds a chart of the mean assistant projection per checkpoint.
"""

from __future__ import annotations

import csv
import html
import json
import math
from dataclasses import asdict
from pathlib import Path

from crosscoder import charts
from crosscoder.io import atomic_path, atomic_write_json, atomic_write_text
from crosscoder.personas.directions import Direction, save_directions
from crosscoder.personas.monitor import ConversationTrace, MonitorResult, SeriesPoint

MAX_HTML_CONVERSATIONS = 20
"""Conversations drawn in the HTML (all of them are in the CSVs)."""

_CSS = """body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3}svg.chart{max-width:100%;height:auto}.alert{background:#c62828;color:#fff;border-radius:3px;padding:0 4px;font-size:12px}
.tok{white-space:pre-wrap;font-family:DejaVu Sans Mono,monospace;font-size:13px;line-height:1.7}
.role{font-weight:bold;margin-top:6px}.muted{color:#777;font-size:12px}h2{margin-top:28px}"""


def trace_chart(trace: ConversationTrace, directions: list[Direction]) -> str:
    """Per-token projection lines (one per direction), thresholds dashed, assistant turns shaded; inline SVG."""
    series: dict[str, tuple[list[float], list[float], list[str]]] = {}
    for k, d in enumerate(directions):
        pts = [(t, float(v)) for t, v in enumerate(trace.proj_TK[:, k].tolist()) if math.isfinite(v)]
        series[f"{d.name} @ {d.hook}"] = ([float(t) for t, _ in pts], [v for _, v in pts],
                                          [f"{trace.tokens.texts[t]!r} (position {t}): {v:+.3f}" for t, v in pts])  # fmt: skip
    thresholds = {f"{d.name} @ {d.hook}": d.threshold for d in directions if d.threshold is not None}
    spans, start = [], None
    for t, owner in enumerate([*trace.tokens.turn, -1]):
        is_asst = owner >= 0 and trace.tokens.messages[owner]["role"] == "assistant"
        if is_asst and start is None:
            start = t
        if not is_asst and start is not None:
            spans.append((start - 0.5, t - 0.5))
            start = None
    chart = charts.lines(series, f"Projection per token (line {trace.line})", "token position (assistant turns shaded)",
                         "projection", width=1100, height=280, hlines=thresholds, spans=spans, marker_size=2)  # fmt: skip
    return charts.inline(chart, "projection per token")


def series_chart(points: list[SeriesPoint], directions: list[Direction]) -> str:
    """Mean assistant-token projection per checkpoint, one line per direction; inline SVG."""
    xs = [float(i) for i in range(len(points))]
    series = {d.name: (xs, [p.mean[d.name] for p in points],
                       [f"{p.checkpoint}: {p.mean[d.name]:+.3f} ({p.alerts} alerting turns)" for p in points])
              for d in directions}  # fmt: skip
    thresholds = {d.name: d.threshold for d in directions if d.threshold is not None}
    chart = charts.lines(series, "Over training: mean projection of the assistant tokens", "checkpoint",
                         "mean projection", width=800, height=300, hlines=thresholds,
                         xticks=[p.checkpoint for p in points])  # fmt: skip
    return charts.inline(chart, "series")


def _colour(value: float, d: Direction) -> str:
    if math.isnan(value):
        return "transparent"
    if d.calibration is not None and d.calibration.pos_mean != d.calibration.neg_mean:
        scale = abs(d.calibration.pos_mean - d.calibration.neg_mean)
        z = (value - d.calibration.threshold) / scale * 2
    else:
        z = value / (abs(value) + 1e-9)
    z = max(-1.0, min(1.0, z))
    return f"rgba(220,40,40,{z:.2f})" if z > 0 else f"rgba(40,90,220,{-z:.2f})"


def _tokens_html(trace: ConversationTrace, d: Direction, k: int) -> str:
    parts, last_turn = [], None
    for t, (text, owner) in enumerate(zip(trace.tokens.texts, trace.tokens.turn, strict=True)):
        if owner >= 0 and owner != last_turn:
            parts.append(f'<div class="role">{html.escape(trace.tokens.messages[owner]["role"])}</div>')
        last_turn = owner if owner >= 0 else last_turn
        if owner < 0:
            continue
        v = float(trace.proj_TK[t, k])
        title = html.escape(f"{text!r}: {v:+.3f}")
        parts.append(f'<span style="background:{_colour(v, d)}" title="{title}">{html.escape(text)}</span>')
    return f'<div class="tok">{"".join(parts)}</div>'


def _turn_table(trace: ConversationTrace, directions: list[Direction]) -> str:
    head = "".join(f"<th>{html.escape(d.name)} mean</th><th>max</th>" for d in directions)
    rows = []
    for t in trace.turns:
        cells = "".join(f"<td>{t.mean[d.name]:+.3f}</td><td>{t.max[d.name]:+.3f}</td>" for d in directions)
        alerts = " ".join(f'<span class="alert">{html.escape(a)}</span>' for a in t.alerts)
        rows.append(
            f"<tr><td>{t.turn}</td><td>{html.escape(t.role)}</td><td>{t.n_tokens}</td>{cells}<td>{alerts}</td></tr>"
        )
    return f"<table><tr><th>turn</th><th>role</th><th>tokens</th>{head}<th>alerts</th></tr>{''.join(rows)}</table>"


def _directions_table(directions: list[Direction]) -> str:
    rows = []
    for d in directions:
        c = d.calibration
        cal = (f"{c.threshold:+.3f}</td><td>{c.pos_mean:+.3f} / {c.neg_mean:+.3f}</td><td>{c.accuracy:.2f} "
               f"({c.n_pos}+{c.n_neg}, {html.escape(c.source)})") if c else "none</td><td></td><td>"  # fmt: skip
        rows.append(f"<tr><td>{html.escape(d.name)}</td><td>{d.kind}</td><td>{d.hook}</td><td>{cal}</td></tr>")
    return ("<table><tr><th>direction</th><th>kind</th><th>hook</th><th>threshold</th><th>pos / neg mean</th>"
            f"<th>balanced accuracy (in-sample)</th></tr>{''.join(rows)}</table>")  # fmt: skip


def render_html(result: MonitorResult, series: list[SeriesPoint] | None = None) -> str:
    """The monitor's self-contained HTML page."""
    ds = result.directions
    alerts = result.alerts()
    body = [f"<h1>Persona monitor: {html.escape(result.model)}</h1>",
            f'<p class="muted">model hash {result.model_hash[:12]} · {len(result.conversations)} conversation(s) · '
            f"{len(alerts)} alerting turn(s)</p>", _directions_table(ds)]  # fmt: skip
    if series:
        body += ["<h2>Over training</h2>", series_chart(series, ds)]
    for trace in result.conversations[:MAX_HTML_CONVERSATIONS]:
        body += [f"<h2>Conversation (line {trace.line})</h2>", trace_chart(trace, ds), _turn_table(trace, ds)]
        body += [f"<details {'open' if k == 0 else ''}><summary>tokens coloured by {html.escape(d.name)}</summary>"
                 f"{_tokens_html(trace, d, k)}</details>" for k, d in enumerate(ds)]  # fmt: skip
    if len(result.conversations) > MAX_HTML_CONVERSATIONS:
        body.append(f'<p class="muted">{len(result.conversations) - MAX_HTML_CONVERSATIONS} more in traces.csv</p>')
    return f"<!doctype html><html><head><meta charset='utf-8'><title>persona monitor</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>"


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def write_monitor(out_dir: str | Path, result: MonitorResult, series: list[SeriesPoint] | None = None) -> Path:
    """Write traces.csv, turns.csv, summary.json, directions.safetensors (+ series.csv) and monitor.html."""
    out = Path(out_dir)
    names = [d.name for d in result.directions]
    rows: list[list[object]] = []
    for c in result.conversations:
        for t, (text, owner) in enumerate(zip(c.tokens.texts, c.tokens.turn, strict=True)):
            role = c.tokens.messages[owner]["role"] if owner >= 0 else ""
            rows.append([c.line, t, owner, role, text, *[f"{float(v):.5g}" for v in c.proj_TK[t]]])
    _write_csv(out / "traces.csv", ["line", "position", "turn", "role", "token", *names], rows)
    turn_rows: list[list[object]] = [
        [c.line, t.turn, t.role, t.n_tokens, *[f"{t.mean[n]:.5g}" for n in names], "|".join(t.alerts)]
        for c in result.conversations for t in c.turns
    ]  # fmt: skip
    _write_csv(out / "turns.csv", ["line", "turn", "role", "n_tokens", *names, "alerts"], turn_rows)
    if series:
        _write_csv(out / "series.csv", ["checkpoint", *names, "alerting_turns"],
                   [[p.checkpoint, *[f"{p.mean[n]:.5g}" for n in names], p.alerts] for p in series])  # fmt: skip
    save_directions(out / "directions.safetensors", result.directions)
    summary = {
        "model": result.model, "model_hash": result.model_hash,
        "directions": [{"name": d.name, "hook": d.hook, "kind": d.kind, "trait": d.trait,
                        "calibration": asdict(d.calibration) if d.calibration else None} for d in result.directions],
        "alerts": [{"line": ln, "turn": t, "direction": n} for ln, t, n in result.alerts()],
        "turns": [{"line": c.line, **asdict(t)} for c in result.conversations for t in c.turns],
        "series": [asdict(p) for p in series] if series else None,
    }  # fmt: skip
    atomic_write_json(out / "summary.json", json.loads(json.dumps(summary)))
    atomic_write_text(out / "monitor.html", render_html(result, series))
    return out / "monitor.html"
