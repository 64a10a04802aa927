"""Where training runs live: the runs root, the `runs/LATEST` pointer, and finding the latest finished run.

A run folder holds `final/` (the finished crosscoder), `run.json` (models, hooks, activation cache) and the training
logs (see docs/ARCHITECTURE.md). Every stage that needs "the latest run" asks here, so no stage imports another.
"""

from __future__ import annotations

from pathlib import Path

from crosscoder.errors import DataError
from crosscoder.io import atomic_write_text

RUNS_ROOT = Path("runs")
"""Default root of the run folders (`python train.py` writes runs/<name>/<timestamp>)."""


def update_latest(run_dir: Path) -> None:
    """Point runs/LATEST at this run (a text file, so it works on every file system)."""
    atomic_write_text(RUNS_ROOT / "LATEST", str(run_dir.resolve()) + "\n")


def latest_run(root: Path = RUNS_ROOT) -> Path:
    """The most recent finished run folder: runs/LATEST if valid, else the newest folder holding final/."""
    marker = root / "LATEST"
    if marker.is_file():
        candidate = Path(marker.read_text().strip())
        if (candidate / "final").is_dir():
            return candidate
    finished = sorted((p.parent for p in root.glob("**/final") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not finished:
        raise DataError(f"no finished training run under {root}/; run `python train.py` first or pass run_dir=<folder>")
    return finished[-1]
