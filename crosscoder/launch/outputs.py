"""A Hydra callback that checks where a train.py / analyze.py run will write before Hydra creates anything there.

Hydra makes the run folder (`hydra.run.dir`, or `hydra.sweep.dir` for a multirun) and writes `.hydra/` into it
before the task starts: a folder under a file or an unwritable location used to end in a Hydra traceback, and a
train.py run pointed at a finished or busy run folder rewrote its `.hydra/` config before being refused. `OutputCheck`
(registered under `hydra.callbacks` in configs/config.yaml and configs/analyze.yaml) refuses those in one line with
exit status 2, before Hydra writes anything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from crosscoder.errors import EXIT_USER_ERROR, CrosscoderError
from crosscoder.runs import check_output_dir, check_run_state, check_unlocked


def check_run_location(config: DictConfig, folder: str, multirun: bool) -> None:
    """The checks `OutputCheck` makes (a CrosscoderError when one fails)."""
    what = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    check_output_dir(folder, f"{what} (the run folder)")
    trainer = config.get("trainer")
    if not multirun and trainer is not None:
        check_run_state(Path(folder), bool(trainer.get("resume")), bool(trainer.get("overwrite")))
        if _launch_rank() == 0:  # under torchrun / srun, rank 0 holds the lock the other ranks would see
            check_unlocked(Path(folder))


def _launch_rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0)


class OutputCheck(Callback):
    """Refuse, in one line and before Hydra writes anything, a run folder that cannot or must not be written."""

    def _check(self, config: DictConfig, folder: str, multirun: bool) -> None:
        try:
            check_run_location(config, folder, multirun)
        except CrosscoderError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, str(config.hydra.run.dir), multirun=False)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, str(config.hydra.sweep.dir), multirun=True)
