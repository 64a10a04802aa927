"""Report sections built from the optional files and from one candidate's evidence (see report.py for the page)."""

from __future__ import annotations

import math
from typing import Any

from crosscoder import charts
from crosscoder.analysis.report.data import as_dict
from crosscoder.analysis.report.html import esc, fmt, highlighted_tokens, kv_table, lens_table, simple_table

_KNOWN_CAND_KEYS = {
    "latent", "rank", "score", "class", "rel_norm", "cos", "nu_err", "nu_recon", "label", "label_confidence",
    "runner_up", "label_evidence", "top_examples", "logit_lens", "next_token_shift", "pos_neg", "steering", "ablation",
}  # fmt: skip
_EVIDENCE_COLS = (
    "cosine",
    "cosine_signal",
    "said",
    "said_signal",
    "pos_neg_diff",
    "pos_neg_signal",
    "lexical",
    "combined",
)
"""Label-evidence signals shown as columns (the rest go into an "all signals" fold)."""
_STEER_SHOWN = {"strengths", "trait_score", "keyword_rate", "generations", "unsteered", "trait"}
_SPLICE_COLS = (
    ("ce_clean", "CE clean"),
    ("ce_spliced", "CE spliced"),
    ("ce_zero_ablation", "CE zero-ablation"),
    ("kl", "KL(clean || spliced)"),
    ("frac_recovered", "fraction of CE recovered"),
    ("n_tokens", "tokens"),
)


def _per_model(obj: Any) -> dict[str, dict[str, Any]]:
    """{model: {...}} from either that shape or {"models": {...}} / {"per_model": {...}}."""
    if not isinstance(obj, dict):
        return {}
    for key in ("models", "per_model"):
        if isinstance(obj.get(key), dict):
            return {str(k): v for k, v in obj[key].items() if isinstance(v, dict)}
    return {str(k): v for k, v in obj.items() if isinstance(v, dict)}


def splice_section(splice: Any, models: list[str]) -> str:
    """Per-model splice metrics (CE clean / spliced / zero-ablation, KL, fraction recovered)."""
    title = '<h3 id="splice">Splice metrics (each model\'s activation replaced by its crosscoder reconstruction)</h3>'
    per = _per_model(splice)
    if not per:
        return f'{title}<p class="muted">splice.json not computed.</p>'
    names = [m for m in models if m in per] + [m for m in per if m not in models]
    extra = sorted({k for m in names for k in per[m] if k not in dict(_SPLICE_COLS)})
    cols = [c for c in _SPLICE_COLS if any(c[0] in per[m] for m in names)] + [(k, esc(k)) for k in extra]
    rows = [[esc(m)] + [f'<span class="num">{fmt(per[m].get(k))}</span>' for k, _ in cols] for m in names]
    return title + simple_table(["model"] + [h for _, h in cols], rows)


def baseline_section(baseline: Any, models: list[str]) -> str:
    """The mean ft - base activation difference per position class, with its logit lens."""
    title = '<h2 id="baseline">Activation-difference baseline</h2>'
    note = (
        '<p class="note">Mean activation difference (final model &minus; base) per position class, read through the '
        "logit lens. The crosscoder's candidates should beat or explain it.</p>"
    )
    if not isinstance(baseline, dict):
        return f'{title}<p class="muted">baseline.json not computed.</p>'
    positions = baseline.get("positions", baseline.get("position_classes"))
    if not isinstance(positions, dict):
        positions = {k: v for k, v in baseline.items() if isinstance(v, dict)}
    rows = []
    for name, entry in positions.items():
        if not isinstance(entry, dict):
            continue
        lens = entry.get("logit_lens", {})
        if isinstance(lens, dict) and "promoted" not in lens:  # per-model lens: {model: {promoted, suppressed}}
            lens_html = lens_table(lens, models)
        else:
            lens_html = lens_table({"diff": lens}, ["diff"]) if isinstance(lens, dict) else ""
        stats = {k: v for k, v in entry.items() if k != "logit_lens" and not isinstance(v, dict | list)}
        rows.append([f"<b>{esc(name)}</b>", kv_table(stats), lens_html])
    other = {
        k: v for k, v in baseline.items() if k not in ("positions", "position_classes") and not isinstance(v, dict)
    }
    meta = f'<p class="note">{kv_table(other)}</p>' if other else ""
    return (
        title + note + meta + simple_table(["position class", "statistics", "logit lens of the mean difference"], rows)
    )


def _examples(c: dict[str, Any]) -> str:
    ex = [e for e in c.get("top_examples") or [] if isinstance(e, dict) and e.get("tokens")]
    if not ex:
        return '<p class="muted">no top-activating contexts stored</p>'
    acts = [float(a) for e in ex for a in e.get("acts", []) if a is not None and math.isfinite(float(a))]
    scale = max(acts) if acts else 1.0
    rows = []
    for e in ex:
        mp = e.get("max_pos")
        a = e.get("acts") or []
        peak = a[mp] if isinstance(mp, int) and 0 <= mp < len(a) else (max(a) if a else None)
        head = f'<span class="muted">seq {esc(e.get("seq", "?"))} &middot; max {fmt(peak)}</span>'
        rows.append(head + highlighted_tokens([str(t) for t in e["tokens"]], a, mp, scale))
    return "".join(rows)


def _label_evidence(c: dict[str, Any]) -> str:
    ev = as_dict(c.get("label_evidence"))
    if not ev:
        return '<p class="muted">no label evidence</p>'
    every = sorted({k for v in ev.values() if isinstance(v, dict) for k in v})
    shown = [k for k in _EVIDENCE_COLS if k in every] or every
    order = sorted(ev, key=lambda t: -float(as_dict(ev[t]).get("combined") or 0.0))
    rows = []
    for t in order:
        name = f"<b>{esc(t)}</b>" if t == c.get("label") else esc(t)
        rows.append([name] + [f'<span class="num">{fmt(as_dict(ev[t]).get(k))}</span>' for k in shown])
    table = simple_table(["trait"] + [esc(k.replace("_", " ")) for k in shown], rows)
    rest = [k for k in every if k not in shown]
    if rest:
        detail = {t: {k: as_dict(ev[t]).get(k) for k in rest} for t in order}
        table += f'<details class="more"><summary>all signals ({len(rest)} more)</summary>{kv_table(detail)}</details>'
    return table


def _generations(gens: Any, tag: str) -> str:
    """Generated answers as quoted blocks; `tag` names them (a strength is shown when the record has one)."""
    parts = []
    for g in gens if isinstance(gens, list) else []:
        if isinstance(g, dict):
            s = g.get("strength")
            head = f"&alpha;={fmt(s)}" if s is not None else esc(tag)
            prompt = f'<span class="muted">{esc(g.get("prompt", ""))}</span> &rarr; ' if g.get("prompt") else ""
            parts.append(f'<div class="gen"><span class="s">{head}</span> {prompt}{esc(g.get("text", ""))}</div>')
        else:
            parts.append(f'<div class="gen"><span class="s">{esc(tag)}</span> {esc(g)}</div>')
    return "".join(parts)


def _pos_neg(c: dict[str, Any]) -> str:
    pn = c.get("pos_neg")
    if not isinstance(pn, dict) or not pn:
        return ""
    rows = []
    for t, v in pn.items():
        if not isinstance(v, dict):
            continue
        pos, neg = v.get("pos_mean"), v.get("neg_mean")
        diff = pos - neg if isinstance(pos, int | float) and isinstance(neg, int | float) else None
        rows.append([esc(t)] + [f'<span class="num">{fmt(x)}</span>' for x in (pos, neg, diff)])
    return "<h3>Activation on trait prompts</h3>" + simple_table(
        ["trait", "pos mean", "neg mean", "pos &minus; neg"], rows
    )


def _steering(c: dict[str, Any]) -> str:
    st = as_dict(c.get("steering"))
    if not st:
        return '<h3>Steering</h3><p class="muted">not run for this latent</p>'
    trait = st.get("trait") or c.get("label") or "trait"
    parts = [f"<h3>Steering the base model along the ft decoder direction ({esc(trait)})</h3>", '<div class="charts">']
    strengths = st.get("strengths") or []
    for key, ylabel in (("trait_score", "trait score"), ("keyword_rate", "keyword rate")):
        ys = st.get(key)
        if isinstance(ys, dict):  # {trait: [values]}
            for t, v in ys.items():
                title = f"{t}: {ylabel}"
                parts.append(
                    charts.inline(charts.line(strengths, v or [], title, "strength", ylabel), title, "no values")
                )
        elif isinstance(ys, list):
            title = f"{ylabel} vs strength"
            parts.append(charts.inline(charts.line(strengths, ys, title, "strength", ylabel), title, "no values"))
    parts.append("</div>")
    parts.append(_generations(st.get("unsteered"), "unsteered") + _generations(st.get("generations"), "steered"))
    rest = {k: v for k, v in st.items() if k not in _STEER_SHOWN}
    if rest:
        parts.append(kv_table(rest))
    return "".join(parts)


def _continuations(c: dict[str, Any]) -> str:
    shift = as_dict(c.get("next_token_shift")) or {}
    rows, openings = shift.get("continuations") or [], shift.get("openings") or []
    out = ""
    if openings:
        body = "".join(
            f"<tr><td>{esc(ft_text)}</td><td>{esc(base_text)}</td><td>{fmt(mass)}</td></tr>"
            for _, ft_text, mass, base_text in openings
        )
        out += (
            "<h3>Phrases the most promoted next tokens open (greedy)</h3><table><tr><th>ft</th><th>base</th>"
            f"<th>p<sub>ft</sub> &minus; p<sub>base</sub></th></tr>{body}</table>"
        )
    if rows:
        body = "".join(
            f'<tr><td class="muted">&hellip;{esc(r.get("context", ""))}</td><td>{esc(r.get("base", ""))}</td>'
            f"<td>{esc(r.get('ft', ''))}</td></tr>"
            for r in rows
        )
        out += (
            "<h3>What each model says next at the top contexts (greedy, without ending the turn)</h3>"
            f"<table><tr><th>context</th><th>base</th><th>ft</th></tr>{body}</table>"
        )
    return out


def _ablation(c: dict[str, Any]) -> str:
    ab = as_dict(c.get("ablation"))
    if not ab:
        return ""
    facts = {k: v for k, v in ab.items() if k != "generations"}
    return (
        "<h3>Ablating the latent in the fine-tuned model</h3>"
        + kv_table(facts)
        + _generations(ab.get("generations"), "ablated")
    )


def candidate_body(c: dict[str, Any], models: list[str]) -> str:
    """The expandable evidence of one candidate."""
    extra = {k: v for k, v in c.items() if k not in _KNOWN_CAND_KEYS}
    scalars = {k: v for k, v in extra.items() if not isinstance(v, dict | list) and v not in (None, "")}
    nested = {k: v for k, v in extra.items() if isinstance(v, dict | list)}
    stats = " &middot; ".join(
        f'<span class="muted">{esc(k.replace("_", " "))}</span> {fmt(v)}' for k, v in scalars.items()
    )
    head = f'<p class="stats">{stats}</p>' if stats else ""
    left = "<h3>Top-activating contexts</h3>" + _examples(c)
    right = "<h3>Logit lens of the decoder directions</h3>" + lens_table(
        as_dict(c.get("logit_lens")), [*models, "diff"]
    )
    if isinstance(c.get("next_token_shift"), dict):
        right += "<h3>Next-token shift at the top contexts (p<sub>ft</sub> &minus; p<sub>base</sub>)</h3>" + lens_table(
            {"shift": c["next_token_shift"]}, ["shift"]
        )
    right += "<h3>Label evidence</h3>" + _label_evidence(c) + _pos_neg(c)
    below = _continuations(c) + _steering(c) + _ablation(c)
    if nested:
        below += "<h3>Other fields</h3>" + kv_table(nested)
    return f'<div class="body">{head}<div class="ev-grid"><div>{left}</div><div>{right}</div></div>{below}</div>'
