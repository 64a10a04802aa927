"""Glue between the stages: models -> paired activations -> crosscoder training. Used by `train.py` and the demo.

It reads top to bottom: load and check the model set, harvest (or reuse) the activation cache, size the crosscoder
from the data, record what the run was trained on in `run.json`, then hand a plain batch iterator to the trainer.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from pathlib import Path
from typing import Any

from crosscoder.config import TrainConfig
from crosscoder.errors import DataError
from crosscoder.io import atomic_write_json, read_json

log = logging.getLogger(__name__)

RUNS_ROOT = Path("runs")


def spec_dict(spec: Any) -> dict[str, Any]:
    """A ModelSpec as a JSON-ready dict."""
    return dataclasses.asdict(spec)


def prepare_run_data(cfg: TrainConfig) -> tuple[Any, list[dict[str, Any]]]:
    """Load the model set, check it, and harvest or reuse its activation cache. Returns (ActivationSet, model records)."""
    from crosscoder.data.api import prepare_activations
    from crosscoder.models import check_model_set, load_model

    t0 = time.perf_counter()
    models = [load_model(spec, device=cfg.models.device) for spec in cfg.models.models]
    check_model_set(models, cfg.data.hooks)
    log.info("loaded %d models in %.1f s: %s", len(models), time.perf_counter() - t0, [m.name for m in models])
    records = [
        {
            "name": m.name,
            "spec": spec_dict(m.spec),
            "content_hash": m.content_hash,
            "d_model": m.d_model,
            "n_layers": m.n_layers,
        }
        for m in models
    ]
    acts = prepare_activations(models, cfg.data)
    del models
    gc.collect()
    return acts, records


def run_train(cfg: TrainConfig, run_dir: Path, *, prepared: tuple[Any, list[dict[str, Any]]] | None = None) -> Any:
    """Train a crosscoder on `cfg`'s model set; writes everything into `run_dir` and returns the TrainResult.

    `prepared` = (ActivationSet, model records) skips loading the models and harvesting: a caller that already holds
    the cache of exactly this model set (e.g. a prefix of a checkpoint series, `crosscoder.data.subset`) passes it.
    """
    from crosscoder.xc.distributed import barrier, init_distributed
    from crosscoder.xc.model import Crosscoder
    from crosscoder.xc.trainer import train

    run_dir.mkdir(parents=True, exist_ok=True)
    dist = init_distributed(cfg.trainer.device)
    if prepared is None and dist.rank != 0:
        barrier(dist)  # rank 0 harvests (or verifies) the cache first; the others then reuse it
    acts, records = prepared if prepared is not None else prepare_run_data(cfg)
    if prepared is None and dist.rank == 0 and dist.enabled:
        barrier(dist)
    xc_cfg = dataclasses.replace(cfg.crosscoder, n_models=len(records), n_hooks=len(acts.hooks), d_model=acts.d_model)
    cc = Crosscoder(xc_cfg, seed=cfg.trainer.seed)
    cc.scale_ML.copy_(acts.scale_ML)
    run_info = {
        "name": cfg.name,
        "models": [r["spec"] for r in records],
        "model_names": [r["name"] for r in records],
        "content_hashes": [r["content_hash"] for r in records],
        "hooks": list(acts.hooks),
        "d_model": acts.d_model,
        "activations": str(acts.path) if acts.path is not None else None,
        "n_rows": acts.n_rows,
    }
    if dist.rank == 0:
        atomic_write_json(run_dir / "run.json", run_info)
    batch_size = cfg.trainer.batch_size

    def batches_from(step: int) -> Any:
        return acts.batches(
            batch_size, seed=cfg.trainer.seed, start_step=step, rank=dist.rank, world_size=dist.world_size
        )

    trainer_info = {"models": run_info["model_names"], "hooks": run_info["hooks"], "name": cfg.name}
    result = train(cc, batches_from, cfg.trainer, cfg.logging, run_dir, run_info=trainer_info)
    if dist.rank == 0:
        info = read_json(run_dir / "run.json")
        info["fve"] = result.fve()
        info["train_metrics"] = result.metrics
        atomic_write_json(run_dir / "run.json", info)
        _update_latest(run_dir)
    return result


def _update_latest(run_dir: Path) -> None:
    """Point runs/latest at this run (a text file, so it works on every file system)."""
    from crosscoder.io import atomic_write_text

    atomic_write_text(RUNS_ROOT / "LATEST", str(run_dir.resolve()) + "\n")


def latest_run(root: Path = RUNS_ROOT) -> Path:
    """The most recent finished run folder: runs/LATEST if valid, else the newest folder holding final/."""
    marker = root / "LATEST"
    if marker.is_file():
        candidate = Path(marker.read_text().strip())
        if (candidate / "final").is_dir():
            return candidate
    finished = sorted((p.parent for p in root.glob("**/final") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not finished:
        raise DataError(f"no finished training run under {root}/; run `python train.py` first or pass run_dir=<folder>")
    return finished[-1]


def run_analyze(cfg: Any) -> Any:
    """Analyse a run (crosscoder.analysis), then write the report, plots, SAELens export and W&B logs; print a summary."""
    from crosscoder.analysis.export import export_saelens
    from crosscoder.analysis.plots import make_plots
    from crosscoder.analysis.report import write_report
    from crosscoder.analysis.run import run_analysis
    from crosscoder.analysis.wandb_log import log_to_wandb

    result = run_analysis(cfg)
    out = Path(result.out_dir)
    plots = make_plots(out)
    report = write_report(out)
    exported = export_saelens(Path(result.summary["run_dir"]), out / "saelens") if cfg.export_saelens else []
    log_to_wandb(out, None, cfg.wandb_mode, project=cfg.wandb_project)
    print(f"report:  {report}")
    print(f"plots:   {len(plots)} files in {out / 'plots'}")
    print(f"SAELens: {len(exported)} SAE folders in {out / 'saelens'}")
    fve = result.summary.get("fve", {})
    print("FVE:     " + ", ".join(f"{k} {v:.3f}" for k, v in fve.items()))
    print(f"classes: {result.summary.get('class_counts')}")
    return result
