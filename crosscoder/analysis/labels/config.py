"""`LabelConfig`: the ``labels`` group of `crosscoder.analysis.config.AnalyzeConfig` (persona labels), in its own
module to keep the config module small; `crosscoder.analysis.config` re-exports it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from crosscoder.errors import ConfigError


def _at_least(obj: object, names: Iterable[str], low: int) -> None:
    """Refuse any of `names` below `low`, naming the field as analyze.labels.<name>."""
    for name in names:
        value = getattr(obj, name)
        if value < low:
            raise ConfigError(f"analyze.labels.{name}: must be >= {low}, got {value}")


def _default_weights() -> list[float]:
    return [1.0, 1.0, 1.0]


@dataclass
class LabelConfig:
    """Persona labels: the trait library, persona vectors and how the three signals combine."""

    enabled: bool = True
    """Compute persona vectors and pos/neg activations and label candidates against the trait library."""
    trait_dirs: list[str] = field(default_factory=list)
    """Extra folders of trait JSON files (persona-vectors format) to label against."""
    include_shipped_traits: bool = True
    """Also label against the traits shipped with the package."""
    traits: list[str] = field(default_factory=list)
    """Only use these trait names (empty = every loaded trait)."""
    persona_questions: int = 4
    """Extraction questions per trait used for persona vectors (0 = all); each is asked under every pos/neg instruction pair."""
    persona_vectors: list[str] = field(default_factory=list)
    """Precomputed persona-vector files (PersonaVectors.save) for the ft model; refused if made for another model."""
    questions: int = 8
    """Trait questions used for the pos-vs-neg activation of candidates (per instruction pair, up to 5 pairs)."""
    threshold: float = 0.35
    """Minimum label score (0..1, `crosscoder.analysis.labels.decide`) for a trait label; below it the candidate is
    'unlabelled'. The null calibration raises it to above the largest null score."""
    evidence_floor: float = 0.2
    """A kind of evidence (decoder cosine, said, pos-neg, each lexical source) counts from this signal value up."""
    min_kinds: int = 2
    """Kinds of evidence at or above `evidence_floor` a label needs (one saturated source never carries a label)."""
    generic_max: float = 0.5
    """A candidate whose next-token shift puts this share or more on generic tokens (end of turn, pronouns,
    punctuation) and whose ft says no content n-gram `content_min` more often than the base is never a persona."""
    content_min: float = 0.4
    """Contrast (share of ft texts minus share of base texts) of a content n-gram that makes a mostly generic
    candidate still a content change (`crosscoder.analysis.labels.specific`)."""
    weights: list[float] = field(default_factory=_default_weights)
    """Weights of the three label signals: [persona vector (decoder cosine or said), pos-neg activation difference,
    lexical]."""
    cosine_full: float = 0.5
    """Cosine with a persona vector that counts as full evidence (signal 1.0); smaller cosines scale linearly."""
    said: bool = True
    """Let the persona vectors read what the ft says at each candidate's contexts against what the base says
    (`crosscoder.analysis.evidence.said`; needs the next-token continuations); its signal joins the cosine signal."""
    said_full: float = 0.5
    """Said alignment (ft - base speech along a trait's persona vector, in units of its pos - neg example separation)
    that counts as full evidence; smaller values scale linearly."""
    hints: bool = True
    """Also use the trait files' optional hand-written `keywords` and `examples`; false = a trait is read from its
    instructions and questions only (how a plain persona-vectors file is labelled)."""
    generated: bool = True
    """Derive each trait's evidence from the base model's answers under its pos and neg instructions
    (`crosscoder.analysis.labels.profile`): spoken words and example texts, weighted by the model's pos/neg
    separation; cached per model hash and trait file."""
    response_questions: int = 4
    """Extraction questions each trait's answers are generated for."""
    response_pairs: int = 2
    """Instruction pairs each of those questions is asked under (one pos and one neg answer per pair)."""
    response_tokens: int = 24
    """Tokens per generated answer."""
    generated_examples: int = 4
    """Generated answers per side read as the trait's examples (pos/neg activations, the said text vector)."""
    spoken_words: int = 30
    """Spoken words kept per trait (the most trait-specific tokens of its lexicon)."""
    min_separation: float = 0.1
    """A trait whose generated pos and neg answers separate less than this (cross-fitted 2 AUC - 1) gets a warning
    in the summary: its labels are unreliable."""
    calibration: str = "shipped"
    """Null-pair calibration of the label threshold and the false-label rates (`crosscoder.analysis.labels.calibration`):
    'shipped', a calibration JSON path, or 'none' (the fixed `threshold` only, no false-label rate)."""

    def __post_init__(self) -> None:
        _at_least(self, ("questions", "min_kinds"), 1)
        for name in ("evidence_floor", "generic_max", "content_min"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"analyze.labels.{name}: {getattr(self, name)} must be in [0, 1]")
        _at_least(self, ("persona_questions",), 0)
        if self.threshold < 0:
            raise ConfigError(f"analyze.labels.threshold: must be >= 0, got {self.threshold}")
        if len(self.weights) != 3 or any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ConfigError(
                "analyze.labels.weights: need 3 non-negative weights [cosine, pos_neg, lexical] with a positive sum, "
                f"got {list(self.weights)}"
            )
        if not 0 < self.cosine_full <= 1:
            raise ConfigError(f"analyze.labels.cosine_full: {self.cosine_full} must be in (0, 1]")
        if not self.said_full > 0:
            raise ConfigError(f"analyze.labels.said_full: {self.said_full} must be > 0, e.g. 0.5")
        _at_least(self, ("response_questions", "response_pairs", "response_tokens", "spoken_words"), 1)
        _at_least(self, ("generated_examples",), 0)
        if not 0 <= self.min_separation <= 1:
            raise ConfigError(f"analyze.labels.min_separation: {self.min_separation} must be in [0, 1]")
        if not self.calibration:
            raise ConfigError("analyze.labels.calibration: empty; use 'shipped', a calibration JSON path or 'none'")
