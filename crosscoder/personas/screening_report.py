"""What screening writes (ranked JSONL, a self-contained HTML report, summary JSON) and its command line.

    python -m crosscoder.personas.screening --model smollm2-135m-instruct --data sft.jsonl --trait pirate \\
        [--run RUN_DIR [--latents 12,40]] [--rank-by NAME] [--top 25] [--out results/screening]

Writes ``<out>/ranked.jsonl`` (every example, highest score first, with its line in the input file and every
score), ``<out>/screening.html`` (per-direction score histograms, the top and bottom examples) and
``<out>/summary.json``. Bad input (a malformed line, a line without an assistant turn, directions from another
model) stops with one line naming the file, line and field before any model runs, and nothing written earlier is
touched: every file is replaced atomically.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
from pathlib import Path

from crosscoder import charts
from crosscoder.io import atomic_write_json, atomic_write_text
from crosscoder.personas.screening import ExampleScore

log = logging.getLogger(__name__)

_CSS = """body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;vertical-align:top}
th{background:#f3f3f3}.muted{color:#777;font-size:12px}td.txt{max-width:640px}
.hists{display:flex;flex-wrap:wrap;gap:8px}.hists svg.chart{width:420px;height:auto}"""


def _histograms(scores: list[ExampleScore], names: list[str]) -> str:
    """One histogram of the projection difference per direction (inline SVG)."""
    import numpy as np

    out = []
    for name in names:
        values = np.array([s.projection_diff[name] for s in scores], dtype=float)
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        chart = charts.stacked_histogram({"examples": values}, {"examples": "#c92a2a"}, 30,
                                         (lo, hi if hi > lo else lo + 1.0), name, "projection difference",
                                         log_y=False, width=420, height=240, unit="examples")  # fmt: skip
        out.append(charts.inline(chart, name))
    return f'<div class="hists">{"".join(out)}</div>'


def _rows(scores: list[ExampleScore], names: list[str], rank_field: str, key: str) -> str:
    out = []
    for i, s in enumerate(scores):
        cells = "".join(f"<td>{s.projection_diff[n]:+.3f}</td>" for n in names)
        lat = "".join(f"<td>{v:+.3f}</td>" for v in s.latent_diff.values())
        out.append(f"<tr><td>{i + 1}</td><td>{s.line}</td><td>{getattr(s, rank_field)[key]:+.3f}</td>{cells}{lat}"
                   f"<td class='txt'><b>{html.escape(s.prompt)}</b><br>{html.escape(s.response)}</td></tr>")  # fmt: skip
    return "".join(out)


def render_html(ranked: list[ExampleScore], source: str, rank_field: str, key: str, top: int) -> str:
    """The screening report: histograms, then the top and bottom `top` examples."""
    names = list(ranked[0].projection_diff)
    lat = list(ranked[0].latent_diff)
    head = ("<tr><th>rank</th><th>line</th><th>score</th>" + "".join(f"<th>Δproj {html.escape(n)}</th>" for n in names)
            + "".join(f"<th>Δact {html.escape(n)}</th>" for n in lat) + "<th>prompt / response</th></tr>")  # fmt: skip
    bottom = ranked[-top:] if len(ranked) > top else []
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>screening</title><style>{_CSS}</style></head><body>"
        f"<h1>Training-data screening: {html.escape(source)}</h1>"
        f"<p class='muted'>{len(ranked)} examples ranked by {html.escape(rank_field)} of {html.escape(key)} "
        "(response projection minus the model's own answer's, mean over assistant tokens)</p>"
        f"{_histograms(ranked, names)}<h2>Top {min(top, len(ranked))}</h2><table>{head}"
        f"{_rows(ranked[:top], names, rank_field, key)}</table>"
        + (
            f"<h2>Bottom {len(bottom)}</h2><table>{head}{_rows(bottom, names, rank_field, key)}</table>"
            if bottom
            else ""
        )
        + "</body></html>"
    )


def write_screening(
    out_dir: str | Path, scores: list[ExampleScore], source: str, key: str, *, rank_field: str = "projection_diff",
    top: int = 25,
) -> Path:  # fmt: skip
    """Write ranked.jsonl, screening.html and summary.json into `out_dir`; returns the HTML path."""
    from crosscoder.personas.screening import rank

    ranked = rank(scores, key, rank_field)
    out = Path(out_dir)
    atomic_write_text(out / "ranked.jsonl", "".join(json.dumps({"rank": i + 1, **s.to_dict()}) + "\n"
                                                     for i, s in enumerate(ranked)))  # fmt: skip
    atomic_write_text(out / "screening.html", render_html(ranked, source, rank_field, key, top))
    atomic_write_json(out / "summary.json", {
        "source": source, "n_examples": len(ranked), "rank_by": {"field": rank_field, "name": key},
        "top": [{"line": s.line, "score": getattr(s, rank_field)[key]} for s in ranked[:top]],
    })  # fmt: skip
    return out / "screening.html"


def main(argv: list[str] | None = None) -> None:
    from crosscoder.models import load_model
    from crosscoder.personas.monitor_cli import add_direction_args, build_directions, concrete, parse_spec
    from crosscoder.personas.screening import score_examples
    from crosscoder.personas.sft_data import read_sft_jsonl

    p = argparse.ArgumentParser(prog="python -m crosscoder.personas.screening", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", default="smollm2-135m-instruct", help="the model about to be fine-tuned")
    p.add_argument("--adapter", help="PEFT adapter folder on top of --model")
    p.add_argument("--data", required=True, help="SFT chat JSONL to screen")
    p.add_argument("--rank-by", help="direction (or 'latent <j>...') to rank by; default the first direction")
    p.add_argument("--max-new-tokens", type=int, default=64, help="length of the model's own answers")
    p.add_argument("--top", type=int, default=25, help="examples shown at each end of the HTML report")
    p.add_argument("--out", default="results/screening", help="output folder")
    add_direction_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    convs = read_sft_jsonl(args.data)  # bad lines fail here, before any model loads
    model = load_model(concrete(parse_spec(args.model, args.adapter)))
    directions, _ = build_directions(args, model)
    reader = None
    if args.run:
        from crosscoder.personas.xc_latents import LatentReader, load_run, persona_latents

        run = load_run(args.run)
        ids = [int(x) for x in args.latents.split(",")] if args.latents else None
        reader = LatentReader(run, persona_latents(run, args.analysis_dir, ids))
    from crosscoder.personas.generate import GenerationConfig

    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, greedy=True)
    scores = score_examples(model, convs, directions, reader=reader, gen=gen, allow_other_model=args.allow_other_model)
    key = args.rank_by or directions[0].name
    field = "latent_diff" if key.startswith("latent ") else "projection_diff"
    page = write_screening(args.out, scores, str(args.data), key, rank_field=field, top=args.top)
    print(f"screened {len(scores)} examples; wrote {page}")
