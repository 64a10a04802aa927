"""Checks a training job makes before any work: the devices it names exist, the batch splits over its ranks, and
what it will load fits the memory the plan computes (crosscoder.plan). Each failure is one line naming the fix."""

from __future__ import annotations

import logging

import torch

from crosscoder.config import TrainConfig
from crosscoder.errors import ConfigError
from crosscoder.models.placement import Placement, check_gpu
from crosscoder.models.spec import ModelSpec

log = logging.getLogger(__name__)
GIB = 1024**3
HEADROOM = 0.9
"""Share of a device's memory a plan may use (the rest: CUDA context, allocator fragmentation, the OS)."""


def available_ram() -> int:
    """Bytes of RAM available to a new allocation (MemAvailable), or the total when /proc/meminfo is missing."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def device_memory(device: str, spread: bool = False) -> int:
    """Bytes a model placed on `device` may use: the GPU's memory (all visible GPUs when `spread`), else free RAM."""
    if not device.startswith("cuda"):
        return available_ram()
    if spread:
        return sum(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    index = int(device.split(":")[1]) if ":" in device else 0
    return int(torch.cuda.get_device_properties(index).total_memory)


def check_model_memory(specs: list[ModelSpec], placement: Placement) -> None:
    """Refuse a model set whose weights do not fit where `placement` puts them (every model is resident at once)."""
    from crosscoder.plan import model_shapes

    try:
        shapes = model_shapes(specs)
    except ConfigError as err:  # a model without a readable config: loading it will tell
        log.info("memory check skipped: %s", err)
        return
    need = sum(s.weight_bytes(placement.dtype) for s in shapes)
    have = device_memory(placement.device, spread=placement.device_map is not None)
    if need <= HEADROOM * have:
        return
    dtype = str(placement.dtype).removeprefix("torch.")
    where = f"{placement.device} ({'all visible GPUs' if placement.device_map else 'one device'})"
    if placement.on_gpu and placement.device_map:
        fix = "use more or larger GPUs, or smaller models"
    elif placement.on_gpu:
        fix = "spread each model over the node's GPUs with models.device_map=auto, or use a larger GPU"
    else:
        fix = "run on a GPU (models.device=cuda, bfloat16 by default) or diff smaller models"
    raise ConfigError(
        f"models: the {len(shapes)} models need {need / GIB:.1f} GiB of {dtype} weights but {where} has "
        f"{have / GIB:.1f} GiB{' free' if not placement.on_gpu else ''} (python -m crosscoder.plan shows the plan); {fix}"
    )


def check_crosscoder_memory(cfg: TrainConfig, d_model: int, world_size: int) -> None:
    """Refuse a crosscoder whose weights, gradients, Adam state and batch do not fit the trainer's device."""
    from crosscoder.xc.architectures import ARCHITECTURES

    xc = cfg.crosscoder
    d_in = len(cfg.models.models) * len(cfg.data.hooks) * d_model
    params = 2 * xc.n_latents * d_in + xc.n_latents + d_in
    sparse = xc.fast_path and ARCHITECTURES[xc.architecture].uses_k
    local = max(1, cfg.trainer.batch_size // world_size)
    need = 16 * params + local * 4 * (4 * d_in + (2 if sparse else 4) * xc.n_latents)
    have = device_memory(cfg.trainer.device)
    if need > HEADROOM * have:
        raise ConfigError(
            f"crosscoder.n_latents: {xc.n_latents:,} latents over {d_in:,} inputs need {need / GIB:.1f} GiB for "
            f"weights, gradients, Adam state and a batch but {cfg.trainer.device} has {have / GIB:.1f} GiB; "
            "lower crosscoder.n_latents or trainer.batch_size, or train on a larger GPU"
        )


def preflight(cfg: TrainConfig, world_size: int) -> None:
    """Every check that needs no model loaded (GPU presence, batch split, crosscoder memory)."""
    harvest = cfg.data.device or cfg.models.device
    check_gpu(harvest, "data.device" if cfg.data.device else "models.device")
    check_gpu(cfg.trainer.device, "trainer.device")
    if cfg.trainer.batch_size % world_size:
        raise ConfigError(
            f"trainer.batch_size: {cfg.trainer.batch_size} does not split over {world_size} DDP processes; "
            f"use a multiple of {world_size}"
        )
    from crosscoder.plan import model_shapes

    try:
        d_model = model_shapes(list(cfg.models.models[:1]))[0].d_model
    except ConfigError as err:
        log.info("crosscoder memory check skipped: %s", err)
        return
    check_crosscoder_memory(cfg, d_model, world_size)
