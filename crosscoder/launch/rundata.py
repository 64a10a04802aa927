"""The activation data of a training run, for one process or every rank of a DDP job.

Order of work, so that nothing is done twice and nothing is loaded that is not needed:

1. Rank 0 resolves the model specs first (an ``organism:`` is built once, a GGUF converted once, weight hashes
   cached), then the other ranks follow.
2. From the models' fingerprints (hashes, config, tokenizer; no weights) rank 0 looks for the complete activation
   cache and tells every rank whether it found it. If so, every rank opens it and **no rank loads a model**.
3. Otherwise every rank loads the models where `crosscoder.models.placement` puts them (its own GPU under DDP) and
   the ranks harvest the cache together (crosscoder.data.distributed_harvest), each its share of the shards; one
   process harvests alone as before (crosscoder.data.api.prepare_activations).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import Sequence
from typing import Any

import torch

from crosscoder.config import TrainConfig
from crosscoder.data.api import ActivationSet, prepare_activations
from crosscoder.data.distributed_harvest import Ranks, harvest_distributed, open_complete_cache
from crosscoder.errors import ConfigError
from crosscoder.launch.preflight import check_model_memory
from crosscoder.models import check_model_set, load_model
from crosscoder.models.fingerprint import ModelIdentity, fingerprints
from crosscoder.models.placement import resolve_placement
from crosscoder.xc.distributed import DistInfo, barrier, broadcast_flag

log = logging.getLogger(__name__)


def model_records(models: Sequence[ModelIdentity]) -> list[dict[str, Any]]:
    """What run.json records of each model (its concrete spec, content hash and shape)."""
    return [
        {
            "name": m.name,
            "spec": dataclasses.asdict(m.spec),
            "content_hash": m.content_hash,
            "d_model": m.d_model,
            "n_layers": m.n_layers,
        }
        for m in models
    ]


def harvest_device(cfg: TrainConfig) -> str:
    """Where the harvest runs: data.device when set, else models.device."""
    return cfg.data.device or cfg.models.device


def prepare_run_data(cfg: TrainConfig, dist: DistInfo) -> tuple[ActivationSet, list[dict[str, Any]]]:
    """This rank's view of the run's activation cache (reused, or harvested by all ranks) and the model records."""
    data = cfg.data
    if data.on_the_fly and dist.enabled:
        raise ConfigError(
            f"data.on_the_fly: every one of the {dist.world_size} DDP processes would harvest all tokens into memory; "
            "set data.on_the_fly=false so the ranks share one disk cache"
        )
    placement = resolve_placement(
        harvest_device(cfg), cfg.models.dtype, cfg.models.device_map, dist.local_rank, dist.world_size
    )
    if not dist.is_main:
        barrier(dist)  # rank 0 resolves first (organisms built, GGUFs converted, hashes cached once)
    from crosscoder.pipeline import resolve_model_spec

    specs = [resolve_model_spec(s) for s in cfg.models.models]
    prints = None if data.on_the_fly else fingerprints(specs, placement.dtype_name)
    cached = open_complete_cache(prints, data) if prints is not None and dist.is_main else None
    if dist.is_main:
        barrier(dist)
    if broadcast_flag(cached is not None, dist):
        assert prints is not None
        acts = cached or open_complete_cache(prints, data, verify=False)
        assert acts is not None, "rank 0 found the activation cache but this rank does not see it"
        return acts, model_records(prints)
    check_model_memory(specs, placement)
    t0 = time.perf_counter()
    models = [load_model(spec, placement=placement) for spec in specs]
    check_model_set(models, data.hooks)
    log.info("loaded %d models in %.1f s (%s)", len(models), time.perf_counter() - t0, placement.describe())
    if dist.enabled:
        ranks = Ranks(dist.rank, dist.world_size, lambda: barrier(dist))
        acts = harvest_distributed(models, data, ranks)
    else:
        acts = prepare_activations(models, data)
    records = model_records(models)
    del models
    gc.collect()
    if placement.on_gpu:
        torch.cuda.empty_cache()
    return acts, records
