"""`python -m crosscoder.bench calibrate-labels --from RESULTS [--trait-dir DIR] [--out PATH]`: pool the null pairs
of recovery results files (``--kinds null``: the base with itself, the base with the control fine-tune) into the
label calibration the analysis reads (`crosscoder.analysis.labels.calibration`).

Every record of kind ``null`` contributes its run's candidates, labelled again with the current label decision
(`crosscoder.analysis.labels.relabel`: no model is loaded) against the shipped traits without keywords (``--hints``
keeps them) and the ``--trait-dir`` folders. Run the null analyses with many candidates (e.g.
``--analyze rank.shifted_cosine=0.99 rank.n_candidates=150``): the false-label rates have a floor of 1 / (1 + n).
The default ``--out`` is the package's shipped calibration file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crosscoder.analysis.labels.calibration import SHIPPED_CALIBRATION, calibration_of, write_calibration
from crosscoder.bench.relabel import library, null_records, relabel_run
from crosscoder.errors import DataError


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m crosscoder.bench calibrate-labels", description=__doc__)
    p.add_argument("--from", dest="src", type=Path, action="append", required=True,
                   help="recovery results JSON with null records (repeatable)")  # fmt: skip
    p.add_argument("--trait-dir", action="append", default=[], help="folder of extra trait JSON files (repeatable)")
    p.add_argument("--hints", action="store_true", help="use the trait files' keywords (default: plain files)")
    p.add_argument("--out", type=Path, default=SHIPPED_CALIBRATION)
    a = p.parse_args(argv)
    runs = null_records(a.src)
    if not runs:
        raise DataError(f"--from: no null records in {', '.join(map(str, a.src))}; run the benchmark with --kinds null")
    traits = library(a.trait_dir, a.hints)
    lists = [(name, relabel_run(run_dir, traits, a.hints, "none", None).candidates) for name, run_dir in runs]
    calib = calibration_of(lists)
    write_calibration(a.out, calib)
    print(f"{len(calib.scores)} null candidates from {len(lists)} analyses; threshold {calib.threshold:.3f} -> {a.out}")
