"""`python -m crosscoder.bench relabel --from RESULTS --out OUT [--trait-dir DIR] [--hints] [--calibration C]`:
label the runs of recovery results files again with the current label decision, without models
(`crosscoder.analysis.labels.relabel`), and score them as the recovery benchmark does.

The library is the shipped traits (their keywords and examples dropped unless ``--hints``) plus ``--trait-dir``
folders, narrowed to the traits each analysis measured. Each record of OUT is the recovery record of the relabelled
analysis (top-1, top-5, personas listed, wrong personas), plus each candidate's label, label score, false-label rate
and description (``candidates``). The analyses' files are not changed. Planted organisms are scored without their
planted cosines.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from crosscoder.analysis.config import LabelConfig
from crosscoder.analysis.labels.calibration import NullCalibration, load_calibration
from crosscoder.analysis.labels.relabel import Relabelled, relabel_analysis
from crosscoder.errors import DataError
from crosscoder.io import atomic_write_json, read_json

if TYPE_CHECKING:
    from crosscoder.personas.traits import Trait


def library(trait_dirs: list[str], hints: bool) -> dict[str, Trait]:
    """Shipped traits and `trait_dirs`; without `hints` their keywords and examples are dropped."""
    from crosscoder.personas.traits import load_traits

    traits = load_traits(trait_dirs or None, include_shipped=True)
    if not hints:
        traits = {t: tr.plain() for t, tr in traits.items()}
    return traits


def label_config(summary: dict[str, Any], hints: bool, calibration: str) -> LabelConfig:
    """The analysis' saved ``labels`` config with `hints` and `calibration` set; the decision fields at their
    current defaults."""
    names = {f.name for f in dataclasses.fields(LabelConfig)}
    saved = {k: v for k, v in ((summary.get("config") or {}).get("labels") or {}).items() if k in names}
    keep = {k: saved[k] for k in ("cosine_full", "said_full", "weights", "min_separation") if k in saved}
    return LabelConfig(**keep, hints=hints, calibration=calibration)


def null_records(sources: list[Path]) -> list[tuple[str, Path]]:
    """(description, run folder) of every null record of recovery results files."""
    out = []
    for src in sources:
        if not src.is_file():
            raise DataError(f"--from: {src} not found; run `python -m crosscoder.bench recovery` first")
        for rec in read_json(src).get("records", []):
            if rec.get("organism_kind") == "null":
                out.append((f"{rec['trait']}: {rec['run_dir']}", Path(rec["run_dir"])))
    return out


def relabel_run(
    run_dir: Path, traits: dict[str, Trait], hints: bool, spec: str, calib: NullCalibration | None
) -> Relabelled:
    """One run's analysis labelled again."""
    summary = (
        read_json(run_dir / "analysis" / "summary.json") if (run_dir / "analysis" / "summary.json").is_file() else {}
    )
    return relabel_analysis(run_dir / "analysis", traits, label_config(summary, hints, spec), calib)


def record(rec: dict[str, Any], new: Relabelled) -> dict[str, Any]:
    """The recovery record of a relabelled analysis, with its candidates' labels."""
    from crosscoder.bench.recovery import BASE, Organism, evaluate

    cands = [c.to_json() for c in new.candidates]
    out = evaluate(Organism(rec["trait"], rec["organism_kind"], BASE, None), Path(rec["run_dir"]),
                   SimpleNamespace(candidates=cands, summary=new.summary))  # fmt: skip
    out["seconds"] = rec.get("seconds", 0.0)
    out["library"] = new.traits
    out["candidates"] = [
        {"rank": c.rank, "latent": c.latent, "label": c.label, "best_trait": c.best_trait,
         "label_score": c.label_confidence, "false_label_rate": c.label_false_rate, "generic_share": c.generic_share,
         "description": c.description}
        for c in new.candidates
    ]  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from crosscoder.bench.recovery_metrics import format_table

    p = argparse.ArgumentParser(prog="python -m crosscoder.bench relabel", description=__doc__)
    p.add_argument("--from", dest="src", type=Path, action="append", required=True, help="recovery results JSON")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--trait-dir", action="append", default=[], help="folder of extra trait JSON files (repeatable)")
    p.add_argument("--hints", action="store_true", help="use the trait files' keywords (default: plain files)")
    p.add_argument("--calibration", default="shipped", help="'shipped', a calibration JSON or 'none'")
    a = p.parse_args(argv)
    traits = library(a.trait_dir, a.hints)
    calib = load_calibration(a.calibration)
    records = []
    for src in a.src:
        if not src.is_file():
            raise DataError(f"--from: {src} not found; give a recovery results JSON")
        for rec in read_json(src).get("records", []):
            new = relabel_run(Path(rec["run_dir"]), traits, a.hints, a.calibration, calib)
            records.append(record(rec, new))
    atomic_write_json(a.out, {"records": records, "sources": [str(s) for s in a.src], "calibration": a.calibration,
                              "hints": a.hints})  # fmt: skip
    print(format_table(records))
    print(f"results: {a.out}")
    return records
