"""`python -m crosscoder.bench calibrate-labels --from RESULTS [--out PATH]`: pool the null pairs of a recovery
results file (``--kinds null``: the base with itself, the base with the control fine-tune) into the label
calibration the analysis reads (`crosscoder.analysis.labels.calibration`).

Every record of kind ``null`` contributes its run's candidates.json (the analysis must have run with labels on);
the default ``--out`` is the package's shipped calibration file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crosscoder.analysis.labels.calibration import SHIPPED_CALIBRATION, calibration_of, write_calibration
from crosscoder.errors import DataError
from crosscoder.io import read_json


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m crosscoder.bench calibrate-labels", description=__doc__)
    p.add_argument("--from", dest="src", type=Path, action="append", required=True,
                   help="recovery results JSON with null records (repeatable)")  # fmt: skip
    p.add_argument("--out", type=Path, default=SHIPPED_CALIBRATION)
    a = p.parse_args(argv)
    lists = []
    for src in a.src:
        if not src.is_file():
            raise DataError(f"--from: {src} not found; run `python -m crosscoder.bench recovery --kinds null` first")
        for rec in read_json(src).get("records", []):
            if rec.get("organism_kind") != "null":
                continue
            cands = Path(rec["run_dir"]) / "analysis" / "candidates.json"
            if not cands.is_file():
                raise DataError(f"{src}: {cands} not found; re-run the null analysis (--reanalyze)")
            lists.append((f"{rec['trait']}: {rec['run_dir']}", read_json(cands)))
    if not lists:
        raise DataError(f"--from: no null records in {', '.join(map(str, a.src))}; run the benchmark with --kinds null")
    calib = calibration_of(lists)
    write_calibration(a.out, calib)
    print(f"{len(calib.scores)} null candidates from {len(lists)} analyses; threshold {calib.threshold:.3f} -> {a.out}")
