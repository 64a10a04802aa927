"""One interface for every diffing method: a registry, what a method reads (`MethodRun`) and what it returns.

A method is fitted on a training run's activation cache and models (`MethodRun`) and returns ranked
`MethodCandidate`s, best first: a direction in the residual stream at the lens hook where the method has one (a
latent's decoder, a mean difference, a persona vector), the trait it names where it ranks traits itself, and the
labeller's full record (`Candidate`: evidence, per-trait signals, label) where the shared labeller labelled it. A
method that cannot apply to a run (the diff-SAE on a 3-model series) is skipped with the reason in its
`MethodResult`, never silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from crosscoder.analysis.config import AnalyzeConfig
from crosscoder.analysis.methods.config import METHOD_NAMES, MethodsConfig
from crosscoder.analysis.methods.meandiff import MeanDiffs, mean_differences
from crosscoder.analysis.records.candidate import Candidate, finite_or_none
from crosscoder.errors import ConfigError

if TYPE_CHECKING:
    from crosscoder.data.protocols import Activations
    from crosscoder.models.load import LoadedModel
    from crosscoder.personas.traits import Trait

JSON = dict[str, Any]


def _num(v: Any) -> float:
    """A JSON number back as a float (None, written for a non-finite value, reads as NaN)."""
    return float("nan") if v is None else float(v)


@dataclass
class MethodCandidate:
    """One ranked candidate of a diffing method."""

    rank: int
    """1 = the method's best."""
    name: str
    """What it is, e.g. "latent 812", "mean difference (last_assistant)", "trait pirate (all)"."""
    kind: str
    """latent | diff_latent | mean_diff | trait."""
    score: float
    """The method's ranking score (larger = ranked higher)."""
    label: str | None = None
    """The trait label, "unlabelled" below the threshold; None when nothing labelled it."""
    label_confidence: float | None = None
    position: str | None = None
    """The position class the candidate was measured on (all, first_assistant, last_assistant), if any."""
    trait: str | None = None
    """The trait a trait-ranking method (persona_vectors, fuzzing) names with this candidate."""
    direction_D: Tensor | None = None
    """Raw residual-stream direction at the lens hook (not written to JSON; see `MethodResult.save`)."""
    details: dict[str, float] = field(default_factory=dict)
    """Method-specific numbers (z-scores, norms, coefficients)."""
    evidence: Candidate | None = None
    """The shared labeller's record of this candidate (evidence, per-trait signals), when it labelled it."""

    def to_json(self) -> JSON:
        return {
            "rank": self.rank,
            "name": self.name,
            "kind": self.kind,
            "score": finite_or_none(self.score),
            "label": self.label,
            "label_confidence": finite_or_none(self.label_confidence),
            "position": self.position,
            "trait": self.trait,
            "details": {k: finite_or_none(v) for k, v in self.details.items()},
            "evidence": None if self.evidence is None else self.evidence.to_json(),
        }

    @classmethod
    def from_json(cls, d: JSON) -> MethodCandidate:
        """A candidate read back from `to_json` (without its direction and the labeller's evidence record)."""
        return cls(rank=int(d["rank"]), name=str(d["name"]), kind=str(d["kind"]), score=_num(d["score"]),
                   label=d.get("label"), label_confidence=d.get("label_confidence"), position=d.get("position"),
                   trait=d.get("trait"), details={k: _num(v) for k, v in (d.get("details") or {}).items()})  # fmt: skip


@dataclass
class MethodResult:
    """What one method returned on one run (written to ``<run>/methods/<method>.json``)."""

    method: str
    run_dir: str
    candidates: list[MethodCandidate] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None
    """Why the method could not apply to this run (None when it ran)."""
    notes: list[str] = field(default_factory=list)
    """What the reader should know (e.g. "the mean difference is zero: nothing to rank")."""
    architecture: str | None = None
    """The crosscoder architecture, for the crosscoder method."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Fit quality and other per-run numbers (e.g. the diff-SAE's FVE)."""

    def labels(self) -> list[str | None]:
        """Each candidate's label, in rank order."""
        return [c.label for c in sorted(self.candidates, key=lambda c: c.rank)]

    def to_json(self) -> JSON:
        return {
            "method": self.method,
            "architecture": self.architecture,
            "run_dir": self.run_dir,
            "skipped": self.skipped,
            "notes": list(self.notes),
            "seconds": round(self.seconds, 2),
            "metrics": {k: finite_or_none(v) for k, v in self.metrics.items()},
            "candidates": [c.to_json() for c in self.candidates],
        }

    @classmethod
    def from_json(cls, d: JSON) -> MethodResult:
        """A result read back from ``<run>/methods/<method>.json`` (candidates without directions and evidence)."""
        return cls(method=str(d["method"]), run_dir=str(d["run_dir"]),
                   candidates=[MethodCandidate.from_json(c) for c in d.get("candidates", [])],
                   seconds=float(d.get("seconds") or 0.0), skipped=d.get("skipped"), notes=list(d.get("notes", [])),
                   architecture=d.get("architecture"),
                   metrics={k: _num(v) for k, v in (d.get("metrics") or {}).items()})  # fmt: skip


@dataclass
class MethodRun:
    """What a method reads: the run, its activation cache, its models (loaded on demand) and the trait library."""

    cfg: MethodsConfig
    analysis: AnalyzeConfig
    """The analysis options every method shares: labels, evidence, next-token shift, device, seed."""
    run: Path
    info: dict[str, Any]
    """The run's run.json."""
    acts: Activations
    names: list[str]
    """Model display names, first = base, last = ft."""
    hooks: list[str]
    lens_idx: int
    out_dir: Path
    """<run>/methods: where each method writes its JSON and its own fitted weights."""
    traits: dict[str, Trait]
    load_models: Callable[[], list[LoadedModel]]
    """Loads the run's models (called at most once, by the first method that needs them)."""
    models: list[LoadedModel] | None = None
    _mean_diffs: MeanDiffs | None = field(default=None, repr=False)

    @property
    def lms(self) -> list[LoadedModel]:
        if self.models is None:
            self.models = self.load_models()
        return self.models

    @property
    def mean_diffs(self) -> MeanDiffs:
        """The per-class mean ft − base difference at the lens hook: one pass over the cache, shared by the methods."""
        if self._mean_diffs is None:
            stats = self.analysis.stats
            self._mean_diffs = mean_differences(self.acts, self.lens_idx,
                                                first_assistant_tokens=stats.first_assistant_tokens,
                                                max_rows=stats.max_rows)  # fmt: skip
        return self._mean_diffs

    @property
    def n_candidates(self) -> int:
        return self.cfg.n_candidates or self.analysis.rank.n_candidates

    @property
    def n_questions(self) -> int:
        return self.cfg.persona_questions or self.analysis.labels.questions


class DiffingMethod:
    """Base class of a diffing method; subclasses register with ``@register_method("name")``."""

    name: ClassVar[str] = ""

    def cannot_apply(self, run: MethodRun) -> str | None:
        """Why this method cannot run on `run` (one sentence), or None."""
        return None

    def fit(self, run: MethodRun, result: MethodResult) -> None:
        """Fill `result` (candidates best first, notes, metrics) from the run."""
        raise NotImplementedError


METHODS: dict[str, type[DiffingMethod]] = {}


def register_method(name: str) -> Callable[[type[DiffingMethod]], type[DiffingMethod]]:
    """Class decorator adding a diffing method to :data:`METHODS` under ``name``."""

    def deco(cls: type[DiffingMethod]) -> type[DiffingMethod]:
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


def get_method(name: str) -> DiffingMethod:
    """An instance of the method registered as `name`; a one-line ConfigError listing the known ones otherwise."""
    if name not in METHODS:
        raise ConfigError(f"--methods: unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")
    return METHODS[name]()


def two_model_note(run: MethodRun) -> list[str]:
    """The note a difference method adds on a series of more than two models (it compares the last with the first)."""
    if len(run.names) <= 2:
        return []
    return [f"{len(run.names)} models: compared {run.names[-1]} (last) with {run.names[0]} (first)"]
