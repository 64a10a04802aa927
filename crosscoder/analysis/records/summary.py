"""summary.json: `AnalysisSummary`, with the personas the labels found and the top candidates (docs/ANALYSIS_FORMAT.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from crosscoder.analysis.records.candidate import JSON, Candidate, finite_or_none
from crosscoder.errors import DataError

UNLABELLED = "unlabelled"
"""The label of a candidate whose best trait stays below the label threshold."""


class LabelOutcome(NamedTuple):
    """What the persona summary reads of one candidate."""

    latent: int
    rank: int | None
    label: str | None
    confidence: float | None

    @classmethod
    def of(cls, c: Candidate) -> LabelOutcome:
        return cls(c.latent, c.rank, c.label, c.label_confidence)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> LabelOutcome:
        return cls(obj.get("latent"), obj.get("rank"), obj.get("label"), obj.get("label_confidence"))  # type: ignore[arg-type]


@dataclass
class PersonaLatent:
    """One latent labelled with a persona: its model-diff rank and its place among labelled candidates."""

    latent: int
    rank: int | None
    persona_rank: int
    confidence: float | None

    def to_json(self) -> JSON:
        return {
            "latent": self.latent,
            "rank": self.rank,
            "persona_rank": self.persona_rank,
            "confidence": self.confidence,
        }


@dataclass
class PersonaEntry:
    """A trait the labels found, with the candidates labelled with it in rank order."""

    trait: str
    persona_rank: int
    """The persona rank of its best latent."""
    latents: list[PersonaLatent] = field(default_factory=list)

    def to_json(self) -> JSON:
        return {"trait": self.trait, "persona_rank": self.persona_rank, "latents": [x.to_json() for x in self.latents]}


def personas_of(outcomes: Iterable[LabelOutcome]) -> list[PersonaEntry]:
    """The personas the labels found: one entry per trait with the candidates labelled with it in rank order, traits
    ordered by their best-ranked latent. ``persona_rank`` counts labelled candidates only (the k-th persona latent),
    so unlabelled candidates that outrank them (changes the fine-tune made that match no trait) do not push a
    persona down the list; ``rank`` stays the candidate's place in the model-diff ranking."""
    out: dict[str, PersonaEntry] = {}
    labelled = sorted(
        (o for o in outcomes if o.label not in (None, "", UNLABELLED)), key=lambda o: (o.rank is None, o.rank or 0)
    )
    for k, o in enumerate(labelled, start=1):
        entry = out.setdefault(str(o.label), PersonaEntry(str(o.label), k))
        entry.latents.append(PersonaLatent(o.latent, o.rank, k, o.confidence))
    return list(out.values())


def persona_summary(candidates: Sequence[Mapping[str, Any]]) -> list[JSON]:
    """`personas_of` read from candidates.json entries (the summary's ``personas`` list, as JSON)."""
    return [p.to_json() for p in personas_of(LabelOutcome.from_json(c) for c in candidates)]


TOP_KEYS = (
    "latent",
    "rank",
    "class",
    "score",
    "rel_norm",
    "cos",
    "label",
    "label_confidence",
    "best_trait",
    "runner_up",
    "label_false_rate",
    "description",
)
"""The candidate keys repeated in summary.json's ``top_candidates``."""


def top_candidate(c: Candidate) -> JSON:
    """One ``top_candidates`` entry of summary.json."""
    full = c.to_json()
    return {k: full[k] for k in TOP_KEYS}


@dataclass
class AnalysisSummary:
    """summary.json: what was analysed, the headline numbers, the personas found and the top candidates."""

    run_dir: str
    out_dir: str
    models: list[str]
    hooks: list[str]
    lens_hook: str
    architecture: str
    n_latents: int
    n_tokens: int
    control_activations: str | None
    fve: dict[str, float]
    """Fraction of variance explained per model on the analysed tokens."""
    fve_run: dict[str, float] | None
    """FVE recorded by training (run.json), None when absent."""
    class_counts: dict[str, int]
    artifacts: dict[str, int]
    """Latent Scaling artifacts: complete_shrinkage / latent_decoupling counts."""
    n_eligible: int
    n_candidates: int
    timings: dict[str, float]
    """Seconds per step (stats, table, load_models, baseline, evidence, next_token, said, labels, steering, splice,
    total)."""
    personas: list[PersonaEntry]
    top_candidates: list[JSON]
    config: JSON
    """The AnalyzeConfig the analysis ran with (nested as in configs/analyze.yaml)."""
    torch_threads: int
    label_warnings: list[str] = field(default_factory=list)
    """One line per trait whose labels are unreliable (the base model cannot separate its pos from its neg answers)."""
    trait_profiles: list[JSON] = field(default_factory=list)
    """Per trait: its generated spoken words, pos/neg separation and evidence weight (`labels.profile`)."""
    label_threshold: float | None = None
    """The label threshold used (raised to the null pairs' largest score when calibrated); None without labels."""

    def to_json(self) -> JSON:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["personas"] = [p.to_json() for p in self.personas]
        return out

    @classmethod
    def from_json(cls, obj: Any) -> AnalysisSummary:
        """Parse summary.json; a DataError names the first missing key."""
        if not isinstance(obj, dict):
            raise DataError("summary.json: expected a JSON object")
        optional = {"label_warnings", "trait_profiles", "label_threshold"}  # absent from earlier analyses
        missing = [f.name for f in fields(cls) if f.name not in obj and f.name not in optional]
        if missing:
            raise DataError(f"summary.json: missing key {missing[0]!r}")
        values = {f.name: obj[f.name] for f in fields(cls) if f.name in obj}
        values["personas"] = [
            PersonaEntry(str(p["trait"]), int(p["persona_rank"]), [
                PersonaLatent(int(x["latent"]), x.get("rank"), int(x["persona_rank"]), finite_or_none(x.get("confidence")))
                for x in p.get("latents", [])
            ])
            for p in obj["personas"]
        ]  # fmt: skip
        return cls(**values)
