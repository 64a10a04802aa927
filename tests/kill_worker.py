"""Worker for tests/test_xc_trainer.py's kill -9 test: trains the synthetic run of that test in RUN_DIR.

Usage: python tests/kill_worker.py RUN_DIR ARCH [STALL_AT]
With STALL_AT the batch iterator writes RUN_DIR.stalled and sleeps when it reaches that step, so the test can
SIGKILL the process at a known point (after the checkpoint of step 20, before the end).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from crosscoder.xc import Crosscoder, CrosscoderConfig, LoggingConfig, TrainerConfig, train
from crosscoder.xc.synthetic import SyntheticPairs

DATA = SyntheticPairs(n_models=2, n_hooks=1, d_model=16, n_features=48, n_exclusive=6, batch_size=128, seed=0)


def main() -> None:
    run_dir, arch = Path(sys.argv[1]), sys.argv[2]
    stall_at = int(sys.argv[3]) if len(sys.argv) > 3 else -1
    torch.set_num_threads(1)
    cfg = CrosscoderConfig(architecture=arch, n_latents=96, k=6, n_models=2, n_hooks=1, d_model=16)
    cc = Crosscoder(cfg, seed=0)
    cc.scale_ML.copy_(DATA.scale_ML())
    trainer = TrainerConfig(
        steps=40, batch_size=128, lr=3e-3, warmup_steps=5, l1_warmup_steps=5, log_every=10, checkpoint_every=10,
        dead_tokens=1280, aux_k=16, resume=True,
    )  # fmt: skip
    log = LoggingConfig(wandb_mode="disabled", progress=False, measure_mfu=False, hist_every=20)

    def batches_from(start: int) -> Iterator[torch.Tensor]:
        for step, x in enumerate(DATA.batches_from(start), start):
            if step == stall_at:
                Path(f"{run_dir}.stalled").write_text(str(step))
                time.sleep(600)
            yield x

    train(cc, batches_from, trainer, log, run_dir)


if __name__ == "__main__":
    main()
