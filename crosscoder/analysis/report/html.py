"""HTML building blocks of the report: escaping, token highlighting, logit-lens chips, small tables, the stylesheet.

Every piece of text that comes from data (tokens, labels, generations, trait names) goes through :func:`esc`, which
escapes `<`, `>`, `&` and quotes; tokens additionally show whitespace visibly (newline as a return glyph).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from html import escape
from typing import Any


def esc(value: Any) -> str:
    """HTML-escape any value (quotes included) for text and attribute positions."""
    return escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A short human number ("-" for missing/NaN), as escaped HTML."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "&ndash;"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** (-digits)):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}".rstrip("0").rstrip(".") or "0"
    return esc(value)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def token_text(tok: str) -> str:
    """Escaped token text with whitespace and control characters made visible (spaces kept; CSS pre-wraps them).

    Newline -> a return glyph, tab -> a tab glyph, other control bytes -> a muted hex code (x01).
    """
    text = esc(tok).replace("\r", "").replace("\n", '<span class="nl">&#8629;</span>').replace("\t", "&#8677;")
    return _CONTROL.sub(lambda m: f'<span class="nl">\\x{ord(m.group()):02x}</span>', text)


def highlighted_tokens(
    tokens: Sequence[str], acts: Sequence[float], max_pos: int | None, scale: float, window: tuple[int, int] = (32, 8)
) -> str:
    """One context as inline spans, background opacity = activation / scale; the max position is outlined.

    Only `window` = (before, after) tokens around `max_pos` are shown, with an ellipsis where text was cut.
    """
    n = len(tokens)
    centre = max_pos if max_pos is not None and 0 <= max_pos < n else n - 1
    lo, hi = max(0, centre - window[0]), min(n, centre + window[1] + 1)
    parts = ['<span class="cut">&hellip;</span>'] if lo > 0 else []
    for i in range(lo, hi):
        a = float(acts[i]) if i < len(acts) and acts[i] is not None else 0.0
        a = a if math.isfinite(a) else 0.0
        alpha = min(max(a / scale, 0.0), 1.0) if scale > 0 else 0.0
        cls = "tok max" if i == centre else "tok"
        style = f' style="background:rgba(253,126,20,{alpha:.2f})"' if alpha > 0.005 else ""
        parts.append(f'<span class="{cls}"{style} title="act {a:.3g} @ {i}">{token_text(tokens[i])}</span>')
    if hi < n:
        parts.append('<span class="cut">&hellip;</span>')
    return '<div class="ctx">' + "".join(parts) + "</div>"


def token_chips(pairs: Sequence[Sequence[Any]], kind: str, limit: int = 10) -> str:
    """Logit-lens tokens as chips; `kind` is "pro" (promoted) or "sup" (suppressed). Pairs are [token, value]."""
    chips = []
    for pair in list(pairs)[:limit]:
        tok, val = (pair[0], pair[1]) if isinstance(pair, list | tuple) and len(pair) >= 2 else (pair, None)
        v = f"{float(val):+.2f}" if isinstance(val, int | float) and math.isfinite(float(val)) else ""
        chips.append(f'<span class="chip {kind}" title="{esc(v)}">{token_text(str(tok))}</span>')
    return "".join(chips) or '<span class="muted">&ndash;</span>'


def lens_table(lens: dict[str, Any], order: Sequence[str]) -> str:
    """Rows "direction | promoted | suppressed" for each key of a logit-lens dict (model names, "diff", ...)."""
    keys = [k for k in order if k in lens] + [k for k in lens if k not in order]
    rows = []
    for k in keys:
        entry = lens[k] if isinstance(lens[k], dict) else {}
        name = "d<sub>ft</sub> &minus; d<sub>base</sub>" if k == "diff" else esc(k)
        rows.append(
            f'<tr><th class="lens-name">{name}</th><td>{token_chips(entry.get("promoted", []), "pro")}</td>'
            f"<td>{token_chips(entry.get('suppressed', []), 'sup')}</td></tr>"
        )
    if not rows:
        return '<p class="muted">no logit lens stored</p>'
    return '<table class="lens"><tr><th></th><th>promoted</th><th>suppressed</th></tr>' + "".join(rows) + "</table>"


def kv_table(obj: Any, depth: int = 0) -> str:
    """Any JSON value as a compact nested key/value table (used for fields the report has no dedicated view of)."""
    if isinstance(obj, dict):
        if not obj:
            return '<span class="muted">{}</span>'
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{kv_table(v, depth + 1)}</td></tr>" for k, v in obj.items())
        return f'<table class="kv">{rows}</table>'
    if isinstance(obj, list):
        if all(not isinstance(v, dict | list) for v in obj):
            return ", ".join(fmt(v) for v in obj) or '<span class="muted">[]</span>'
        return "".join(f'<div class="kv-item">{kv_table(v, depth + 1)}</div>' for v in obj)
    if isinstance(obj, str):
        return f'<span class="text">{esc(obj)}</span>'
    return fmt(obj)


def simple_table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "data") -> str:
    """A table from already-rendered cell HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def class_badge(cls: str, colors: dict[str, str]) -> str:
    """A coloured pill naming a latent class."""
    color = colors.get(cls, "#868e96")
    return f'<span class="badge" style="background:{color}">{esc(cls.replace("_", " "))}</span>'


def bar_cell(value: float, hi: float, color: str = "#d9480f") -> str:
    """A number with a proportional bar behind it (for score / confidence columns)."""
    frac = min(max(value / hi, 0.0), 1.0) if hi > 0 and math.isfinite(value) else 0.0
    return f'<span class="barcell"><span class="bar" style="width:{frac * 100:.0f}%;background:{color}"></span>{fmt(value)}</span>'


CSS = """
:root{--fg:#212529;--muted:#868e96;--line:#dee2e6;--bg:#f8f9fa;--accent:#d9480f}
*{box-sizing:border-box}
body{font-family:"DejaVu Sans","Liberation Sans",Helvetica,Arial,sans-serif;color:var(--fg);margin:0;background:#fff;
 font-size:14px;line-height:1.45}
header{background:#212529;color:#f8f9fa;padding:18px 32px}
header h1{margin:0 0 4px 0;font-size:22px;font-weight:600}
header .meta{color:#ced4da;font-size:13px}
header code{color:#ffd8a8}
main{padding:8px 32px 48px 32px;max-width:1340px}
h2{font-size:17px;border-bottom:2px solid var(--line);padding-bottom:4px;margin:28px 0 10px 0}
h3{font-size:14px;margin:14px 0 6px 0}
p.note{color:#495057;margin:4px 0 10px 0;max-width:980px}
.muted{color:var(--muted)}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 12px;min-width:104px;background:var(--bg)}
.card .v{font-size:21px;font-weight:600}
.card .k{font-size:12px;color:#495057}
.grid2{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:18px;align-items:start}
.panel{border:1px solid var(--line);border-radius:8px;padding:8px}
svg.chart{max-width:100%;height:auto;font-family:inherit}
table{border-collapse:collapse}
table.data{width:100%;font-size:13px}
table.data th,table.data td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
table.data th{background:var(--bg);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{color:#fff;border-radius:10px;padding:1px 8px;font-size:11.5px;white-space:nowrap}
.chip{display:inline-block;font-family:"DejaVu Sans Mono",monospace;font-size:12px;white-space:pre;border-radius:4px;
 padding:0 4px;margin:1px 3px 1px 0}
.chip.pro{background:#d3f9d8;color:#1b5e20}.chip.sup{background:#ffe3e3;color:#8a1c1c}
table.lens td,table.lens th{padding:2px 6px;vertical-align:top;text-align:left;font-size:12px}
th.lens-name{white-space:nowrap;color:#495057}
.cand-head,.cand>summary{display:grid;grid-template-columns:50px 70px 112px 90px 70px 64px 64px 64px 150px 72px 1fr;
 gap:6px;align-items:center;padding:5px 8px}
.cand-head{font-weight:600;background:var(--bg);border-bottom:2px solid var(--line);font-size:12.5px}
.cand{border-bottom:1px solid var(--line)}
.cand>summary{cursor:pointer;list-style:none;font-size:13px}
.cand>summary::-webkit-details-marker{display:none}
.cand>summary:hover{background:#fff4e6}
.cand[open]>summary{background:#fff4e6;font-weight:600}
.cand .body{padding:6px 16px 14px 40px;border-left:3px solid var(--accent);background:#fffdfa}
.num{text-align:right;font-variant-numeric:tabular-nums}
.label-unl{color:var(--muted);font-style:italic}
.barcell{position:relative;display:inline-block;min-width:64px;padding:0 3px}
.barcell .bar{position:absolute;left:0;top:2px;bottom:2px;opacity:.22;border-radius:2px}
.ctx{font-family:"DejaVu Sans Mono",monospace;font-size:12px;white-space:pre-wrap;word-break:break-word;
 border:1px solid var(--line);border-radius:4px;padding:4px 6px;margin:3px 0;background:#fff}
.tok{border-radius:2px}.tok.max{outline:1.5px solid #c92a2a}
.nl{color:var(--muted)}.cut{color:var(--muted)}
.ev-grid{display:grid;grid-template-columns:minmax(0,1.1fr) minmax(0,1fr);gap:18px}
.body table.data{font-size:12px}.body table.data th,.body table.data td{padding:3px 5px}
table.kv{font-size:12px}table.kv th{text-align:left;padding:1px 8px 1px 0;color:#495057;vertical-align:top;font-weight:500}
table.kv td{padding:1px 0}
.gen{font-size:12.5px;white-space:pre-wrap;border-left:3px solid #ffc078;padding:2px 8px;margin:4px 0;background:#fff}
.gen .s{font-weight:600;color:#d9480f}
.files{font-size:12px;color:#495057}
p.stats{font-size:12.5px;margin:8px 0 2px 0}
.charts{display:flex;flex-wrap:wrap;gap:12px}.charts svg.chart{width:310px}
details.more>summary{cursor:pointer;color:#495057;font-size:12px;margin:4px 0}
footer{color:var(--muted);font-size:12px;margin-top:30px}
"""
"""The report's stylesheet (inlined; fonts are the Debian defaults so the headless screenshot matches a browser)."""
