"""Worker for tests/test_xc_ddp.py: one rank of a `torchrun --nproc_per_node=2` crosscoder training job.

Usage: torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py OUT_DIR STEPS ARCH [ARCH ...]
For each architecture, rank 0 writes OUT_DIR/ARCH/final/ through the trainer and every rank writes
OUT_DIR/ARCH/rank<r>.json (its BatchTopK threshold and final metrics).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from crosscoder.xc import Crosscoder, CrosscoderConfig, LoggingConfig, TrainerConfig, train
from crosscoder.xc.distributed import cleanup, init_distributed
from crosscoder.xc.synthetic import SyntheticPairs

DATA = SyntheticPairs(n_models=2, n_hooks=2, d_model=16, n_features=48, n_exclusive=6, batch_size=64, seed=3)


def setup(arch: str, steps: int) -> tuple[Crosscoder, TrainerConfig, LoggingConfig]:
    """The run both the 2-process job and the single-process reference train (same seed, same global batches)."""
    cfg = CrosscoderConfig(architecture=arch, n_latents=64, k=4, n_shared=4, n_models=2, n_hooks=2, d_model=16)
    cc = Crosscoder(cfg, seed=0)
    cc.scale_ML.copy_(DATA.scale_ML())
    trainer = TrainerConfig(
        steps=steps, batch_size=64, lr=1e-3, warmup_steps=0, l1_warmup_steps=0, decay="none",
        log_every=1, checkpoint_every=0, dead_tokens=64, aux_k=8,
    )  # fmt: skip
    log = LoggingConfig(wandb_mode="disabled", progress=False, measure_mfu=False, hist_every=0)
    return cc, trainer, log


def main() -> None:
    out_dir, steps, archs = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    torch.set_num_threads(1)
    dist = init_distributed("cpu")  # joined here, so train() reuses the group across runs
    try:
        for arch in archs:
            cc, trainer, log = setup(arch, steps)
            res = train(cc, DATA.batches_from, trainer, log, out_dir / arch)
            out = {"rank": dist.rank, "world": dist.world_size, "metrics": res.metrics}
            out["threshold"] = None if cc.threshold is None else float(cc.threshold)
            out["select_restored"] = "select" not in vars(cc.sparsity)
            (out_dir / arch / f"rank{dist.rank}.json").write_text(json.dumps(out))
    finally:
        dist.owns_group = True
        cleanup(dist)


if __name__ == "__main__":
    main()
