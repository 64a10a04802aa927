"""`run_analysis`: the whole analysis stage for one training run, writing <run_dir>/analysis/ (docs/ANALYSIS_FORMAT.md).

Reads top to bottom: open and check the run, its crosscoder and activation cache; one statistics pass over the
cache; the latent table (geometry, Latent Scaling, attribution, classes, ranking); then, with the language models
loaded, the activation-difference baseline, the candidate steps (evidence, next-token shift, labels, steering) and
the splice metrics; summary.json; finally what is drawn and handed off (report, plots, SAELens, W&B).

Extension points: a new per-candidate step goes into `crosscoder.analysis.run.candidates.build_candidates` and
fills a field of `Candidate`; a new analysis-wide step (another diffing method, a trajectory over checkpoints) is a
function of the `AnalysisContext` called below, inside `ctx.timed(<name>)`, that writes its own file (the checkpoint
series steps of `crosscoder.analysis.trajectory.step` are one); a new presentation goes into
`crosscoder.analysis.run.present`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from crosscoder.analysis.config import AnalyzeConfig
from crosscoder.analysis.rank.table import apply_labels, latent_table
from crosscoder.analysis.records.candidate import Candidate
from crosscoder.analysis.records.summary import AnalysisSummary
from crosscoder.analysis.records.table import write_table
from crosscoder.analysis.run.candidates import build_candidates
from crosscoder.analysis.run.context import AnalysisContext
from crosscoder.analysis.run.inputs import (
    check_activations,
    check_run_model_files,
    lens_hook_index,
    load_crosscoder,
    load_run_models,
    open_activations,
    resolve_run_dir,
    select_traits,
)
from crosscoder.analysis.run.present import Presented, present
from crosscoder.analysis.run.summary import make_summary
from crosscoder.analysis.trajectory.step import series_check, series_output_step, series_table_step
from crosscoder.errors import ModelError
from crosscoder.io import atomic_dir, atomic_write_json, read_json, write_checksums
from crosscoder.online import check_wandb
from crosscoder.runs import check_output_dir, check_unlocked, run_lock

if TYPE_CHECKING:
    from crosscoder.data.protocols import Activations
    from crosscoder.models.load import LoadedModel
    from crosscoder.personas.traits import Trait

__all__ = ["AnalysisContext", "AnalysisResult", "open_run", "resolve_run_dir", "run_analysis"]

log = logging.getLogger(__name__)


@dataclass
class AnalysisResult:
    """What `run_analysis` wrote, also returned in memory."""

    out_dir: Path
    table: pd.DataFrame
    candidates: list[Candidate]
    summary: AnalysisSummary
    presented: Presented
    """report.html, plots and exports written after the analysis files (with their timings)."""


def open_run(cfg: AnalyzeConfig, run: Path, out_dir: Path, acts: Activations | None = None) -> AnalysisContext:
    """Load the run's crosscoder and open (or check the given) activation set; the analysis writes into `out_dir`."""
    info = read_json(run / "run.json")
    cc = load_crosscoder(run, cfg.device)
    names = list(info.get("model_names") or [m["name"] or f"m{i}" for i, m in enumerate(info["models"])])
    acts = acts if acts is not None else open_activations(cfg, info, cc)
    check_activations(acts, info, cc)
    hooks = list(acts.hooks)
    log.info("analysing %s (%d latents, models %s, hooks %s) -> %s", run, cc.cfg.n_latents, names, hooks, out_dir)
    return AnalysisContext(cfg, run, info, cc, acts, names, hooks, lens_hook_index(cfg, hooks), out_dir)


def collect(ctx: AnalysisContext) -> None:
    """The statistics pass over the cache (with the control fine-tune's rows in step, if any)."""
    from crosscoder.analysis.stats.collect import collect_stats
    from crosscoder.analysis.stats.control import open_control

    cfg = ctx.cfg
    control = None
    if cfg.control_activations:
        control = open_control(cfg.control_activations, ctx.acts)
        log.info("control fine-tune: %s (its attribution is set aside in the score)", cfg.control_activations)
    s = cfg.stats
    ctx.st = collect_stats(ctx.cc, ctx.acts, max_rows=s.max_rows, batch_size=s.batch_size,
                           first_assistant_tokens=s.first_assistant_tokens, top_k=4 * cfg.evidence.n_top_examples,
                           fast=s.fast_path, device=cfg.device, control=control)  # fmt: skip


def with_models(ctx: AnalysisContext) -> None:
    """The baseline, the candidate steps and the splice metrics: everything that runs the language models."""
    from crosscoder.analysis.causal.splice import splice_metrics
    from crosscoder.analysis.evidence.lens import LogitLens
    from crosscoder.analysis.stats.baseline import baseline_report

    cfg, models = ctx.cfg, ctx.lms
    if [m.d_model for m in models] != [ctx.cc.cfg.d_model] * len(models):
        raise ModelError(
            f"models have d_model {[m.d_model for m in models]} but the crosscoder expects {ctx.cc.cfg.d_model}"
        )
    if cfg.evidence.baseline:
        with ctx.timed("baseline"):
            lenses = [LogitLens(m) for m in models]
            baseline = baseline_report(ctx.stats, lenses, ctx.names, ctx.hooks, ctx.lens_idx, cfg.evidence.logit_lens_k)
            atomic_write_json(ctx.out_dir / "baseline.json", baseline)
    ctx.candidates = build_candidates(ctx)
    atomic_write_json(ctx.out_dir / "candidates.json", [c.to_json() for c in ctx.candidates])
    apply_labels(ctx.df, ctx.candidates)
    write_table(ctx.df, ctx.out_dir)  # with labels
    if cfg.dashboards.enabled:
        from crosscoder.analysis.dashboards.build import build_dashboards

        with ctx.timed("dashboards"):
            build_dashboards(ctx.cc, ctx.acts, ctx.stats, ctx.df, models, ctx.lens_idx, cfg.dashboards, ctx.out_dir,
                             seed=cfg.seed)  # fmt: skip
    if cfg.splice.enabled:
        with ctx.timed("splice"):
            splice = splice_metrics(ctx.cc, models, ctx.hooks, ctx.acts, cfg.splice.tokens, cfg.splice.batch_size)
            atomic_write_json(ctx.out_dir / "splice.json", splice)


def run_analysis(
    cfg: AnalyzeConfig, *, models: list[LoadedModel] | None = None, acts: Activations | None = None
) -> AnalysisResult:
    """Analyse a training run and present it; `models` / `acts` may be passed pre-loaded (tests, notebooks).

    Every input is checked first (run folder, output folder, W&B, traits); the analysis is written into a temporary
    folder beside the output folder, checksummed, and renamed over it at the end, so a failed analysis leaves the
    previous one intact. The output folder is locked while it is written.
    """
    run = resolve_run_dir(cfg)
    final = check_output_dir(Path(cfg.out_dir) if cfg.out_dir else run / "analysis", "analyze.out_dir")
    check_unlocked(run)  # train.py is not writing it
    check_wandb(cfg.export.wandb_mode, "analyze.export.wandb_mode")
    traits = select_traits(cfg) if cfg.labels.enabled else {}  # trait files and `traits=`: before any work
    check_run_model_files(read_json(run / "run.json"))
    rebuild = f"python analyze.py run_dir={run}" + (f" out_dir={final}" if cfg.out_dir else "")
    with run_lock(final.parent, "analyze.py", name=f".{final.name}.lock"), atomic_dir(final) as tmp:
        result = _analyse(cfg, run, tmp, models, acts, traits)
        result.summary = dataclasses.replace(result.summary, out_dir=str(final))
        atomic_write_json(tmp / "summary.json", result.summary.to_json())
        result.presented = present(tmp, run, cfg)
        write_checksums(tmp, rebuild)
    result.out_dir, result.presented = final, result.presented.moved(tmp, final)
    return result


def _analyse(
    cfg: AnalyzeConfig,
    run: Path,
    out_dir: Path,
    models: list[LoadedModel] | None,
    acts: Activations | None,
    traits: dict[str, Trait],
) -> AnalysisResult:
    t_all = time.perf_counter()
    ctx = open_run(cfg, run, out_dir, acts)
    series_check(ctx)
    ctx.models, ctx.traits = models, traits
    with ctx.timed("stats"):
        collect(ctx)
    with ctx.timed("table"):
        ctx.table = latent_table(ctx.cc, ctx.stats, ctx.names, cfg.rank, ctx.lens_idx).df
    if ctx.series is not None:
        with ctx.timed("trajectory"):
            series_table_step(ctx)
    write_table(ctx.df, ctx.out_dir)
    need_models = (
        cfg.evidence.baseline or cfg.splice.enabled or cfg.dashboards.enabled or int(ctx.df["is_candidate"].sum()) > 0
    )
    if ctx.models is None and need_models:
        with ctx.timed("load_models"):
            ctx.models = load_run_models(ctx.info, cfg.device)
    if ctx.models is not None:
        with_models(ctx)
    else:  # no candidate, no baseline, no splice: an empty candidate list, so the folder is complete
        atomic_write_json(ctx.out_dir / "candidates.json", [])
    if ctx.series is not None:
        with ctx.timed("trajectory_outputs"):
            series_output_step(ctx)
    ctx.timings["total"] = time.perf_counter() - t_all
    summary = make_summary(ctx)
    log.info("analysis done in %.1f s: %s", ctx.timings["total"], summary.class_counts)
    return AnalysisResult(ctx.out_dir, ctx.df, ctx.candidates, summary, Presented())
