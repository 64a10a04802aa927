"""Hydra callback: when a `python train.py -m` sweep ends, write its summary table and log it to W&B.

Runs in the launching process after every job has finished (the local and submitit launchers wait for their jobs):
`crosscoder.analysis.report.sweep.write_sweep_summary` writes `sweep_summary.{json,csv,html}` into the sweep folder
and `log_sweep_to_wandb` logs the table in the sweep's W&B group, in the sweep's `logging.wandb_mode`
(docs/WANDB.md). A summary that cannot be made (no job finished) is reported in one line with the command that
makes it later; it never turns a finished sweep into a failure.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from crosscoder.errors import CrosscoderError

log = logging.getLogger("crosscoder.sweep")


class SweepSummary(Callback):
    """`on_multirun_end`: the sweep summary (see the module docstring)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from crosscoder.analysis.export.wandb_run import log_sweep_to_wandb
        from crosscoder.analysis.report.sweep import SUMMARY_FILES, write_sweep_summary

        sweep_dir = Path(str(config.hydra.sweep.dir))
        mode = str(config.get("logging", {}).get("wandb_mode", "auto"))
        try:
            jobs = write_sweep_summary(sweep_dir)
            log_sweep_to_wandb(sweep_dir, jobs, mode)
        except CrosscoderError as err:
            log.warning("no sweep summary (%s); make it later: python -m crosscoder.analysis sweep-summary %s",
                        err, sweep_dir)  # fmt: skip
            return
        print(f"sweep summary: {sweep_dir / SUMMARY_FILES[2]} ({len(jobs)} jobs)")
