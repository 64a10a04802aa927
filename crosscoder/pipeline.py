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
from typing import TYPE_CHECKING, Any

from crosscoder.config import TrainConfig
from crosscoder.errors import ModelError
from crosscoder.io import atomic_write_json, read_json
from crosscoder.models.spec import ModelSpec
from crosscoder.runs import update_latest

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel

log = logging.getLogger(__name__)


def resolve_model_spec(spec: ModelSpec) -> ModelSpec:
    """The concrete spec behind an ``organism:<name>`` reference (the organism is built on first use and cached);
    any other spec unchanged. The model loader only reads concrete specs: organisms live in `crosscoder.personas`,
    a layer above it."""
    if spec.resolved_kind() != "organism":
        return spec
    name = spec.source.split(":", 1)[1] if ":" in spec.source else spec.source
    if not name:
        raise ModelError("model.source 'organism:' has no name; use e.g. organism:demo")
    from crosscoder.personas.organisms import resolve_organism

    concrete = resolve_organism(name)
    return dataclasses.replace(concrete, name=spec.name or concrete.name or f"organism:{name}", backend=spec.backend)


def load_models(specs: list[ModelSpec], device: str = "cpu") -> list[LoadedModel]:
    """Load every spec (organism references resolved first) as a `LoadedModel` on `device`."""
    from crosscoder.models import load_model

    return [load_model(resolve_model_spec(spec), device=device) for spec in specs]


def spec_dict(spec: ModelSpec) -> dict[str, Any]:
    """A ModelSpec as a JSON-ready dict."""
    return dataclasses.asdict(spec)


def prepare_run_data(cfg: TrainConfig) -> tuple[Any, list[dict[str, Any]]]:
    """Load the model set, check it, and harvest or reuse its activation cache. Returns (ActivationSet, model records)."""
    from crosscoder.data.api import prepare_activations
    from crosscoder.models import check_model_set

    t0 = time.perf_counter()
    models = load_models(cfg.models.models, device=cfg.models.device)
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
        update_latest(run_dir)
    return result
