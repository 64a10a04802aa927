"""Worker for tests/test_xc_ddp.py: one rank of a `torchrun --nproc_per_node=2` crosscoder training job.

Usage: torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py OUT_DIR STEPS ARCH [ARCH ...]
For each architecture, rank 0 writes OUT_DIR/ARCH/final/ through the trainer and every rank writes
OUT_DIR/ARCH/rank<r>.json (its BatchTopK threshold, final metrics and how many steps took the sparse path).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from crosscoder.xc import Crosscoder, CrosscoderConfig, LoggingConfig, TrainerConfig, train
from crosscoder.xc import loss as loss_mod
from crosscoder.xc.distributed import cleanup, init_distributed
from crosscoder.xc.synthetic import SyntheticPairs

DATA = SyntheticPairs(n_models=2, n_hooks=2, d_model=16, n_features=48, n_exclusive=6, batch_size=64, seed=3)


def setup(arch: str, steps: int) -> tuple[Crosscoder, TrainerConfig, LoggingConfig]:
    """The run both the 2-process job and the single-process reference train (same seed, same global batches).

    ``ARCH-ref`` is ARCH on the dense reference path (fast_path=False).
    """
    name, _, ref = arch.partition("-")
    cfg = CrosscoderConfig(
        architecture=name, fast_path=ref != "ref", n_latents=64, k=4, n_shared=4, n_models=2, n_hooks=2, d_model=16
    )
    cc = Crosscoder(cfg, seed=0)
    cc.scale_ML.copy_(DATA.scale_ML())
    if name == "l1":  # a sparse support (L0 ~2 of 64), so L1's sparse path runs, not only its dense hand-over
        with torch.no_grad():
            pre = cc.normalise(DATA.batch(-10)) @ cc.W_enc_XF
            cc.b_enc_F.copy_(-torch.quantile(pre, 1 - 2 / 64, dim=0))
    trainer = TrainerConfig(
        steps=steps, batch_size=64, lr=1e-3, warmup_steps=0, l1_warmup_steps=0, decay="none",
        log_every=1, checkpoint_every=0, dead_tokens=64, aux_k=8,
    )  # fmt: skip
    log = LoggingConfig(wandb_mode="disabled", progress=False, measure_mfu=False, hist_every=0)
    return cc, trainer, log


def count_sparse_steps() -> list[bool]:
    """Record, per training forward, whether the sparse path ran (L1 hands dense supports to the reference)."""
    ran: list[bool] = []
    real = loss_mod._sparse_forward

    def counted(cc: Crosscoder, x: torch.Tensor, k: int) -> loss_mod._Forward | None:
        out = real(cc, x, k)
        ran.append(out is not None)
        return out

    loss_mod._sparse_forward = counted
    return ran


def main() -> None:
    out_dir, steps, archs = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    torch.set_num_threads(1)
    ran = count_sparse_steps()
    dist = init_distributed("cpu")  # joined here, so train() reuses the group across runs
    try:
        for arch in archs:
            cc, trainer, log = setup(arch, steps)
            ran.clear()
            res = train(cc, DATA.batches_from, trainer, log, out_dir / arch)
            out = {"rank": dist.rank, "world": dist.world_size, "metrics": res.metrics}
            out["sparse_steps"] = sum(ran)
            out["threshold"] = None if cc.threshold is None else float(cc.threshold)
            out["select_restored"] = not {"select", "activate"} & set(vars(cc.sparsity))
            (out_dir / arch / f"rank{dist.rank}.json").write_text(json.dumps(out))
    finally:
        dist.owns_group = True
        cleanup(dist)


if __name__ == "__main__":
    main()
