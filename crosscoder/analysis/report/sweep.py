"""One table for a Hydra sweep: FVE, L0, dead fraction and top candidates of every job
(`python -m crosscoder.analysis sweep-summary <sweep dir>`).

Each job folder of the sweep (`runs/<name>/sweep-<time>/<n>/`) is read as it lies on disk: `.hydra/overrides.yaml`
(what the job changed), `run.json` (FVE per model, the last training window's L0 and dead fraction), `final/config.json`
(architecture, latents, k), `wandb.json` (W&B name, id, group) and, when the job was analysed, `analysis/summary.json`
(latent classes, candidates, the top candidates with their labels). Written next to the jobs: `sweep_summary.json`
(`SweepJob` records), `sweep_summary.csv` and `sweep_summary.html` (the table and FVE against L0, one point per job).
`crosscoder.analysis.export.wandb_log.log_sweep_to_wandb` logs the same table to W&B in the sweep's group.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crosscoder.charts import html_page, inline, scatter
from crosscoder.errors import DataError
from crosscoder.io import atomic_write_json, atomic_write_text, read_json

SUMMARY_FILES = ("sweep_summary.json", "sweep_summary.csv", "sweep_summary.html")
"""What `write_sweep_summary` writes into the sweep folder."""


@dataclass
class SweepJob:
    """One job of a sweep, as its folder records it (None where a file is missing)."""

    job: str
    """The job's folder name (Hydra's job number)."""
    run_dir: str
    overrides: list[str]
    name: str
    """The W&B display name (the swept overrides), else the overrides joined."""
    finished: bool
    architecture: str | None = None
    n_latents: int | None = None
    k: int | None = None
    fve: dict[str, float] = field(default_factory=dict)
    """FVE per model recorded by training (run.json)."""
    l0: float | None = None
    dead_frac: float | None = None
    """Fraction of latents that had not fired within trainer.dead_tokens at the end of training."""
    analysed: bool = False
    n_candidates: int | None = None
    class_counts: dict[str, int] = field(default_factory=dict)
    top_candidates: list[str] = field(default_factory=list)
    """'#latent class label (score)' of the analysis's top candidates, best first."""
    wandb_id: str | None = None
    wandb_group: str | None = None

    @property
    def fve_min(self) -> float | None:
        return min(self.fve.values()) if self.fve else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(float(value)) else None


def _candidate(c: dict[str, Any]) -> str:
    score = _num(c.get("score"))
    label = c.get("label") or "unlabelled"
    return f"#{c.get('latent')} {c.get('class', '?')} {label}" + (f" ({score:.3g})" if score is not None else "")


def read_job(folder: Path, n_top: int = 5) -> SweepJob:
    """A `SweepJob` from one job folder."""
    from omegaconf import OmegaConf

    over_file = folder / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(over_file)] if over_file.is_file() else []
    ref = read_json(folder / "wandb.json") if (folder / "wandb.json").is_file() else {}
    job = SweepJob(job=folder.name, run_dir=str(folder), overrides=overrides,
                   name=str(ref.get("name") or ",".join(overrides) or folder.name),
                   finished=(folder / "final" / "config.json").is_file(),
                   wandb_id=ref.get("id"), wandb_group=ref.get("group"))  # fmt: skip
    if job.finished:
        xc = read_json(folder / "final" / "config.json").get("crosscoder", {})
        job.architecture, job.n_latents, job.k = xc.get("architecture"), xc.get("n_latents"), xc.get("k")
    if (folder / "run.json").is_file():
        info = read_json(folder / "run.json")
        job.fve = {str(k): float(v) for k, v in (info.get("fve") or {}).items() if _num(v) is not None}
        metrics = info.get("train_metrics") or {}
        job.l0, job.dead_frac = _num(metrics.get("l0")), _num(metrics.get("dead_frac"))
    summary_file = folder / "analysis" / "summary.json"
    if summary_file.is_file():
        s = read_json(summary_file)
        job.analysed = True
        job.n_candidates = s.get("n_candidates")
        job.class_counts = {str(k): int(v) for k, v in (s.get("class_counts") or {}).items()}
        job.top_candidates = [_candidate(c) for c in (s.get("top_candidates") or [])[:n_top] if isinstance(c, dict)]
    return job


def sweep_jobs(sweep_dir: Path) -> list[SweepJob]:
    """Every job folder of a sweep (a sub-folder with `.hydra/` or `run.json`), in job order."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise DataError(f"{sweep_dir} does not exist; pass a sweep folder such as runs/<name>/sweep-<time>")
    folders = [p for p in sweep_dir.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or (p / "run.json").is_file())]
    if not folders:
        raise DataError(f"{sweep_dir} holds no job folders (<n>/.hydra or <n>/run.json); pass the sweep's folder")
    return [
        read_job(p)
        for p in sorted(folders, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    ]


COLUMNS = ("job", "name", "architecture", "n_latents", "k", "fve_min", "l0", "dead_frac", "n_candidates",
           "top_candidates", "finished", "analysed", "wandb_id")  # fmt: skip
"""The table's columns; FVE per model follows fve_min as fve/<model>."""


def table_rows(jobs: list[SweepJob]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the sweep table: the `COLUMNS` with one `fve/<model>` column per model."""
    models = sorted({m for j in jobs for m in j.fve})
    cols = [*COLUMNS[:6], *(f"fve/{m}" for m in models), *COLUMNS[6:]]
    rows = []
    for j in jobs:
        values = {**asdict(j), "fve_min": j.fve_min, "top_candidates": "; ".join(j.top_candidates),
                  **{f"fve/{m}": j.fve.get(m) for m in models}}  # fmt: skip
        rows.append([values[c] for c in cols])
    return cols, rows


def _html(sweep_dir: Path, jobs: list[SweepJob]) -> str:
    from crosscoder.analysis.report.html import CSS, esc, fmt, simple_table

    cols, rows = table_rows(jobs)
    body = simple_table(
        [esc(c) for c in cols], [[fmt(v) if not isinstance(v, str) else esc(v) for v in r] for r in rows]
    )
    pts = [(j.l0, j.fve_min, j) for j in jobs if j.l0 is not None and j.fve_min is not None]
    chart = None
    if pts:
        x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        tips = [f"job {p[2].job}: {p[2].name} (L0 {p[0]:.3g}, FVE {p[1]:.3f})" for p in pts]
        chart = scatter(x, y, tips, np.ones(len(pts), bool), [p[2].job for p in pts], "FVE (worst model) against L0",
                        "L0 (active latents per token)", "FVE, worst model")  # fmt: skip
    head = f"<header><h1>Sweep {esc(sweep_dir.name)}</h1><div class='meta'>{esc(sweep_dir)}: {len(jobs)} jobs</div></header>"
    return html_page(f"sweep {sweep_dir.name}", head + f"<h2>Jobs</h2>{body}<h2>FVE against L0</h2>"
                     f"{inline(chart, 'FVE against L0', 'no finished job')}", CSS)  # fmt: skip


def write_sweep_summary(sweep_dir: Path) -> list[SweepJob]:
    """Read the sweep's jobs and write sweep_summary.{json,csv,html} into the sweep folder; returns the jobs."""
    sweep_dir = Path(sweep_dir)
    jobs = sweep_jobs(sweep_dir)
    atomic_write_json(sweep_dir / SUMMARY_FILES[0], {"sweep_dir": str(sweep_dir), "jobs": [asdict(j) for j in jobs]})
    cols, rows = table_rows(jobs)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    writer.writerows([["" if v is None else v for v in r] for r in rows])
    atomic_write_text(sweep_dir / SUMMARY_FILES[1], buf.getvalue())
    atomic_write_text(sweep_dir / SUMMARY_FILES[2], _html(sweep_dir, jobs))
    return jobs
