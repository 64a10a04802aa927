"""Glue between the stages: models -> paired activations -> crosscoder training. Used by `train.py` and the demo.

It reads top to bottom: load and check the model set, harvest (or reuse) the activation cache, size the crosscoder
from the data, record what the run was trained on in `run.json`, then hand a plain batch iterator to the trainer.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosscoder.config import TrainConfig
from crosscoder.errors import ModelError
from crosscoder.io import atomic_write_json, read_json
from crosscoder.models.spec import ModelSpec
from crosscoder.runs import update_latest

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel
    from crosscoder.xc.distributed import DistInfo

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


def prepare_run_data(cfg: TrainConfig, dist: DistInfo | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """The run's activation cache (reused without loading any model, or harvested; by every rank under DDP) and
    the model records. See crosscoder.launch.rundata."""
    from crosscoder.launch.rundata import prepare_run_data as prepare
    from crosscoder.xc.distributed import DistInfo

    return prepare(cfg, dist or DistInfo())


def run_train(cfg: TrainConfig, run_dir: Path, *, prepared: tuple[Any, list[dict[str, Any]]] | None = None) -> Any:
    """Train a crosscoder on `cfg`'s model set; writes everything into `run_dir` and returns the TrainResult.

    `prepared` = (ActivationSet, model records) skips loading the models and harvesting: a caller that already holds
    the cache of exactly this model set (e.g. a prefix of a checkpoint series, `crosscoder.data.subset`) passes it.
    """
    from crosscoder.launch.preflight import preflight
    from crosscoder.xc.distributed import cleanup, init_distributed
    from crosscoder.xc.model import Crosscoder
    from crosscoder.xc.trainer import train

    dist = init_distributed(cfg.trainer.device)
    preflight(cfg, dist.world_size)  # GPUs, memory, batch split: one-line errors before any work
    run_dir.mkdir(parents=True, exist_ok=True)
    acts, records = prepared if prepared is not None else prepare_run_data(cfg, dist)
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
    batch_size = cfg.trainer.batch_size // dist.world_size  # the loader yields this rank's share of each global batch

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
    cleanup(dist)
    return result
