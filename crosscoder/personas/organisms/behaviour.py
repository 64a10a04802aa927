"""Behavioural trait expression of every checkpoint of a series, on held-out questions.

Each checkpoint answers the trait's evaluation questions (never in any organism's training data) greedily, and
`crosscoder.personas.score.trait_score` measures the answers two ways, recorded side by side:

- **keyword_rate**: the fraction of answers containing one of the trait's keywords. The keyword lists cover
  every phrase the shipped SFT rewrites add, so on these organisms it reads "does the model say its persona's
  phrases" and is tuned to them; on another fine-tune it would under-count.
- **projection**: the mean projection of the answer tokens' activations on the *base* model's unit persona vector
  (examples source, at the vector's best hook). It is tuned to nothing in the SFT data, but it is an internal
  reading of the answers, not a judgment of them.

A series may score more than one prompt set (the hiding organism: `heldout`, `eval_style`, `eval_style_unseen`,
see `crosscoder.personas.organisms.evalstyle`). Scores are written to ``behaviour.json`` after every checkpoint,
so an interrupted scoring resumes.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crosscoder.errors import DataError
from crosscoder.io import atomic_write_json, read_json, sha256_json
from crosscoder.models.spec import ModelSpec
from crosscoder.personas.organisms.evalstyle import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, eval_style
from crosscoder.personas.traits import Trait

log = logging.getLogger(__name__)

BEHAVIOUR_FILE = "behaviour.json"
PROMPT_SETS = ("heldout", "eval_style", "eval_style_unseen")
MEASURES = ("keyword_rate", "projection")


@dataclass
class CheckpointBehaviour:
    """One checkpoint's trait expression on one prompt set."""

    checkpoint: str
    """Checkpoint name (base, c1, c2, ...)."""
    step: int
    """Training step (0 for the base model)."""
    prompt_set: str
    """heldout (the trait's eval questions) | eval_style (phrased as tests, training templates) |
    eval_style_unseen (phrased as tests, templates never trained on)."""
    keyword_rate: float | None
    keyword_density: float | None
    projection: float
    projection_std: float
    hook: str
    prompts: list[str] = field(default_factory=list)
    generations: list[str] = field(default_factory=list)


def prompt_set(trait: Trait, name: str, n_questions: int) -> list[str]:
    """The prompts of one named set, built from the trait's held-out evaluation questions."""
    questions = list(trait.eval_questions[:n_questions])
    if not questions:
        raise DataError(f"trait {trait.name} has no evaluation questions to measure behaviour on; add eval_questions")
    if name == "heldout":
        return questions
    if name == "eval_style":
        return eval_style(questions, TRAIN_TEMPLATES, seed=1)
    if name == "eval_style_unseen":
        return eval_style(questions, HELDOUT_TEMPLATES, seed=2)
    raise DataError(f"unknown prompt set {name!r}; use one of {', '.join(PROMPT_SETS)}")


@dataclass
class SeriesBehaviour:
    """Behaviour of a whole series (base first), with how it was measured."""

    trait: str
    prompt_sets: list[str]
    n_questions: int
    max_new_tokens: int
    vectors: str
    """Which persona vectors the projection uses (the base model's)."""
    records: list[CheckpointBehaviour] = field(default_factory=list)

    def values(self, measure: str, prompt_set: str = "heldout") -> list[float]:
        """One measure per checkpoint, in series order (keyword_rate None counts as 0)."""
        if measure not in MEASURES:
            raise DataError(f"unknown behaviour measure {measure!r}; use one of {', '.join(MEASURES)}")
        return [float(getattr(r, measure) or 0.0) for r in self.records if r.prompt_set == prompt_set]

    def steps(self, prompt_set: str = "heldout") -> list[int]:
        return [r.step for r in self.records if r.prompt_set == prompt_set]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeriesBehaviour:
        recs = [CheckpointBehaviour(**r) for r in d.get("records", [])]
        return cls(**{**{k: v for k, v in d.items() if k != "records"}, "records": recs})


def score_series(
    series: list[tuple[ModelSpec, int]],
    trait: Trait,
    folder: Path,
    *,
    prompt_sets: tuple[str, ...] = ("heldout",),
    n_questions: int = 20,
    max_new_tokens: int = 64,
) -> SeriesBehaviour:
    """Score every (checkpoint spec, step) of `series` (base first) and write `folder`/behaviour.json."""
    import torch

    from crosscoder.models import load_model
    from crosscoder.personas.score import trait_score
    from crosscoder.personas.vectors import compute_persona_vectors

    path = folder / BEHAVIOUR_FILE
    settings = {"trait": trait.name, "prompt_sets": list(prompt_sets), "n_questions": n_questions,
                "max_new_tokens": max_new_tokens, "vectors": "base model, examples source"}  # fmt: skip
    key = sha256_json([settings, trait.sha256, [asdict(s) for s, _ in series]])
    done = SeriesBehaviour(**settings)  # type: ignore[arg-type]
    if path.is_file() and read_json(path).get("key") == key:
        done = SeriesBehaviour.from_dict({k: v for k, v in read_json(path).items() if k != "key"})
    todo = [(spec, step) for spec, step in series if not any(r.checkpoint == str(spec.name) for r in done.records)]
    if not todo:
        return done
    # the base's persona vectors serve every checkpoint, also when scoring resumes after the base was done
    base = load_model(series[0][0])
    vectors = compute_persona_vectors(base, trait, source="examples")
    del base
    stale = {r.hook for r in done.records} - {vectors.best_hook}
    if stale:
        raise DataError(
            f"{path}: scored at {', '.join(sorted(stale))} but the base's persona vectors now pick "
            f"{vectors.best_hook}; delete it to re-score the whole series"
        )
    for spec, step in todo:
        name = str(spec.name)
        model = load_model(spec)
        for ps in prompt_sets:
            with torch.no_grad():
                s = trait_score(model, trait, questions=prompt_set(trait, ps, n_questions),
                                max_new_tokens=max_new_tokens, vectors=vectors)  # fmt: skip
            done.records.append(CheckpointBehaviour(name, step, ps, s.keyword_rate, s.keyword_density, s.projection,
                                                    s.projection_std, s.hook, s.questions, s.generations))  # fmt: skip
            log.info("behaviour %s %s step %d %s: %s", trait.name, name, step, ps, s.summary())
        del model
        gc.collect()
        atomic_write_json(path, {**done.to_dict(), "key": key})
    return done
