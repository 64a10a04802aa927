"""The trajectory steps of `run_analysis` on a checkpoint series (a run over base -> c1 -> ... -> cN, 3+ models).

- :func:`series_table_step` (after the latent table, before the candidate steps): the series pass over the cache
  (`crosscoder.analysis.trajectory.stats`); per-checkpoint columns in the latent table (``freq_on_<model>``,
  ``attr_series_<model>`` beside the existing ``dec_norm_<model>`` and ``cos_<base>__<model>``), the series score
  (``series_score``: the largest attribution of any checkpoint's shift, ``peak_at``: that checkpoint, ``series_rank``)
  and up to ``trajectory.n_candidates`` latents added to the candidates for it, so a persona that peaked before the
  last checkpoint is labelled and steered like the others.
- :func:`series_output_step` (after the candidate steps): every trait's signal per checkpoint (the persona-vector
  projection of the mean shift from the base, reconstructed and true), ``trajectory.json``, and ``forecast.json``:
  per latent and per trait the forecast at the next checkpoint, and the behavioural forecast when the series'
  measured behaviour is known (`crosscoder.personas.organisms.behaviour`). The crosscoder is the run's, fitted on
  these checkpoints only; actual values are filled in where the behaviour record has the next checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crosscoder.analysis.trajectory.stats import SeriesStats, add_trait_signals, series_pass
from crosscoder.io import atomic_write_json

if TYPE_CHECKING:
    import torch

    from crosscoder.analysis.run.context import AnalysisContext
    from crosscoder.models.load import LoadedModel

log = logging.getLogger(__name__)

TRAJECTORY_FILE = "trajectory.json"
FORECAST_FILE = "forecast.json"


@dataclass
class SeriesAnalysis:
    """What the trajectory steps keep between the table and the outputs."""

    steps: list[float]
    steps_source: str
    """given | recorded (by the organism build) | order (no record: the model order)."""
    stats: SeriesStats | None = None
    """Filled by `series_table_step`."""


def run_steps(info: dict[str, Any], names: list[str], given: list[float]) -> tuple[list[float], str]:
    """The series' step labels: given, else recorded by the organism builds, else the model order (logged)."""
    from crosscoder.analysis.trajectory.forecast import check_steps
    from crosscoder.analysis.trajectory.series import series_steps
    from crosscoder.errors import ConfigError
    from crosscoder.models.spec import ModelSpec

    specs = [ModelSpec(**s) for s in info["models"]]
    if given:
        return series_steps(specs, names, list(given)), "given"
    try:
        return series_steps(specs, names), "recorded"
    except ConfigError as err:
        if "no recorded training step" not in str(err):
            raise
        log.warning("%s; using the model order as steps", err)
        return check_steps(list(range(len(names))), names=names).tolist(), "order"


def add_series_columns(df: pd.DataFrame, stats: SeriesStats) -> None:
    """Per-checkpoint columns and the series score / peak / rank (in place)."""
    names = stats.model_names
    for k, name in enumerate(names):
        df[f"freq_on_{name}"] = stats.freq_on_FK[:, k].astype(np.float32)
    best_FK = np.fmax(*(np.nan_to_num(a, nan=-np.inf) for a in stats.attr_FK.values()))
    for k, name in enumerate(names[1:], start=1):
        df[f"attr_series_{name}"] = best_FK[:, k].astype(np.float32)
    score = np.clip(stats.series_attr_F, 0, None)
    df["series_score"] = score.astype(np.float32)
    df["peak_at"] = np.array([names[k] for k in stats.peak_K], dtype=object)
    eligible = (score > 0) & (df["class"].to_numpy() != "dead") & (df["ls_artifact"].to_numpy() == "")
    idx = np.flatnonzero(eligible)
    order = idx[np.argsort(-score[idx], kind="stable")]
    rank = np.zeros(len(df), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    df["series_rank"] = rank


def add_series_candidates(df: pd.DataFrame, n: int) -> list[int]:
    """Make the `n` best series-ranked latents that are not candidates yet candidates, ranked after every latent the
    model-diff ranking ranked (in series order); returns them."""
    extra = df[(df["series_rank"] > 0) & ~df["is_candidate"]].sort_values("series_rank").head(n)
    start = int(df["rank"].max())
    for i, row in enumerate(extra.index, start=1):
        df.loc[row, "rank"] = start + i
        df.loc[row, "is_candidate"] = True
    return [int(j) for j in extra["latent"]]


def series_check(ctx: AnalysisContext) -> None:
    """Before any expensive work: a run of 3+ models (with `trajectory.enabled`) is a checkpoint series whose step
    labels must increase and which must have at least `trajectory.window` checkpoints to forecast from."""
    from crosscoder.analysis.trajectory.forecast import check_window

    cfg = ctx.cfg.trajectory
    if len(ctx.names) < 3 or not cfg.enabled:
        return
    steps, source = run_steps(ctx.info, ctx.names, cfg.steps)
    check_window(len(steps), cfg.window)
    ctx.series = SeriesAnalysis(steps, source)


def series_table_step(ctx: AnalysisContext) -> None:
    """The series pass and its table columns and candidates (after `series_check` found a series)."""
    if ctx.series is None:
        return
    cfg = ctx.cfg
    stats = series_pass(ctx.cc, ctx.acts, ctx.names, ctx.lens_idx, cfg.stats.batch_size, cfg.stats.max_rows)
    add_series_columns(ctx.df, stats)
    added = add_series_candidates(ctx.df, cfg.trajectory.n_candidates)
    log.info("checkpoint series %s at steps %s (%s); %d series candidates added", ctx.names, ctx.series.steps,
             ctx.series.steps_source, len(added))  # fmt: skip
    ctx.series.stats = stats


def persona_units(base: LoadedModel, traits: dict[str, Any], hook: str, questions: int) -> dict[str, torch.Tensor]:
    """Unit persona vectors of every trait in the base model at `hook` (examples when the trait has them)."""
    from crosscoder.personas.vectors import compute_persona_vectors

    out = {}
    for name, trait in traits.items():
        src = "examples" if trait.examples else "prompts"
        v = compute_persona_vectors(base, trait, source=src, max_questions=questions or None).for_hook(hook)
        out[name] = v / v.norm().clamp_min(1e-12)
    return out


def _base_model(ctx: AnalysisContext) -> LoadedModel:
    if ctx.models:
        return ctx.models[0]
    from crosscoder.models import ModelSpec, load_model

    return load_model(ModelSpec(**ctx.info["models"][0]), device=ctx.cfg.device)


def series_output_step(ctx: AnalysisContext) -> None:
    """Trait signals, trajectory.json and forecast.json of a series analysed by `series_table_step`."""
    from crosscoder.analysis.run.inputs import select_traits
    from crosscoder.analysis.trajectory.outputs import forecast_record, trajectory_record

    if ctx.series is None or ctx.series.stats is None:
        return
    s, st, cfg = ctx.series, ctx.series.stats, ctx.cfg
    traits = ctx.traits or select_traits(cfg)
    add_trait_signals(st, ctx.cc, persona_units(_base_model(ctx), traits, st.hook, cfg.labels.persona_questions))
    traj = trajectory_record(s.steps, s.steps_source, st, ctx.df, cfg.trajectory.top_latents)
    atomic_write_json(ctx.out_dir / TRAJECTORY_FILE, traj)
    behaviour = _behaviour(ctx, s.steps)
    atomic_write_json(ctx.out_dir / FORECAST_FILE, forecast_record(s.steps, st, traj, cfg.trajectory, behaviour))


def _behaviour(ctx: AnalysisContext, steps: list[float]) -> Any:
    """The series' recorded behaviour (SeriesBehaviour) if known and covering every checkpoint of the run."""
    from crosscoder.personas.organisms.series import behaviour_beside, read_behaviour_file

    path = ctx.cfg.trajectory.behaviour
    beh = (
        read_behaviour_file(Path(path))
        if path
        else behaviour_beside([m.get("adapter") for m in ctx.info["models"][1:]])
    )
    if beh is None:
        return None
    have = set(beh.steps())
    if not set(steps) <= have:
        log.warning(
            "the behaviour record lacks steps %s of this run; no behavioural forecast", sorted(set(steps) - have)
        )
        return None
    return beh
