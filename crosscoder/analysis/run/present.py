"""What is drawn and handed off once the analysis files are written: report.html, plots, SAELens export, W&B.

Each reads the files of the analysis folder only, so the same functions rewrite them later
(``python -m crosscoder.analysis report``). A new presentation (another export, a dashboard) adds a step here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from crosscoder.analysis.config import AnalyzeConfig

log = logging.getLogger(__name__)


@dataclass
class Presented:
    """The files the presentation steps wrote, and their timings (seconds; not part of summary.json)."""

    report: Path | None = None
    plots: list[Path] = field(default_factory=list)
    saelens: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def moved(self, old: Path, new: Path) -> Presented:
        """The same files after their folder `old` was renamed to `new`."""

        def move(p: Path) -> Path:
            return new / p.relative_to(old)

        report = move(self.report) if self.report is not None else None
        return Presented(report, [move(p) for p in self.plots], [move(p) for p in self.saelens], self.timings)


def present(out_dir: Path, run_dir: Path, cfg: AnalyzeConfig) -> Presented:
    """Plots and report (`report.enabled`), SAELens export (`export.saelens`), W&B (`export.wandb_mode`: explicit
    wins, `auto` follows $WANDB_MODE, then the training run's mode; a disabled run is skipped)."""
    from crosscoder.analysis.export.saelens import export_saelens
    from crosscoder.analysis.export.wandb_log import log_to_wandb
    from crosscoder.analysis.report.page import write_report
    from crosscoder.analysis.report.plots import make_plots
    from crosscoder.data.api import ActivationSet

    out = Presented()

    def timed(name: str, t0: float) -> None:
        out.timings[name] = round(time.perf_counter() - t0, 2)

    if cfg.report.enabled:
        t0 = time.perf_counter()
        out.plots = make_plots(out_dir)
        timed("plots", t0)
        t0 = time.perf_counter()
        out.report = write_report(out_dir)
        timed("report", t0)
    if cfg.export.saelens:
        t0 = time.perf_counter()
        acts = ActivationSet.open(cfg.activations, verify=False) if cfg.activations else None
        out.saelens = export_saelens(run_dir, out_dir / "saelens", encoder=cfg.export.saelens_encoder, activations=acts)
        timed("saelens_export", t0)
    t0 = time.perf_counter()
    if log_to_wandb(out_dir, None, cfg.export.wandb_mode, project=cfg.export.wandb_project, run_dir=run_dir):
        timed("wandb", t0)
    return out
