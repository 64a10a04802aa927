"""Trait vectors at one hook of one model, and the evaluation questions the generating methods ask.

`trait_vectors` is the labeller's persona-vector recipe (`crosscoder.analysis.evidence.trait_prompts.pos_neg_acts`)
without a crosscoder: the trait's questions under its pos and neg instructions (and its pos and neg examples as
assistant turns), the per-item mean activation over the span, pos minus neg. The activations are cached on disk
(`span_activations`), so a second method or a second analysis of the same model reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crosscoder.analysis.evidence.trait_prompts import item_means, prompt_items, span_activations, span_counts

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel
    from crosscoder.personas.traits import Trait


@dataclass
class TraitVector:
    """One trait's vectors at one hook of one model (raw residual space)."""

    prompt_D: Tensor
    """Mean over the questions of (pos-instruction span mean - neg-instruction span mean)."""
    text_D: Tensor
    """Pos examples minus neg examples read as assistant turns (the prompt vector when the trait has no examples)."""
    has_examples: bool

    @property
    def vector_D(self) -> Tensor:
        """The persona vector: the prompt and example differences averaged (as the labeller's)."""
        return (self.prompt_D + self.text_D) / 2 if self.has_examples else self.prompt_D


@torch.no_grad()
def trait_vectors(model: LoadedModel, hook: str, traits: dict[str, Trait], n_questions: int) -> dict[str, TraitVector]:
    """{trait: TraitVector} of `model` at `hook`, from one length-sorted (cached) pass over every trait's items."""
    tok = model.tokenizer
    sides = {(n, side): prompt_items(tok, t, n_questions, side) for n, t in traits.items() for side in ("pos", "neg")}
    items = [it for its, _ in sides.values() for it in its]
    x_ND = span_activations(model, [hook], items, desc=f"trait prompts ({model.name})")[:, 0]
    parts = dict(zip(sides, torch.split(x_ND, [sum(span_counts(its)) for its, _ in sides.values()]), strict=True))
    out = {}
    for name in traits:
        means = {}
        for side in ("pos", "neg"):
            its, n_prompts = sides[(name, side)]
            per_item = item_means(parts[(name, side)], its)
            means[side] = (per_item[:n_prompts].mean(0), per_item[n_prompts:].mean(0) if len(its) > n_prompts else None)
        prompt = (means["pos"][0] - means["neg"][0]).float()
        pos_ex, neg_ex = means["pos"][1], means["neg"][1]
        if pos_ex is not None and neg_ex is not None:
            out[name] = TraitVector(prompt, (pos_ex - neg_ex).float(), True)
        else:
            out[name] = TraitVector(prompt, prompt, False)
    return out


def pooled_questions(traits: dict[str, Trait], n: int) -> list[str]:
    """`n` evaluation questions taken from the trait library one trait at a time (sorted names), none repeated: the
    generating methods ask every model the same questions, favouring no single trait."""
    pools = [list(traits[t].eval_questions) for t in sorted(traits)]
    out: list[str] = []
    depth = 0
    while len(out) < n and any(depth < len(p) for p in pools):
        for p in pools:
            if depth < len(p) and p[depth] not in out and len(out) < n:
                out.append(p[depth])
        depth += 1
    return out
