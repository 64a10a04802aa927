"""`persona_vectors`: rank the library's traits by the projection of the mean ft - base shift on each persona vector.

The persona vectors are the base model's, at the lens hook, from the labeller's recipe (`traitvec.trait_vectors`). For
each position class the cosine of the mean shift with each trait's vector is measured; a trait's score is its best
class's cosine, and it is named (labelled) when that cosine exceeds what a random direction reaches in d_model
dimensions (``min_cosine``, default 3 / sqrt(d_model): three standard deviations of a random unit vector's cosine).
There is no latent here to label: the method names traits itself, so the shared labeller does not apply.
"""

from __future__ import annotations

import math

import torch

from crosscoder.analysis.methods.base import (
    DiffingMethod,
    MethodCandidate,
    MethodResult,
    MethodRun,
    register_method,
    two_model_note,
)  # fmt: skip
from crosscoder.analysis.methods.traitvec import trait_vectors


def random_cosine_bound(d_model: int) -> float:
    """Three standard deviations of the cosine between a fixed and a random direction in `d_model` dimensions."""
    return 3.0 / math.sqrt(d_model)


@register_method("persona_vectors")
class PersonaVectorProjection(DiffingMethod):
    """Traits ranked by the cosine of the mean shift (best position class) with their persona vector."""

    def cannot_apply(self, run: MethodRun) -> str | None:
        return None if run.traits else "no traits to project on (the trait library is empty)"

    def fit(self, run: MethodRun, result: MethodResult) -> None:
        result.notes += two_model_note(run)
        md = run.mean_diffs
        classes = [c for c in md.mean_CD if md.relative_norm(c) > 1e-6]
        if not classes:
            result.notes.append("the mean difference is zero in every position class: no trait is named")
            return
        hook = run.hooks[run.lens_idx]
        vecs = trait_vectors(run.lms[0], hook, run.traits, run.n_questions)
        bound = run.cfg.persona_vectors.min_cosine or random_cosine_bound(run.acts.d_model)
        result.metrics = {"min_cosine": bound}
        scored = []
        for trait, tv in vecs.items():
            v_D = tv.vector_D
            cos = {c: float(torch.nn.functional.cosine_similarity(md.mean_CD[c], v_D, dim=0)) for c in classes}
            best = max(cos, key=lambda c: cos[c])
            scored.append((cos[best], trait, best, cos, v_D))
        scored.sort(key=lambda s: s[0], reverse=True)
        for r, (score, trait, cls, cos, v_D) in enumerate(scored[: run.n_candidates]):
            proj = float(md.mean_CD[cls] @ (v_D / v_D.norm().clamp_min(1e-12)))
            result.candidates.append(MethodCandidate(
                rank=r + 1, name=f"trait {trait} ({cls})", kind="trait", score=score,
                label=trait if score >= bound else "unlabelled", label_confidence=score, position=cls, trait=trait,
                direction_D=v_D.clone(), details={**{f"cos_{c}": v for c, v in cos.items()}, "projection": proj},
            ))  # fmt: skip
