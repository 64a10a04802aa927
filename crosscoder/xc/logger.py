"""Run logging: ``run_dir/metrics.jsonl`` (always) and Weights & Biases (offline by default), rank 0 only.

Each JSONL line is one record ``{"step": s, "tokens": n, ...}``; histogram records carry
``{"hist/<name>": {"edges": [...], "counts": [...]}}``. On resume, records past the resumed step (written before a
crash) are dropped so the file reads as one uninterrupted run.

The W&B run is named `logging.run_name` and grouped under `logging.group` (train.py fills both from Hydra: the
overrides and the sweep), with job_type `train`; its mode follows `crosscoder.xc.tracking.resolve_mode` (an explicit
`logging=` choice wins over $WANDB_MODE). `<run_dir>/wandb.json` records the run's W&B identity for the analysis,
and `log_crosscoder` logs final/ as the artifact `crosscoder-<run id>` (docs/WANDB.md).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from crosscoder.io import atomic_write_text
from crosscoder.xc.config import LoggingConfig
from crosscoder.xc.metrics import NormHistogram
from crosscoder.xc.tracking import WandbRef, artifact_name, init_wandb, resolve_mode, short

log = logging.getLogger("crosscoder.xc")


class RunLogger:
    """Writes metrics to the JSONL file and W&B; every method is a no-op on ranks other than 0."""

    def __init__(
        self,
        run_dir: Path,
        cfg: LoggingConfig,
        config: dict[str, Any],
        *,
        enabled: bool = True,
        resume_step: int | None = None,
        wandb_id: str | None = None,
    ) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.wandb: Any = None
        self.wandb_id: str | None = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()
        mode = resolve_mode(cfg.wandb_mode)
        self.log_model = cfg.log_model
        self.ref = WandbRef(mode, cfg.project, cfg.entity, cfg.group, short(cfg.run_name or run_dir.name))
        self.run_dir = run_dir
        if mode != "disabled":
            self.wandb = init_wandb(
                project=cfg.project,
                entity=cfg.entity,
                name=self.ref.name,
                group=cfg.group,
                job_type="train",
                tags=list(cfg.tags),
                mode=mode,  # type: ignore[arg-type]
                dir=str(run_dir),
                config=config,
                id=wandb_id,
                resume="allow" if wandb_id else None,
            )
            self.wandb_id = self.ref.id = self.wandb.id
            self.ref.local_dir = str(Path(self.wandb.dir).parent)
        self.ref.write(run_dir)

    def _truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the crash
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def metrics(self, step: int, tokens: int, values: dict[str, float]) -> None:
        """Log scalar metrics at ``step`` (steps completed)."""
        if not self.enabled:
            return
        self._write({"step": step, "tokens": tokens, **values})
        if self.wandb is not None:
            self.wandb.log({"tokens": tokens, **values}, step=step)

    def histograms(self, step: int, hists: list[NormHistogram]) -> None:
        """Log decoder-norm-ratio histograms at ``step``."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": step}
        for h in hists:
            record[f"hist/rel_norm/{h.name}"] = {"edges": h.edges, "counts": h.counts}
            record[f"excl_frac/{h.name}"] = h.exclusive_frac
        self._write(record)
        if self.wandb is not None:
            import wandb

            payload: dict[str, Any] = {}
            for h in hists:
                hist = (np.asarray(h.counts), np.asarray(h.edges))
                payload[f"hist/rel_norm/{h.name}"] = wandb.Histogram(np_histogram=hist)
                payload[f"excl_frac/{h.name}"] = h.exclusive_frac
            self.wandb.log(payload, step=step)

    def log_crosscoder(self, final_dir: Path, metadata: dict[str, Any] | None = None) -> None:
        """Log the finished crosscoder folder as the artifact `crosscoder-<run id>` (type `crosscoder`) and record
        its name in wandb.json; a no-op without W&B or with `logging.log_model=false`."""
        if not (self.enabled and self.wandb is not None and self.log_model):
            return
        import wandb

        assert self.wandb_id is not None
        name = artifact_name("crosscoder", self.wandb_id)
        meta = {"run_name": self.ref.name, "group": self.ref.group, **(metadata or {})}
        art = wandb.Artifact(name, type="crosscoder", metadata=meta)
        for path in sorted(Path(final_dir).iterdir()):
            if path.is_file():  # final/ is complete and no longer written: W&B need not copy it first
                art.add_file(str(path), name=path.name, policy="immutable")
        self.wandb.log_artifact(art, aliases=["latest", "final"])
        self.ref.artifact = name
        self.ref.write(self.run_dir)
        log.info("logged %s as W&B artifact %s", final_dir, name)

    def summary(self, values: dict[str, Any]) -> None:
        if self.enabled and self.wandb is not None:
            self.wandb.summary.update(values)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
