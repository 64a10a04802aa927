"""Log an analysis folder to Weights & Biases: `log_to_wandb(analysis_dir, run=None, mode="offline")`.

What is logged:
* `latents`: a wandb.Table with one row per latent and the table's core columns (`wandb_columns`: geometry, Latent
  Scaling, class, score, rank, label, and the all-token frequency / activation / attribution); the per-slice
  breakdowns stay in latents.parquet / .csv in the artifact (W&B types every cell, ~20 us each on this CPU, so the
  full 50-column table of 16,384 latents would cost about a minute);
* `candidates`: a wandb.Table of the ranked candidates whose `evidence`, `top_context` and `logit_lens_diff` cells
  are wandb.Html (the same token highlighting and logit-lens chips as the HTML report, styles inlined);
* `hist/rel_norm`, `hist/cos`, `hist/score`: histograms; `plots/<name>`: the report's four charts as images;
* for a checkpoint series: `trajectory/latent_<j>` a line chart of each top candidate's decoder norm by step,
  `trajectory/signal` the trait signals by step, and the trajectory charts as images;
* run summary: FVE per model, class counts, number of candidates, splice metrics;
* an artifact of type `analysis-report` holding report.html, the JSON/CSV/Parquet files and the PNG plots.

The run is the analysis run of `crosscoder.analysis.export.wandb_run`: in its training run's project and group,
named `<training run> [analysis]`, job_type `analysis`, referring to (online: using) the training run's crosscoder
artifact. Its mode: an explicit `mode` wins; `auto` follows $WANDB_MODE, then the training run's mode, then offline
(files under `<analysis_dir>/wandb/offline-run-*`; upload with `wandb sync`, docs/WANDB.md). The artifact is named
`analysis-<run id>`, unique per run.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from crosscoder.analysis.report.data import AnalysisData, as_dict, load_analysis
from crosscoder.analysis.report.html import CSS, highlighted_tokens, lens_table, token_chips
from crosscoder.analysis.report.parts import candidate_body
from crosscoder.xc.tracking import artifact_name

log = logging.getLogger(__name__)

_CAND_COLS = (
    "rank",
    "latent",
    "class",
    "score",
    "rel_norm",
    "cos",
    "nu_err",
    "nu_recon",
    "label",
    "label_confidence",
    "runner_up",
    "description",
)
_ARTIFACT_FILES = ("report.html", "summary.json", "candidates.json", "latents.parquet", "latents.csv", "latents.json",
                   "baseline.json", "splice.json", "trajectory.json", "forecast.json")  # fmt: skip


def _cell(value: Any) -> Any:
    """A JSON/number cell W&B tables accept (NaN -> None, numpy scalars -> Python)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _html(body: str) -> Any:
    import wandb

    return wandb.Html(f"<style>{CSS}</style>{body}", inject=False)


def _top_context(c: dict[str, Any]) -> str:
    ex = [e for e in c.get("top_examples") or [] if isinstance(e, dict) and e.get("tokens")]
    if not ex:
        return '<span class="muted">no contexts</span>'
    e = ex[0]
    acts = [float(a) for a in e.get("acts", []) if a is not None]
    scale = max([a for a in acts if math.isfinite(a)] + [1e-12])
    return highlighted_tokens([str(t) for t in e["tokens"]], e.get("acts", []), e.get("max_pos"), scale)


def wandb_columns(columns: list[str]) -> list[str]:
    """The latent-table columns logged to W&B: all but the per-slice ones of slices other than `all`."""
    from crosscoder.analysis.stats.collect import SLICES

    per_slice = ("freq_", "mean_act_", "attr_", "cos_meandiff_")
    dropped = {f"{p}{s}" for p in per_slice for s in SLICES if s != "all"}
    return [c for c in columns if c not in dropped]


def latent_table(data: AnalysisData) -> Any:
    """The latent table as a wandb.Table (`wandb_columns` of every latent, NaN as empty)."""
    import wandb

    cols: list[str | int] = list(wandb_columns(list(data.columns)))
    arrays = [data.columns[str(c)] for c in cols]
    rows = [[_cell(a[i]) for a in arrays] for i in range(data.n_latents)]
    return wandb.Table(columns=cols, data=rows)


def candidate_table(data: AnalysisData) -> Any:
    """The ranked candidates with HTML evidence cells."""
    import wandb

    cols: list[str | int] = [*_CAND_COLS, "top_context", "logit_lens_diff", "evidence"]
    rows = []
    for c in data.candidates:
        lens = as_dict(c.get("logit_lens"))
        diff = as_dict(lens.get("diff"))
        diff_html = (
            f"<div>{token_chips(diff.get('promoted', []), 'pro')}</div><div>{token_chips(diff.get('suppressed', []), 'sup')}</div>"
            if diff
            else lens_table(lens, data.models)
        )
        rows.append(
            [_cell(c.get(k)) for k in _CAND_COLS]
            + [_html(_top_context(c)), _html(diff_html), _html(candidate_body(c, data.models))]
        )
    return wandb.Table(columns=cols, data=rows)


def _histogram(values: np.ndarray, bins: int = 64) -> Any:
    import wandb

    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    return wandb.Histogram(np_histogram=np.histogram(v, bins=bins))


def summary_metrics(data: AnalysisData) -> dict[str, Any]:
    """Flat scalar metrics for the run summary."""
    s = data.summary
    out: dict[str, Any] = {"n_latents": int(s.get("n_latents", data.n_latents)), "n_candidates": len(data.candidates)}
    for k, v in (s.get("fve") or {}).items() if isinstance(s.get("fve"), dict) else []:
        out[f"fve/{k}"] = _cell(v)
    counts = s.get("class_counts")
    if isinstance(counts, dict):
        out.update({f"class/{k}": _cell(v) for k, v in counts.items()})
    splice = data.splice if isinstance(data.splice, dict) else {}
    per = splice.get("models", splice) if isinstance(splice.get("models", splice), dict) else {}
    for model, metrics in per.items():
        if isinstance(metrics, dict):
            out.update({f"splice/{model}/{k}": _cell(v) for k, v in metrics.items() if isinstance(v, int | float)})
    for c in data.candidates[:5]:
        out[f"top/{c.get('rank')}"] = f"#{c.get('latent')} {c.get('label') or 'unlabelled'}"
    personas = s.get("personas")
    if isinstance(personas, list):
        out["personas"] = ", ".join(str(p.get("trait")) for p in personas if isinstance(p, dict)) or "none"
    return out


def build_payload(data: AnalysisData) -> dict[str, Any]:
    """Everything `log_to_wandb` logs in one `run.log` call (tables, histograms, the report's charts as images)."""
    import io

    import wandb
    from PIL import Image

    from crosscoder.analysis.report.plots import distribution_charts, rel_norm_column
    from crosscoder.analysis.report.trajectory import trajectory_charts, wandb_trajectory

    payload: dict[str, Any] = {"latents": latent_table(data), "candidates": candidate_table(data)}
    rel, _ = rel_norm_column(data)
    scores = data.column("score")
    for name, values in (("rel_norm", rel), ("cos", data.column("cos")), ("score", scores[scores > 0])):
        hist = _histogram(values)
        if hist is not None:
            payload[f"hist/{name}"] = hist
    for name, chart in {**distribution_charts(data), **trajectory_charts(data.folder)}.items():
        if chart is not None:
            payload[f"plots/{name}"] = wandb.Image(Image.open(io.BytesIO(chart.png_bytes())), caption=chart.title)
            chart.close()
    payload.update(wandb_trajectory(data.folder))
    return payload


def log_to_wandb(
    analysis_dir: Path,
    run: Any = None,
    mode: str = "auto",
    project: str | None = None,
    name: str | None = None,
    run_dir: Path | None = None,
) -> Any:
    """Log `analysis_dir` to `run`, or to a new analysis run linked to its training run (`wandb_run`): mode `auto`
    follows $WANDB_MODE, then the training run's mode, then offline. Returns the run used (finished if new)."""
    import wandb

    from crosscoder.analysis.export.wandb_dashboards import dashboard_files, dashboard_payload
    from crosscoder.analysis.export.wandb_run import analysis_run_spec, link_training_run, start_analysis_run

    analysis_dir = Path(analysis_dir)
    data = load_analysis(analysis_dir)
    if run_dir is None:
        run_dir = Path(str(data.summary.get("run_dir") or analysis_dir.parent))
    spec = analysis_run_spec(analysis_dir, run_dir, mode=mode, project=project, name=name,
                             extra_config={"models": data.models, "hooks": data.summary.get("hooks")})  # fmt: skip
    if run is None and spec.mode == "disabled":
        log.info("W&B disabled: %s not logged", analysis_dir)
        return None
    if not (analysis_dir / "report.html").is_file():
        from crosscoder.analysis.report.page import write_report

        write_report(analysis_dir)
    own_run = run is None
    if own_run:
        run = start_analysis_run(spec, analysis_dir)
        link_training_run(run, spec)
    run.log({**build_payload(data), **dashboard_payload(analysis_dir)})
    run.summary.update(summary_metrics(data))
    art = wandb.Artifact(artifact_name("analysis", run.id), type="analysis-report", metadata=summary_metrics(data))
    for fname in _ARTIFACT_FILES:
        if (analysis_dir / fname).is_file():
            art.add_file(str(analysis_dir / fname), name=fname)
    for path in dashboard_files(analysis_dir):
        art.add_file(str(path), name=f"dashboards/{path.name}")
    for png in sorted((analysis_dir / "plots").glob("*.png")):
        art.add_file(str(png), name=f"plots/{png.name}")
    run.log_artifact(art)
    log.info("logged %s to W&B (%s mode, group %s): %d latents, %d candidates", analysis_dir, spec.mode, spec.group,
             data.n_latents, len(data.candidates))  # fmt: skip
    if own_run:
        if spec.mode == "offline":
            log.info("W&B offline run; upload with: wandb sync %s", Path(run.dir).parent)
        run.finish()
    return run
