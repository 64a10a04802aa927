"""How strongly a model (with any active edit) expresses every trait of the library, on held-out questions.

For each trait, the first `n` of its evaluation questions (never used to make persona vectors or SFT sets) are
answered greedily by the model, in one batched generation over all traits. Two scores per trait, as in
:mod:`crosscoder.personas.score`:

- ``keyword_rate``: the fraction of its answers containing one of the trait's keywords (the behavioural score of the
  leakage matrix), and ``rate_all_answers``, the same over the answers to every trait's questions (what the surgery
  targets use: a fine-tune may show a trait on any question, and more answers give a finer rate);
- ``projection``: the mean over answer tokens of the residual activation projected on the trait's unit persona
  vector at that vector's best hook. The vectors are the *base* model's, the same for every model compared; an
  active steering edit is part of the activations it reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from crosscoder.personas.activations import hook_index, span_means, span_token_mask
from crosscoder.personas.generate import GenerationConfig, chat_messages, generate_chat, render_prompt
from crosscoder.personas.score import keyword_counts
from crosscoder.personas.traits import Trait
from crosscoder.personas.vectors import PersonaVectors


@dataclass
class TraitExpression:
    """One trait's expression by one model on its held-out questions."""

    trait: str
    keyword_rate: float | None
    """Fraction of answers with a trait keyword (None when the trait has no keywords)."""
    projection: float
    """Mean projection of answer activations on the base model's unit persona vector at `hook`."""
    projection_std: float
    hook: str
    n: int
    rate_all_answers: float | None = None
    """Keyword rate over the answers to every trait's questions (a fine-tune may show a trait on any question)."""
    samples: list[str] = field(default_factory=list)
    """The first answers, for the report."""

    @property
    def score(self) -> float:
        """The behavioural score: keyword rate, or the projection for a trait without keywords."""
        return self.keyword_rate if self.keyword_rate is not None else self.projection


@dataclass
class ExpressionConfig:
    """How expression is measured."""

    n_questions: int = 10
    """Evaluation questions per trait (its first n)."""
    max_new_tokens: int = 48
    """Answer length."""
    batch_size: int = 24
    """Prompts per generate call."""
    n_samples: int = 2
    """Answers kept per trait for the report."""


def measure_expression(
    model: Any, traits: dict[str, Trait], vectors: dict[str, PersonaVectors], cfg: ExpressionConfig
) -> dict[str, TraitExpression]:
    """Every trait's expression by `model` (hooks active around the call apply to generation and activations)."""
    plan = [(name, q) for name, t in sorted(traits.items()) for q in t.eval_questions[: cfg.n_questions]]
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, greedy=True, batch_size=cfg.batch_size)
    answers = generate_chat(model.hf, model.tokenizer, [chat_messages(q) for _, q in plan], gen, desc="expression")
    items = []
    for (_, q), a in zip(plan, answers, strict=True):
        prompt = render_prompt(model.tokenizer, chat_messages(q))
        text = prompt + (a if a.strip() else ".")
        items.append(span_token_mask(model.tokenizer, text, len(prompt), len(text)))
    with torch.no_grad():
        acts_NLD = span_means(model, items, batch_size=8, desc="expression:acts")
    out = {}
    for name, trait in sorted(traits.items()):
        rows = [i for i, (t, _) in enumerate(plan) if t == name]
        texts = [answers[i] for i in rows]
        pv = vectors[name]
        hook = pv.best_hook
        li = hook_index(hook, model.n_layers)
        unit = pv.vectors_LD[li] / pv.vectors_LD[li].norm().clamp_min(1e-12)
        proj = acts_NLD[rows, li] @ unit
        _, rate, _ = keyword_counts(trait, texts)
        _, rate_all, _ = keyword_counts(trait, answers)
        out[name] = TraitExpression(
            name, rate, float(proj.mean()), float(proj.std(unbiased=False)), hook, len(rows), rate_all,
            texts[: cfg.n_samples],
        )  # fmt: skip
    return out


def relative_change(edited: float, reference: float, baseline: float) -> float:
    """How much of the fine-tune's added expression (reference - baseline) an edit keeps: (edited - baseline) /
    (reference - baseline); NaN when the fine-tune added none."""
    added = reference - baseline
    return (edited - baseline) / added if abs(added) > 1e-12 else float("nan")
