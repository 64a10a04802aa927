"""The analysis stage's command line: ``python -m crosscoder.analysis <command>``.

    python -m crosscoder.analysis control RUN_DIR --source SRC [--adapter DIR]   harvest a control fine-tune's cache
    python -m crosscoder.analysis report [ANALYSIS_DIR]                          rewrite report.html and the plots
    python -m crosscoder.analysis check-report [ANALYSIS_DIR] [--sample]         render the report in headless Chromium
    python -m crosscoder.analysis verify [ANALYSIS_DIR]                          check the folder's sha256 manifest
    python -m crosscoder.analysis sweep-summary SWEEP_DIR [--wandb-mode MODE]     one table of a sweep's jobs (+ W&B)
    python -m crosscoder.analysis export [RUN_DIR] [--encoder fit] [--out DIR]    SAELens SAE folders of a run

The analysis itself runs with ``python analyze.py`` (Hydra); the analysis benchmark with
``python -m crosscoder.bench analysis``. This module is an entry point: it may import every layer.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crosscoder.errors import DataError
from crosscoder.io import refresh_checksums, verify_checksums


def _analysis_dir(folder: Path | None) -> Path:
    """`folder`, or the latest finished run's analysis/ folder."""
    if folder is not None:
        return folder
    from crosscoder.runs import latest_run

    found = latest_run() / "analysis"
    if not found.is_dir():
        raise DataError(f"{found} does not exist; run `python analyze.py` first, pass a folder, or use --sample")
    return found


def control_main(argv: list[str] | None = None) -> Path:
    """`control`: harvest the run's base model and a control fine-tune on the run's tokens; prints the cache folder."""
    from crosscoder.analysis.stats import control
    from crosscoder.models import ModelSpec
    from crosscoder.pipeline import resolve_model_spec

    p = argparse.ArgumentParser(prog="python -m crosscoder.analysis control", description=control.__doc__)
    p.add_argument("run_dir", type=Path, help="the training run whose tokens and base model to use")
    p.add_argument("--source", required=True, help="control model source (as models.models.N.source)")
    p.add_argument("--adapter", default=None, help="PEFT/LoRA adapter folder of the control fine-tune")
    p.add_argument("--kind", default="auto", help="model kind (as models.models.N.kind)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    spec = resolve_model_spec(ModelSpec(source=a.source, kind=a.kind, adapter=a.adapter))
    path = control.harvest_control(a.run_dir, spec, a.device)
    print(f"control activations: {path}")
    print(f"analyse with: python analyze.py run_dir={a.run_dir} control_activations={path}")
    return path


def report_main(argv: list[str] | None = None) -> Path:
    """`report`: rewrite an analysis folder's report.html and plots from its files."""
    from crosscoder.analysis.report.page import write_report
    from crosscoder.analysis.report.plots import make_plots

    p = argparse.ArgumentParser(prog="python -m crosscoder.analysis report", description=report_main.__doc__)
    p.add_argument("analysis_dir", nargs="?", type=Path, help="analysis folder (default: the latest run's)")
    folder = _analysis_dir(p.parse_args(argv).analysis_dir)
    plots = make_plots(folder)  # verifies the data files' checksums
    report = write_report(folder)
    refresh_checksums(folder)
    print(f"report:  {report}\nplots:   {len(plots)} files in {folder / 'plots'}")
    return report


def check_report_main(argv: list[str] | None = None) -> Any:
    """`check-report`: (re)write the report, render it in headless Chromium and check the screenshot."""
    from crosscoder.analysis.report.check import check_report

    p = argparse.ArgumentParser(
        prog="python -m crosscoder.analysis check-report", description=check_report_main.__doc__
    )
    p.add_argument("analysis_dir", nargs="?", type=Path, help="analysis folder (default: the latest run's)")
    p.add_argument("--out", type=Path, default=None, help="screenshot path (default: <analysis_dir>/report.png)")
    p.add_argument(
        "--sample", action="store_true", help="write a synthetic analysis folder first (default results/report_sample)"
    )
    p.add_argument("--window", default="1400,2400", help="window size W,H in pixels")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.window.split(","))
    if args.sample:
        from crosscoder.testing.report_sample import write_sample_analysis

        folder = write_sample_analysis(args.analysis_dir or Path("results/report_sample"))
    else:
        folder = _analysis_dir(args.analysis_dir)
    result = check_report(folder, args.out, window=(w, h))
    refresh_checksums(folder)  # the report was rewritten (its data files were verified first)
    print(
        f"report {folder / 'report.html'} rendered: screenshot {result.path} ({result.width}x{result.height}, "
        f"{result.non_white:.1%} non-white, {result.n_colors} colours)"
    )
    return result


def verify_main(argv: list[str] | None = None) -> int:
    """`verify`: check every file of an analysis folder (tables, report, SAELens exports) against its checksums."""
    p = argparse.ArgumentParser(prog="python -m crosscoder.analysis verify", description=verify_main.__doc__)
    p.add_argument("analysis_dir", nargs="?", type=Path, help="analysis folder (default: the latest run's)")
    folder = _analysis_dir(p.parse_args(argv).analysis_dir)
    n = verify_checksums(folder, "analysis folder", required=True)
    print(f"{folder}: {n} files match their checksums")
    return n


def sweep_summary_main(argv: list[str] | None = None) -> Any:
    """`sweep-summary`: FVE, L0, dead fraction and top candidates of every job of a sweep in one table
    (sweep_summary.{json,csv,html} in the sweep folder), logged to W&B as the table `sweep` in the sweep's group."""
    from crosscoder.analysis.export.wandb_run import log_sweep_to_wandb
    from crosscoder.analysis.report.sweep import SUMMARY_FILES, write_sweep_summary

    p = argparse.ArgumentParser(
        prog="python -m crosscoder.analysis sweep-summary", description=sweep_summary_main.__doc__
    )
    p.add_argument("sweep_dir", type=Path, help="the sweep folder (runs/<name>/sweep-<time>)")
    p.add_argument("--wandb-mode", default="auto", help="auto (default: $WANDB_MODE, else the jobs' mode) | offline | "
                   "online | disabled")  # fmt: skip
    p.add_argument("--project", default=None, help="W&B project (default: the jobs' project)")
    a = p.parse_args(argv)
    jobs = write_sweep_summary(a.sweep_dir)
    run = log_sweep_to_wandb(a.sweep_dir, jobs, a.wandb_mode, a.project)
    for j in jobs:
        fve = f"{j.fve_min:.3f}" if j.fve_min is not None else "-"
        l0 = f"{j.l0:.1f}" if j.l0 is not None else "-"
        dead = f"{j.dead_frac:.3f}" if j.dead_frac is not None else "-"
        top = j.top_candidates[0] if j.top_candidates else "-"
        print(f"{j.job:>4}  {j.name[:48]:<48}  FVE {fve}  L0 {l0}  dead {dead}  top {top}")
    print(f"summary: {a.sweep_dir / SUMMARY_FILES[2]}" + (f"  (W&B run {run.id})" if run is not None else ""))
    return jobs


def export_main(argv: list[str] | None = None) -> Any:
    """`export`: every (model, hook) slice of a finished run as a SAELens SAE folder (`SAE.load_from_disk`), without
    running the analysis (`python analyze.py` exports too, under <analysis>/saelens/)."""
    from crosscoder.analysis.export.saelens import ENCODER_MODES, export_saelens
    from crosscoder.data.api import ActivationSet

    p = argparse.ArgumentParser(prog="python -m crosscoder.analysis export", description=export_main.__doc__)
    p.add_argument("run_dir", type=Path, nargs="?", default=None, help="a finished run folder (default: runs/LATEST)")
    p.add_argument("--encoder", choices=ENCODER_MODES, default="fit", help="how each slice stands in for the other "
                   "models' inputs: fit (default; fitted on the run's activation cache), mirror or own")  # fmt: skip
    p.add_argument("--activations", type=Path, default=None, help="activation cache for --encoder fit "
                   "(default: the run's)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <run>/saelens)")
    a = p.parse_args(argv)
    if a.run_dir is None:
        from crosscoder.runs import latest_run

        run_dir = latest_run()
    else:
        run_dir = a.run_dir
    acts = ActivationSet.open(a.activations, verify=False) if a.activations else None
    folders = export_saelens(run_dir, a.out or run_dir / "saelens", encoder=a.encoder, activations=acts)
    for f in folders:
        print(f)
    return folders


COMMANDS: dict[str, Callable[[list[str] | None], Any]] = {
    "control": control_main,
    "report": report_main,
    "check-report": check_report_main,
    "verify": verify_main,
    "sweep-summary": sweep_summary_main,
    "export": export_main,
}
"""Subcommands of ``python -m crosscoder.analysis``; a new analysis tool adds its entry here."""


def main(argv: list[str] | None = None) -> Any:
    """Dispatch ``python -m crosscoder.analysis <command> [args]``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m crosscoder.analysis", description=__doc__.split("\n")[0])
    p.add_argument("command", choices=sorted(COMMANDS))
    args, rest = p.parse_known_args(argv)
    return COMMANDS[args.command](rest)
