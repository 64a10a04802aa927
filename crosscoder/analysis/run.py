"""`run_analysis`: the whole analysis stage for one training run, writing <run_dir>/analysis/ (see docs/ANALYSIS_FORMAT.md).

Reads top to bottom: find and check the run, open its activation cache, one statistics pass over the cache, the
latent table (geometry, Latent Scaling, attribution, classes, ranking), then with the language models loaded: the
activation-difference baseline, evidence and labels for the candidates, steering / ablation, and splice metrics.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from crosscoder.analysis.causal.runner import mean_normalised_inputs
from crosscoder.analysis.causal.splice import splice_metrics
from crosscoder.analysis.config import AnalyzeConfig
from crosscoder.analysis.evidence.lens import LogitLens
from crosscoder.analysis.labels.candidates import build_candidates
from crosscoder.analysis.rank.attribution import persona_summary
from crosscoder.analysis.rank.table import build_table, class_counts, write_table
from crosscoder.analysis.stats.baseline import baseline_report, meandiff_cosines
from crosscoder.analysis.stats.collect import collect_stats
from crosscoder.analysis.stats.geometry import decoder_geometry
from crosscoder.analysis.stats.scaling import latent_scaling
from crosscoder.errors import ConfigError, DataError, ModelError
from crosscoder.io import atomic_write_json, read_json

log = logging.getLogger(__name__)


@dataclass
class AnalysisResult:
    """What `run_analysis` wrote, also returned in memory."""

    out_dir: Path
    table: pd.DataFrame
    candidates: list[dict[str, Any]]
    summary: dict[str, Any]


def resolve_run_dir(cfg: AnalyzeConfig) -> Path:
    """The run folder to analyse; refuses folders without a finished checkpoint (final/)."""
    if cfg.run_dir is None:
        from crosscoder.runs import latest_run

        return latest_run(Path(cfg.runs_root))
    run = Path(cfg.run_dir).expanduser()
    if not run.is_dir():
        raise DataError(
            f"run folder {run} does not exist; pass run_dir=<a folder under runs/> or omit it for the latest run"
        )
    if not (run / "final").is_dir():
        raise DataError(
            f"run folder {run} has no finished checkpoint (final/ is missing); finish or resume training (trainer.resume=true) first"
        )
    if not (run / "run.json").is_file():
        raise DataError(f"run folder {run} has no run.json (models, hooks, cache); it was not written by train.py")
    return run


def load_crosscoder(run: Path, device: str) -> Any:
    from crosscoder.xc.model import Crosscoder

    return Crosscoder.load(run / "final", device=device)


def open_activations(cfg: AnalyzeConfig, info: dict[str, Any], cc: Any) -> Any:
    """Open the run's activation cache (or cfg.activations) and check it matches the crosscoder."""
    from crosscoder.data.api import ActivationSet

    path = cfg.activations or info.get("activations")
    if not path:
        raise DataError("run.json records no activation cache (on-the-fly run?); pass activations=<cache folder>")
    if not Path(path).is_dir():
        raise DataError(f"activation cache {path} not found; pass activations=<cache folder> (it may have moved)")
    acts = ActivationSet.open(path, verify=False)
    check_activations(acts, info, cc)
    return acts


def check_activations(acts: Any, info: dict[str, Any], cc: Any) -> None:
    c = cc.cfg
    names = info.get("model_names") or acts.model_names
    if list(acts.model_names) != list(names) or len(acts.model_names) != c.n_models:
        raise DataError(
            f"activation cache holds models {list(acts.model_names)} but the crosscoder was trained on {list(names)}; pass the run's cache"
        )
    if (
        list(acts.hooks) != list(info.get("hooks", acts.hooks))
        or len(acts.hooks) != c.n_hooks
        or acts.d_model != c.d_model
    ):
        raise DataError(
            f"activation cache hooks {list(acts.hooks)} / d_model {acts.d_model} do not match the crosscoder ({c.n_hooks} hooks, d_model {c.d_model})"
        )


def load_models(info: dict[str, Any], device: str) -> list[Any]:
    """Load the run's models and refuse any whose weights changed since training."""
    from crosscoder.models import ModelSpec, load_model

    models = []
    for i, spec in enumerate(info["models"]):
        m = load_model(ModelSpec(**spec), device=device)
        want = (info.get("content_hashes") or [None] * len(info["models"]))[i]
        if want and m.content_hash != want:
            raise ModelError(
                f"model {m.name} ({spec['source']}) is not the one the crosscoder was trained on (weights changed); restore it or retrain"
            )
        models.append(m)
    return models


def select_traits(cfg: AnalyzeConfig, d_model: int) -> dict[str, Any]:
    from crosscoder.personas.traits import load_traits

    traits = load_traits(list(cfg.trait_dirs), include_shipped=cfg.include_shipped_traits)
    if cfg.traits:
        unknown = [t for t in cfg.traits if t not in traits]
        if unknown:
            raise ConfigError(f"analyze.traits: unknown trait {unknown[0]!r}; known: {', '.join(sorted(traits))}")
        traits = {t: traits[t] for t in cfg.traits}
    return traits


def lens_hook_index(cfg: AnalyzeConfig, hooks: list[str]) -> int:
    if cfg.lens_hook is None:
        return len(hooks) - 1
    if cfg.lens_hook not in hooks:
        raise ConfigError(f"analyze.lens_hook: {cfg.lens_hook!r} is not one of the run's hooks {hooks}")
    return hooks.index(cfg.lens_hook)


def run_analysis(cfg: AnalyzeConfig, *, models: list[Any] | None = None, acts: Any = None) -> AnalysisResult:
    """Analyse a training run; `models` / `acts` may be passed pre-loaded (tests, notebooks)."""
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    run = resolve_run_dir(cfg)
    info = read_json(run / "run.json")
    cc = load_crosscoder(run, cfg.device)
    names = list(info.get("model_names") or [m["name"] or f"m{i}" for i, m in enumerate(info["models"])])
    acts = acts if acts is not None else open_activations(cfg, info, cc)
    check_activations(acts, info, cc)
    hooks = list(acts.hooks)
    lens_idx = lens_hook_index(cfg, hooks)
    out_dir = Path(cfg.out_dir).expanduser() if cfg.out_dir else run / "analysis"
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("analysing %s (%d latents, models %s, hooks %s) -> %s", run, cc.cfg.n_latents, names, hooks, out_dir)

    t0 = time.perf_counter()
    control = None
    if cfg.control_activations:
        from crosscoder.analysis.stats.control import open_control

        control = open_control(cfg.control_activations, acts)
        log.info("control fine-tune: %s (its attribution is set aside in the score)", cfg.control_activations)
    st = collect_stats(cc, acts, max_rows=cfg.max_rows, batch_size=cfg.batch_size, first_assistant_tokens=cfg.first_assistant_tokens,
                       top_k=4 * cfg.n_top_examples, fast=cfg.fast_path, device=cfg.device, control=control)  # fmt: skip
    timings["stats"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    geo = decoder_geometry(cc, names, cfg.exclusive_threshold, cfg.shifted_cosine)
    sc = latent_scaling(geo, st, cfg.nu_err_max, cfg.nu_recon_max)
    df = build_table(
        geo,
        st,
        sc,
        dead_max_freq=cfg.dead_max_freq,
        exclusivity_weight=cfg.exclusivity_weight,
        n_candidates=cfg.n_candidates,
    )
    W_raw_MFX = (
        (cc.W_dec_FMLD.detach() / cc.scale_ML[None, :, :, None])
        .permute(1, 0, 2, 3)
        .reshape(len(names), cc.cfg.n_latents, -1)
        .cpu()
    )
    for key, col in meandiff_cosines(
        st, W_raw_MFX[-1] - W_raw_MFX[0], cc.cfg.n_hooks, cc.cfg.d_model, lens_idx
    ).items():
        df.insert(df.columns.get_loc("score"), key, col)
    timings["table"] = time.perf_counter() - t0
    write_table(df, out_dir)

    need_models = cfg.do_baseline or cfg.do_splice or int(df["is_candidate"].sum()) > 0
    if models is None and need_models:
        t0 = time.perf_counter()
        models = load_models(info, cfg.device)
        timings["load_models"] = time.perf_counter() - t0
    candidates: list[dict[str, Any]] = []
    baseline: dict[str, Any] | None = None
    if models is not None:
        if [m.d_model for m in models] != [cc.cfg.d_model] * len(models):
            raise ModelError(
                f"models have d_model {[m.d_model for m in models]} but the crosscoder expects {cc.cfg.d_model}"
            )
        if cfg.do_baseline:
            t0 = time.perf_counter()
            baseline = baseline_report(st, [LogitLens(m) for m in models], names, hooks, lens_idx, cfg.logit_lens_k)
            atomic_write_json(out_dir / "baseline.json", baseline)
            timings["baseline"] = time.perf_counter() - t0
        traits = select_traits(cfg, cc.cfg.d_model) if cfg.do_labels else {}
        candidates = build_candidates(
            cfg,
            df,
            st,
            cc,
            acts,
            models,
            hooks,
            lens_idx,
            traits,
            list(cfg.persona_vectors),
            timings,
            mean_normalised_inputs(st, cc),
        )
        atomic_write_json(out_dir / "candidates.json", candidates)
        write_table(df, out_dir)  # with labels
        if cfg.do_splice:
            t0 = time.perf_counter()
            atomic_write_json(
                out_dir / "splice.json",
                splice_metrics(cc, models, hooks, acts, cfg.splice_tokens, cfg.splice_batch_size),
            )
            timings["splice"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    summary = make_summary(cfg, run, out_dir, info, names, hooks, lens_idx, cc, st, df, candidates, timings)
    atomic_write_json(out_dir / "summary.json", summary)
    log.info("analysis done in %.1f s: %s", timings["total"], summary["class_counts"])
    return AnalysisResult(out_dir, df, candidates, summary)


def make_summary(cfg: AnalyzeConfig, run: Path, out_dir: Path, info: dict[str, Any], names: list[str], hooks: list[str], lens_idx: int,
                 cc: Any, st: Any, df: pd.DataFrame, candidates: list[dict[str, Any]], timings: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    fve = st.fve_M()
    artifacts = df["ls_artifact"].value_counts().to_dict()
    return {
        "run_dir": str(run),
        "out_dir": str(out_dir),
        "models": names,
        "hooks": hooks,
        "lens_hook": hooks[lens_idx],
        "architecture": cc.cfg.architecture,
        "n_latents": int(cc.cfg.n_latents),
        "n_tokens": int(st.count_S[0]),
        "control_activations": cfg.control_activations,
        "fve": {n: float(fve[m]) for m, n in enumerate(names)},
        "fve_run": info.get("fve"),
        "class_counts": class_counts(df),
        "artifacts": {k: int(v) for k, v in artifacts.items() if k},
        "n_eligible": int((df["rank"] > 0).sum()),
        "n_candidates": len(candidates) if candidates else int(df["is_candidate"].sum()),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "personas": persona_summary(candidates),
        "top_candidates": [
            {
                k: c.get(k)
                for k in (
                    "latent",
                    "rank",
                    "class",
                    "score",
                    "rel_norm",
                    "cos",
                    "label",
                    "label_confidence",
                    "best_trait",
                    "runner_up",
                )
            }
            for c in candidates[:10]
        ],
        "config": dataclasses.asdict(cfg),
        "torch_threads": torch.get_num_threads(),
    }
