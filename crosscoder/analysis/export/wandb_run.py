"""The analysis's W&B run, linked to its training run: same project and group, named after it, job_type `analysis`.

`analysis_run_spec` reads the training run's `wandb.json` (`crosscoder.xc.tracking.WandbRef`) and decides:

* **mode**: `export.wandb_mode` when explicit; with `auto`, $WANDB_MODE, then the training run's mode, then offline;
* **project / entity / group**: `export.wandb_project` when given, else the training run's (same group, so a sweep's
  analyses sit with its jobs);
* **name**: `<training run name> [analysis]`;
* **config**: `train_run_id`, `train_run_path`, `train_run_name`, `crosscoder_artifact` (the reference that holds
  in every mode) plus the analysis folder, models and hooks.

`link_training_run` then declares the training run's crosscoder artifact as the analysis run's input
(`run.use_artifact`), which draws the lineage graph train -> crosscoder -> analysis in W&B. W&B cannot resolve an
artifact offline, so an offline analysis keeps the config reference only (docs/WANDB.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosscoder.xc.tracking import WandbRef, init_wandb, resolve_mode, short

if TYPE_CHECKING:
    from crosscoder.analysis.report.sweep import SweepJob

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "crosscoder"
"""The project of an analysis whose training run logged nothing to W&B."""


@dataclass
class AnalysisRunSpec:
    """Everything `wandb.init` needs for the analysis run, and the training run it refers to."""

    mode: str
    project: str
    entity: str | None
    group: str | None
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    train: WandbRef | None = None


def analysis_run_spec(
    analysis_dir: Path,
    run_dir: Path | None,
    *,
    mode: str = "auto",
    project: str | None = None,
    name: str | None = None,
    extra_config: dict[str, Any] | None = None,
) -> AnalysisRunSpec:
    """The analysis run's mode, project, group, name and config (see the module docstring)."""
    train = WandbRef.read(run_dir) if run_dir is not None and Path(run_dir).is_dir() else None
    resolved = resolve_mode(mode, fallback=train.mode if train else None, where="analyze.export.wandb_mode")
    run_name = train.name if train else (Path(run_dir).name if run_dir is not None else Path(analysis_dir).name)
    config: dict[str, Any] = {"analysis_dir": str(analysis_dir), "run_dir": str(run_dir) if run_dir else None}
    if train is not None:
        config.update(train_run_id=train.id, train_run_path=train.path(), train_run_name=train.name,
                      train_group=train.group, crosscoder_artifact=train.artifact)  # fmt: skip
    config.update(extra_config or {})
    return AnalysisRunSpec(
        mode=resolved,
        project=project or (train.project if train else DEFAULT_PROJECT),
        entity=train.entity if train else None,
        group=train.group if train else None,
        name=name or short(f"{run_name} [analysis]"),
        config=config,
        train=train,
    )


def start_analysis_run(spec: AnalysisRunSpec, analysis_dir: Path) -> Any:
    """`wandb.init` for the analysis (files under `<analysis_dir>/wandb/`)."""
    return init_wandb(
        project=spec.project,
        entity=spec.entity,
        group=spec.group,
        name=spec.name,
        job_type="analysis",
        mode=spec.mode,  # type: ignore[arg-type]
        dir=str(analysis_dir),
        config=spec.config,
    )


def link_training_run(run: Any, spec: AnalysisRunSpec) -> bool:
    """Use the training run's crosscoder artifact as the analysis's input (online only); True when linked.

    Offline, or when the training run logged no artifact, the config reference (`train_run_id`,
    `crosscoder_artifact`) is the link. Online, an artifact W&B does not know yet (its training run is still
    offline: `wandb sync` it first) is reported and skipped rather than failing the analysis.
    """
    ref = spec.train.artifact_path() if spec.train is not None else None
    if ref is None:
        return False
    if spec.mode != "online":
        log.info(
            "W&B %s mode: the analysis refers to %s by config only (use_artifact needs online mode)", spec.mode, ref
        )
        return False
    try:
        run.use_artifact(ref, type="crosscoder")
    except Exception as err:  # wandb raises CommError / ValueError variants for an unknown artifact
        log.warning("W&B could not resolve %s (%s); sync the training run first (docs/WANDB.md)", ref, err)
        return False
    return True


def log_sweep_to_wandb(sweep_dir: Path, jobs: list[SweepJob], mode: str = "auto", project: str | None = None) -> Any:
    """Log a sweep's summary (`crosscoder.analysis.report.sweep.write_sweep_summary`) as the W&B table `sweep` of a
    run with job_type `sweep-summary` in the sweep's group; the mode and project follow the jobs' wandb.json unless
    given. Returns the finished run, or None when W&B is disabled."""
    import wandb

    from crosscoder.analysis.report.sweep import SUMMARY_FILES, table_rows

    sweep_dir = Path(sweep_dir)
    refs = [r for j in jobs if (r := WandbRef.read(Path(j.run_dir))) is not None]
    first = refs[0] if refs else None
    resolved = resolve_mode(mode, fallback=first.mode if first else None, where="--wandb-mode")
    if resolved == "disabled":
        return None
    group = next((r.group for r in refs if r.group), None) or f"{sweep_dir.parent.name}/{sweep_dir.name}"
    run = init_wandb(project=project or (first.project if first else DEFAULT_PROJECT),
                     entity=first.entity if first else None, group=group, name=short(f"{group} summary"),
                     job_type="sweep-summary", mode=resolved, dir=str(sweep_dir),  # type: ignore[arg-type]
                     config={"sweep_dir": str(sweep_dir), "jobs": [j.job for j in jobs],
                             "job_runs": {j.job: j.wandb_id for j in jobs}})  # fmt: skip
    cols, rows = table_rows(jobs)
    html = (sweep_dir / SUMMARY_FILES[2]).read_text(encoding="utf-8")
    run.log(
        {
            "sweep": wandb.Table(columns=list[str | int](cols), data=rows),
            "sweep_summary": wandb.Html(html, inject=False),
        }
    )
    done = [j for j in jobs if j.fve_min is not None]
    run.summary.update({"n_jobs": len(jobs), "n_finished": sum(j.finished for j in jobs)})
    if done:
        best = max(done, key=lambda j: j.fve_min or 0.0)
        run.summary.update({"best_job": best.job, "best_name": best.name, "best_fve_min": best.fve_min})
    run.finish()
    return run
