"""Label a finished analysis again with the current label decision, without models (`relabel_analysis`).

Everything the labels read is saved in the analysis folder: each candidate's reading (logit lens, top contexts,
next-token shift and continuations, steered texts) and per-trait measures (the decoder cosines, said, the pos-neg
activation difference, kept in ``label_evidence``), and each trait's generated spoken words and separation
(summary.json ``trait_profiles``). `relabel_analysis` rebuilds the trait word lists from those, weighs them by
their specificity within the library, and runs the same `decide_label` as the analysis. The library is the traits
given (trait files: their instructions set the instruction vocabulary) that the saved evidence covers: a trait
the analysis labelled against but not given here is left out of the labels.

Not re-measured: anything that needs a model (persona vectors, activations, generations); the chat template's
own words are not removed from keyword words (no tokenizer is loaded; they are removed from spoken words already).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosscoder.analysis.labels.assign import LabelBasis, decide_label, trait_word_lists, with_specificity
from crosscoder.analysis.labels.calibration import NullCalibration
from crosscoder.analysis.labels.profile import TraitProfile, evidence_weight
from crosscoder.analysis.labels.signals import TraitMeasures
from crosscoder.analysis.records.candidate import Candidate, TraitEvidence
from crosscoder.errors import DataError
from crosscoder.io import read_json

if TYPE_CHECKING:
    from crosscoder.analysis.config import LabelConfig
    from crosscoder.personas.traits import Trait


@dataclass
class Relabelled:
    """One analysis labelled again: its candidates (new labels) and summary (as saved)."""

    candidates: list[Candidate]
    summary: dict[str, Any]
    traits: list[str]
    """The library the labels used."""


def saved_profiles(summary: dict[str, Any]) -> dict[str, TraitProfile]:
    """The trait profiles of a summary.json (words, separation and evidence weight)."""
    out = {}
    for p in summary.get("trait_profiles") or []:
        sep = float(p.get("separation", 0.0))
        out[str(p["trait"])] = TraitProfile(str(p["trait"]), [str(w) for w in p.get("words", [])], sep,
                                            float(p.get("weight", evidence_weight(sep))))  # fmt: skip
    return out


def saved_measures(ev: TraitEvidence) -> TraitMeasures:
    """The measures behind saved evidence (the decoder's specific coefficient is saved as the larger of two)."""
    return TraitMeasures(cos_ft=ev.cosine_ft, cos_diff=ev.cosine_diff, spec_ft=ev.cosine_specific,
                         spec_diff=ev.cosine_specific, pos=ev.pos_neg_diff, neg=0.0, said=ev.said)  # fmt: skip


def load_analysis(analysis_dir: Path) -> tuple[list[Candidate], dict[str, Any]]:
    cands, summ = analysis_dir / "candidates.json", analysis_dir / "summary.json"
    for f in (cands, summ):
        if not f.is_file():
            raise DataError(f"{f} not found; the run has no finished analysis (run analyze.py or --reanalyze)")
    return [Candidate.from_json(c) for c in read_json(cands)], read_json(summ)


def relabel_analysis(
    analysis_dir: Path, traits: dict[str, Trait], cfg: LabelConfig, calibration: NullCalibration | None
) -> Relabelled:
    """The candidates of `analysis_dir` labelled with the current decision against `traits` (module docstring)."""
    cands, summary = load_analysis(analysis_dir)
    measured = set(cands[0].label_evidence) if cands else set()
    library = {t: tr for t, tr in traits.items() if t in measured}
    if cands and not library:
        raise DataError(f"{analysis_dir}: none of the given traits was labelled in this analysis "
                        f"(it has {', '.join(sorted(measured))}); pass their trait folders")  # fmt: skip
    profiles = saved_profiles(summary)
    words = with_specificity({t: trait_word_lists(tr, frozenset(), profiles.get(t)) for t, tr in library.items()},
                             library)  # fmt: skip
    basis = LabelBasis(library, {}, words, {}, profiles=profiles, calibration=calibration)
    for c in cands:
        measures = {t: saved_measures(c.label_evidence[t]) for t in library}
        decide_label(c, measures, words, cfg, basis)
    return Relabelled(cands, summary, sorted(library))
