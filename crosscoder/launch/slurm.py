"""Slurm sweeps: a Hydra callback that refuses a Slurm launcher where Slurm is missing, before anything is submitted.

``python train.py -m hydra/launcher=slurm ...`` hands every sweep point to submitit, which calls ``sbatch``. Without
Slurm on the submitting machine that fails deep inside submitit, after the sweep folder was made. `LauncherCheck`
is registered in configs/config.yaml (``hydra.callbacks``) and runs once in the submitting process when a multirun
starts: with the Slurm launcher selected and no ``sbatch`` on PATH it prints one line naming the fix and exits 2.

Inside a job, a step with several tasks (``hydra.launcher.tasks_per_node > 1``, or ``srun --ntasks=N``) trains with
DDP through Slurm's own environment (crosscoder.xc.distributed.slurm_dist_env); nothing here is needed for that.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from crosscoder.errors import EXIT_USER_ERROR

SLURM_TARGET_SUFFIX = "SlurmLauncher"


def slurm_problem(launcher_target: str | None) -> str | None:
    """Why the selected launcher cannot submit from this machine, or None when it can (or is not Slurm)."""
    if not launcher_target or not launcher_target.endswith(SLURM_TARGET_SUFFIX):
        return None
    if shutil.which("sbatch") is None:
        return (
            "hydra/launcher=slurm: no sbatch on PATH, so the sweep cannot be submitted to Slurm; run it on a Slurm "
            "login node, use hydra/launcher=local (or no launcher) on this machine, or start a single-node Slurm "
            "with scripts/slurm_local.sh (as root)"
        )
    return None


class LauncherCheck(Callback):
    """Refuse, in one line and before any job is made, a multirun whose launcher cannot work here."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.get("launcher") or {}
        problem = slurm_problem(launcher.get("_target_"))
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR)
