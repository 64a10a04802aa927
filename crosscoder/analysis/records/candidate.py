"""The records of candidates.json: one `Candidate` per ranked latent with its evidence, labels and causal checks.

Every record writes itself with `to_json()` (key order and nulls exactly as docs/ANALYSIS_FORMAT.md lists them) and
reads itself back with `from_json()`; the analysis writes these records and every reader parses the same classes.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from crosscoder.analysis.records.causal import AblationRecord, SteeringRecord
from crosscoder.errors import DataError

JSON = dict[str, Any]
"""One JSON object as `json.loads` returns it."""
Ranked = list[tuple[str, float]]
"""[(token, value)] best first: promoted / suppressed tokens of a logit lens or a next-token shift."""


def finite_or_none(value: Any) -> float | None:
    """A float, or None for NaN / inf / missing (JSON has no NaN)."""
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _pairs(rows: Ranked) -> list[list[Any]]:
    return [[tok, val] for tok, val in rows]


def _ranked(obj: Any, where: str) -> Ranked:
    if not isinstance(obj, list):
        raise DataError(f"{where}: expected a list of [token, value] pairs")
    return [(str(tok), float(val)) for tok, val in obj]


def _need(obj: Any, keys: tuple[str, ...], where: str) -> JSON:
    """`obj` when it is an object with every key of `keys`, else a DataError naming the first missing one."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataError(f"{where}: missing key {missing[0]!r}")
    return obj


@dataclass
class LensTop:
    """A logit lens (or next-token shift) reading: the k most promoted and most suppressed tokens."""

    promoted: Ranked
    suppressed: Ranked

    def to_json(self) -> JSON:
        return {"promoted": _pairs(self.promoted), "suppressed": _pairs(self.suppressed)}

    @classmethod
    def from_json(cls, obj: Any, where: str = "logit_lens") -> LensTop:
        o = _need(obj, ("promoted", "suppressed"), where)
        return cls(_ranked(o["promoted"], where), _ranked(o["suppressed"], where))


@dataclass
class TopExample:
    """One top-activating context of a latent (one per sequence)."""

    seq: int
    pos: int
    """The peak's position in its sequence."""
    tokens: list[str]
    acts: list[float]
    """The latent's activation on each token of `tokens`."""
    max_pos: int
    """The peak's index in `tokens`."""
    max_act: float

    def to_json(self) -> JSON:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, obj: Any) -> TopExample:
        o = _need(obj, tuple(f.name for f in fields(cls)), "top_examples")
        return cls(int(o["seq"]), int(o["pos"]), [str(t) for t in o["tokens"]], [float(a) for a in o["acts"]],
                   int(o["max_pos"]), float(o["max_act"]))  # fmt: skip


@dataclass
class Continuation:
    """Each model's greedy continuation of one top context (`context` = the prefix's last tokens)."""

    context: str
    base: str
    ft: str

    def to_json(self) -> JSON:
        return {"context": self.context, "base": self.base, "ft": self.ft}


@dataclass
class Opening:
    """The phrase a promoted token opens in the ft model and in the base model, and the token's promoted mass."""

    token: str
    ft_text: str
    mass: float
    base_text: str

    def to_json(self) -> list[Any]:
        return [self.token, self.ft_text, self.mass, self.base_text]


@dataclass
class NextTokenShift:
    """What the fine-tune starts to say where the latent fires (`crosscoder.analysis.evidence.next_token`)."""

    promoted: Ranked
    suppressed: Ranked
    continuations: list[Continuation] = field(default_factory=list)
    openings: list[Opening] | None = None
    """None when no promoted token was continued (the key is then absent from the file)."""

    def lens(self) -> LensTop:
        return LensTop(self.promoted, self.suppressed)

    def to_json(self) -> JSON:
        out: JSON = {"promoted": _pairs(self.promoted), "suppressed": _pairs(self.suppressed),
                     "continuations": [c.to_json() for c in self.continuations]}  # fmt: skip
        if self.openings is not None:
            out["openings"] = [o.to_json() for o in self.openings]
        return out

    @classmethod
    def from_json(cls, obj: Any) -> NextTokenShift:
        o = _need(obj, ("promoted", "suppressed"), "next_token_shift")
        conts = [Continuation(str(c["context"]), str(c["base"]), str(c["ft"])) for c in o.get("continuations") or []]
        openings = None
        if o.get("openings") is not None:
            openings = [Opening(str(t), str(ft), float(m), str(b)) for t, ft, m, b in o["openings"]]
        return cls(_ranked(o["promoted"], "next_token_shift"), _ranked(o["suppressed"], "next_token_shift"), conts,
                   openings)  # fmt: skip


@dataclass
class TraitEvidence:
    """The signals of one (latent, trait) pair (`crosscoder.analysis.labels.signals.trait_evidence`)."""

    cosine: float
    cosine_ft: float
    cosine_diff: float
    cosine_specific: float
    cosine_signal: float
    said: float
    said_signal: float
    persona_signal: float
    """max(cosine_signal, said_signal): the first of the three weighted signals."""
    pos_neg_diff: float
    pos_neg_signal: float
    lexical_lens: float
    lexical_contexts: float
    lexical_generations: float
    lexical_next_token: float
    lexical_continuation: float
    lexical: float
    """The largest of the five lexical signals."""
    combined: float = 0.0
    """The weighted mean of the three signals (filled in by `crosscoder.analysis.labels.decide.label_latent`)."""
    label_score: float = 0.0
    """The score a label needs: the weighted mean with every kind of evidence capped at the second-strongest
    (`crosscoder.analysis.labels.decide`); 0 with fewer than two kinds above the floor or a generic candidate."""
    kinds: float = 0.0
    """Kinds of evidence at or above the floor."""

    def to_json(self) -> JSON:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, obj: Any) -> TraitEvidence:
        """Parse one trait's evidence; the decision fields (`combined` and after) default to 0 in older files."""
        required = tuple(f.name for f in fields(cls) if f.default is MISSING)
        o = _need(obj, required, "label_evidence")
        return cls(**{f.name: float(o.get(f.name, 0.0)) for f in fields(cls)})


@dataclass
class PosNegMeans:
    """The latent's mean activation on a trait's pos and neg prompts."""

    pos_mean: float
    neg_mean: float

    def to_json(self) -> JSON:
        return {"pos_mean": self.pos_mean, "neg_mean": self.neg_mean}


ROW_KEYS = ("latent", "rank", "score", "score_slice", "class", "rel_norm", "cos", "nu_err", "nu_recon", "ls_artifact",
            "freq_all", "max_act", "mean_act_all")  # fmt: skip
"""The latent-table columns copied into every candidate, in file order."""


@dataclass
class Candidate:
    """One ranked latent of candidates.json: its table row, evidence, labels and causal checks."""

    latent: int
    rank: int
    score: float | None
    score_slice: str
    klass: str
    """The latent's class (the `class` key)."""
    rel_norm: float | None
    cos: float | None
    nu_err: float | None
    nu_recon: float | None
    ls_artifact: str
    freq_all: float | None
    max_act: float | None
    mean_act_all: float | None
    top_examples: list[TopExample] = field(default_factory=list)
    logit_lens: dict[str, LensTop] = field(default_factory=dict)
    """Per model name (decoder through that model's unembedding) and "diff" (d_ft - d_base through the ft's)."""
    next_token_shift: NextTokenShift | None = None
    label: str | None = None
    """The best trait, "unlabelled" below the threshold, None when labels did not run."""
    label_confidence: float | None = None
    best_trait: str | None = None
    runner_up: str | None = None
    runner_up_score: float | None = None
    label_evidence: dict[str, TraitEvidence] = field(default_factory=dict)
    label_false_rate: float | None = None
    """The best score's false-label rate on null pairs (`crosscoder.analysis.labels.calibration`); None uncalibrated."""
    generic_share: float | None = None
    """Share of the next-token shift on generic tokens (end of turn, pronouns, punctuation:
    `crosscoder.analysis.labels.specific`); a mostly generic candidate gets no persona label. None: not measured."""
    description: str = ""
    """What the ft says at the latent's contexts (and steered along it) that the base does not
    (`crosscoder.analysis.labels.describe`); filled for every candidate, labelled or not."""
    pos_neg: dict[str, PosNegMeans] = field(default_factory=dict)
    steering: SteeringRecord | None = None
    ablation: AblationRecord | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Candidate:
        """The candidate of a latent-table row (a JSON-ready mapping of its columns, NaN as None)."""

        def num(key: str) -> float | None:
            return finite_or_none(row[key])

        return cls(int(row["latent"]), int(row["rank"]), num("score"), str(row["score_slice"]), str(row["class"]),
                   num("rel_norm"), num("cos"), num("nu_err"), num("nu_recon"), str(row["ls_artifact"]),
                   num("freq_all"), num("max_act"), num("mean_act_all"))  # fmt: skip

    def row_json(self) -> JSON:
        values = (self.latent, self.rank, self.score, self.score_slice, self.klass, self.rel_norm, self.cos,
                  self.nu_err, self.nu_recon, self.ls_artifact, self.freq_all, self.max_act, self.mean_act_all)  # fmt: skip
        return dict(zip(ROW_KEYS, values, strict=True))

    def to_json(self) -> JSON:
        return {
            **self.row_json(),
            "top_examples": [e.to_json() for e in self.top_examples],
            "logit_lens": {name: lens.to_json() for name, lens in self.logit_lens.items()},
            "next_token_shift": None if self.next_token_shift is None else self.next_token_shift.to_json(),
            "label": self.label,
            "label_confidence": self.label_confidence,
            "best_trait": self.best_trait,
            "runner_up": self.runner_up,
            "runner_up_score": self.runner_up_score,
            "label_evidence": {t: ev.to_json() for t, ev in self.label_evidence.items()},
            "label_false_rate": self.label_false_rate,
            "generic_share": self.generic_share,
            "description": self.description,
            "pos_neg": {t: pn.to_json() for t, pn in self.pos_neg.items()},
            "steering": None if self.steering is None else self.steering.to_json(),
            "ablation": None if self.ablation is None else self.ablation.to_json(),
        }

    @classmethod
    def from_json(cls, obj: Any) -> Candidate:
        """Parse one candidates.json entry; a DataError names the first missing key."""
        o = _need(obj, (*ROW_KEYS, "top_examples", "logit_lens", "next_token_shift"), "candidates.json entry")
        c = cls.from_row(o)
        c.top_examples = [TopExample.from_json(e) for e in o["top_examples"]]
        c.logit_lens = {str(k): LensTop.from_json(v) for k, v in o["logit_lens"].items()}
        c.next_token_shift = None if o["next_token_shift"] is None else NextTokenShift.from_json(o["next_token_shift"])
        c.label, c.best_trait, c.runner_up = o.get("label"), o.get("best_trait"), o.get("runner_up")
        c.label_confidence = finite_or_none(o.get("label_confidence"))
        c.runner_up_score = finite_or_none(o.get("runner_up_score"))
        c.label_evidence = {str(t): TraitEvidence.from_json(v) for t, v in (o.get("label_evidence") or {}).items()}
        c.label_false_rate = finite_or_none(o.get("label_false_rate"))
        c.generic_share = finite_or_none(o.get("generic_share"))
        c.description = str(o.get("description") or "")
        c.pos_neg = {
            str(t): PosNegMeans(float(v["pos_mean"]), float(v["neg_mean"])) for t, v in (o.get("pos_neg") or {}).items()
        }
        c.steering = None if o.get("steering") is None else SteeringRecord.from_json(o["steering"])
        c.ablation = None if o.get("ablation") is None else AblationRecord.from_json(o["ablation"])
        return c
