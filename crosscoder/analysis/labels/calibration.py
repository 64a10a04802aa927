"""Label thresholds calibrated on null pairs, and each label's false-label rate.

A *null pair* is a model diff with no persona in it: the base model paired with itself, and the base paired with a
control fine-tune (the persona organisms' recipe on the same answers with no persona added). Whatever the labeller
says about a null pair's candidates is a false label. `NullCalibration` holds, for every candidate of every null
analysis, its label score (`crosscoder.analysis.labels.decide`: the best trait's, 0 for a generic candidate or one
without two kinds of evidence; ``scores``) and the per-trait label scores (``by_trait``):

- the calibrated threshold is the largest null score (a label needs a score *above* it: more evidence than any
  null candidate showed), raised to ``labels.threshold`` when that is higher;
- a label's **false-label rate** is ``(1 + #{null scores >= s}) / (1 + n_null)``: the chance that a candidate of a
  persona-free diff scores at least s (a permutation-style p-value; its floor is ``1 / (1 + n_null)``).

`python -m crosscoder.bench recovery --kinds null` runs the null pairs; `python -m crosscoder.bench calibrate-labels`
labels their candidates again with the current label decision (`crosscoder.analysis.labels.relabel`) and pools
them into the calibration file the labels read (``labels.calibration``; the shipped file,
``null_calibration.json`` next to this module, was measured on the benchmark's quick scale, docs/LABELS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosscoder.errors import DataError
from crosscoder.io import atomic_write_json, read_json

if TYPE_CHECKING:
    from crosscoder.analysis.records.candidate import Candidate

SHIPPED_CALIBRATION = Path(__file__).parent / "null_calibration.json"
"""The calibration the labels read by default (``labels.calibration=shipped``)."""
SCORE = "label_score"
"""What a calibration's scores are; a file of another score (the combined score of earlier versions) is refused."""


@dataclass
class NullCalibration:
    """Combined label scores of null-pair candidates (module docstring)."""

    scores: list[float]
    """Per null candidate, its label score (the best trait's)."""
    by_trait: dict[str, list[float]] = field(default_factory=dict)
    """Per trait, its label score on every null candidate."""
    sources: list[str] = field(default_factory=list)
    """The null analyses pooled (run folders and what they pair)."""

    @property
    def threshold(self) -> float:
        """The largest null score: no null candidate would be labelled above it."""
        return max(self.scores, default=0.0)

    def false_label_rate(self, score: float) -> float:
        """``(1 + #{null scores >= score}) / (1 + n)``."""
        return (1 + sum(s >= score for s in self.scores)) / (1 + len(self.scores))

    def to_json(self) -> dict[str, Any]:
        return {"score": SCORE, "scores": self.scores, "by_trait": self.by_trait, "sources": self.sources,
                "threshold": self.threshold, "n": len(self.scores)}  # fmt: skip

    @classmethod
    def from_json(cls, obj: Any, where: str) -> NullCalibration:
        if not isinstance(obj, dict) or not isinstance(obj.get("scores"), list) or not obj["scores"]:
            raise DataError(f"{where}: not a label calibration (needs a non-empty 'scores' list); rerun "
                            "`python -m crosscoder.bench calibrate-labels` or set analyze.labels.calibration=none")  # fmt: skip
        if obj.get("score") != SCORE:
            raise DataError(f"{where}: calibrated on {obj.get('score') or 'the combined score'}, not the {SCORE} the "
                            "labels use now; rerun `python -m crosscoder.bench calibrate-labels`")  # fmt: skip
        try:
            scores = [float(s) for s in obj["scores"]]
            by_trait = {str(t): [float(s) for s in v] for t, v in (obj.get("by_trait") or {}).items()}
        except (TypeError, ValueError) as err:
            raise DataError(f"{where}: non-numeric score ({err}); rerun the calibration") from err
        return cls(scores, by_trait, [str(s) for s in obj.get("sources") or []])


def load_calibration(spec: str) -> NullCalibration | None:
    """``none`` -> None; ``shipped`` -> the package's file; else a path to a calibration JSON."""
    if spec == "none":
        return None
    path = SHIPPED_CALIBRATION if spec == "shipped" else Path(spec).expanduser()
    if not path.is_file():
        raise DataError(f"analyze.labels.calibration: {path} not found; give a calibration file, 'shipped' or 'none'")
    return NullCalibration.from_json(read_json(path), str(path))


def calibration_of(candidate_lists: list[tuple[str, list[Candidate]]]) -> NullCalibration:
    """Pool null analyses: (source, candidates labelled with the current decision) per analysis."""
    scores: list[float] = []
    by_trait: dict[str, list[float]] = {}
    for _, cands in candidate_lists:
        for c in cands:
            if not c.label_evidence:
                continue
            scores.append(float(c.label_confidence or 0.0))
            for t, e in c.label_evidence.items():
                by_trait.setdefault(t, []).append(e.label_score)
    if not scores:
        raise DataError("label calibration: the null analyses have no labelled candidates; run them with labels on")
    return NullCalibration(scores, by_trait, [src for src, _ in candidate_lists])


def write_calibration(path: str | Path, calib: NullCalibration) -> None:
    atomic_write_json(path, calib.to_json())
