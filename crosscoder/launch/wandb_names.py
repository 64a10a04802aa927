"""W&B names a researcher can navigate, from what Hydra knows about a `python train.py` job.

* **name**: the job's command-line overrides (`crosscoder=l1,trainer.lr=0.0001`), the `logging` ones left out; in
  a sweep only the swept ones (those with several values in the sweep's `multirun.yaml`), so the jobs of
  `-m crosscoder=batchtopk,l1 data=cluster` are `crosscoder=batchtopk` and `crosscoder=l1`; a job without
  overrides is named after its run folder (`20261202-061010`);
* **group**: the sweep, `<name>/<sweep folder>` (`demo/sweep-20261202-101500`), so every job of a sweep and every
  analysis of those jobs sit in one W&B group; a single run gets a group of its own, `<name>/<run folder>`, which its
  analysis joins.

An explicit `logging.run_name` / `logging.group` is kept. `hydra_names` reads Hydra's state (train.py); the pure
functions below it are what it computes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from crosscoder.xc.config import LoggingConfig
from crosscoder.xc.tracking import short

_SKIP = ("logging", "+logging", "~logging", "plan", "+plan")
"""Overrides that change where metrics go, not the run: left out of the name."""


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def name_from_overrides(overrides: Sequence[str], fallback: str, swept: set[str] | None = None) -> str:
    """`key=value` overrides joined by ',' (logging ones left out; only the `swept` keys when given), or `fallback`
    when none remain."""
    kept = [o for o in overrides if _key(o).split(".", 1)[0].split("/", 1)[0] not in _SKIP]
    if swept is not None:
        kept = [o for o in kept if _key(o) in swept] or kept
    return short(",".join(kept)) if kept else fallback


def swept_keys(sweep_dir: Path) -> set[str] | None:
    """The keys a sweep varies (command-line sweeps and `hydra.sweeper.params`), read from its multirun.yaml; None
    when the file is missing or unreadable (every override then names the job)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    args = list(OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or [])
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    args += [f"{k}={v}" for k, v in params.items()]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception:  # a sweeper plugin's own syntax: fall back to naming the job by every override
        return None
    return {o.key_or_group for o in parsed if o.is_sweep_override()}


def group_for(name: str, run_dir: Path, sweep_dir: Path | None) -> str:
    """The W&B group: `<name>/<sweep folder>` for a sweep job, `<name>/<run folder>` for a single run."""
    folder = sweep_dir if sweep_dir is not None else run_dir
    return short(f"{name}/{Path(folder).name}")


def with_names(
    cfg: LoggingConfig, name: str, run_dir: Path, overrides: Sequence[str], sweep_dir: Path | None
) -> LoggingConfig:
    """`cfg` with run_name and group filled in where the user left them unset."""
    swept = swept_keys(sweep_dir) if sweep_dir is not None else None
    return dataclasses.replace(
        cfg,
        run_name=cfg.run_name or name_from_overrides(overrides, Path(run_dir).name, swept),
        group=cfg.group or group_for(name, run_dir, sweep_dir),
    )


def hydra_names(cfg: LoggingConfig, name: str) -> LoggingConfig:
    """`with_names` from the running Hydra job (call inside `@hydra.main`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    sweep = Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None
    return with_names(cfg, name, Path(hc.runtime.output_dir), list(hc.overrides.task), sweep)
