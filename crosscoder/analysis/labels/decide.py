"""The label decision: a persona label needs two independent kinds of evidence, never one saturated source.

The *kinds* of evidence for a (latent, trait) pair are the eight signals of `TraitEvidence` that come from different
measurements: the decoder's persona-vector alignment (``cosine_signal``), the persona vector's reading of what the ft
says (``said_signal``), the pos-vs-neg activation (``pos_neg_signal``) and the five lexical sources (logit lens, top
contexts, steered generations, next-token shift, continuations).

- ``combined`` (reported, and what ``best_trait`` ranks) is the weighted mean of the three signal groups as before:
  persona = max(cosine, said), pos_neg, lexical = the largest lexical source;
- the **label score** (`label_score`) is the same weighted mean after every kind is capped at the value of the
  *second-strongest* kind: one saturated keyword or lens hit with nothing else behind it scores as little as the
  evidence that backs it. A trait also needs ``min_kinds`` kinds at or above ``floor``;
- a generic candidate (its next-token shift mostly end of turn, pronouns, punctuation, with no content change in
  what the ft says: `crosscoder.analysis.labels.specific.is_generic`) gets no persona label at all;
- label = the trait with the highest label score if that score clears the threshold (``labels.threshold``, raised
  by the null calibration: a label needs a score *above* every null candidate's); the label confidence is that
  score, and the runner-up is the trait with the next-highest one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crosscoder.analysis.records.candidate import TraitEvidence
from crosscoder.analysis.records.summary import UNLABELLED

LEXICAL = ("lexical_lens", "lexical_contexts", "lexical_generations", "lexical_next_token", "lexical_continuation")
KINDS = ("cosine_signal", "said_signal", "pos_neg_signal", *LEXICAL)


@dataclass
class LabelRule:
    """How per-trait evidence becomes a label (module docstring)."""

    weights: list[float]
    """Weights of the three signal groups [persona vector, pos-neg activation, lexical]."""
    threshold: float
    """The label score a label needs (at least; `strict` makes it 'more than')."""
    floor: float = 0.2
    """A kind of evidence counts towards `min_kinds` from this signal value up."""
    min_kinds: int = 2
    """Kinds of evidence at or above `floor` a label needs."""
    strict: bool = False
    """Require a score strictly above `threshold` (the calibrated threshold is the largest null score)."""


def _weighted(vals: dict[str, float], weights: list[float]) -> float:
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    persona = max(vals["cosine_signal"], vals["said_signal"])
    lexical = max(vals[k] for k in LEXICAL)
    return float(w[0] * persona + w[1] * vals["pos_neg_signal"] + w[2] * lexical)


def kind_values(ev: TraitEvidence) -> dict[str, float]:
    return {k: float(getattr(ev, k)) for k in KINDS}


def label_score(ev: TraitEvidence, weights: list[float]) -> float:
    """The weighted mean with every kind capped at the second-strongest kind's value."""
    vals = kind_values(ev)
    second = sorted(vals.values(), reverse=True)[1]
    return _weighted({k: min(v, second) for k, v in vals.items()}, weights)


def n_kinds(ev: TraitEvidence, floor: float) -> int:
    """Kinds of evidence at or above `floor`."""
    return sum(v >= floor for v in kind_values(ev).values())


def label_latent(
    evidence: dict[str, TraitEvidence], rule: LabelRule, generic: bool = False
) -> tuple[str, float, str, float]:
    """(label, confidence, runner-up, runner-up score); fills in each trait's `combined`, `label_score` and `kinds`.

    `generic`: the candidate is a generic change (every label score is 0)."""
    for ev in evidence.values():
        ev.combined = _weighted(kind_values(ev), rule.weights)
        ev.kinds = float(n_kinds(ev, rule.floor))
        ev.label_score = label_score(ev, rule.weights) if ev.kinds >= rule.min_kinds else 0.0
    if generic:
        for ev in evidence.values():
            ev.label_score = 0.0
    ranked = sorted(evidence.items(), key=lambda kv: (-kv[1].label_score, -kv[1].combined))
    if not ranked:
        return UNLABELLED, 0.0, "", 0.0
    best, best_s = ranked[0][0], ranked[0][1].label_score
    runner, runner_s = (ranked[1][0], ranked[1][1].label_score) if len(ranked) > 1 else ("", 0.0)
    passed = best_s > rule.threshold if rule.strict else best_s >= rule.threshold
    return (best if passed and best_s > 0 else UNLABELLED), best_s, runner, runner_s
