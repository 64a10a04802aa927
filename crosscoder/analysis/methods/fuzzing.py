"""`fuzzing`: activation fuzzing (after Poser). Noise at a hook of each model, then the trait expression of the answers.

Each model of the pair answers the same evaluation questions (pooled over the trait library) greedily while fresh
Gaussian noise is added to its residual stream at one hook, every token, with a per-token norm of ``scale`` times
that model's mean residual norm there (measured on the questions); the noise draws are seeded identically for both
models. Every answer is read by the base model at the lens hook and projected on each trait's persona vector (the
base model's). A trait's evidence is the paired difference ft - base of those projections over (question, scale,
draw); its bootstrap z-score ranks the traits, and a trait is named when the z-score reaches ``min_z``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crosscoder.analysis.methods.base import (
    DiffingMethod,
    MethodCandidate,
    MethodResult,
    MethodRun,
    register_method,
    two_model_note,
)  # fmt: skip
from crosscoder.analysis.methods.traitvec import pooled_questions, trait_vectors
from crosscoder.errors import ModelError

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel


@dataclass
class Fuzzed:
    """Answers of one model under noise: one list per (scale, draw), in question order."""

    answers: dict[tuple[float, int], list[str]]
    mean_norm: float


def _noise_edit(scale_norm: float, gen: torch.Generator) -> Callable[[Tensor], Tensor]:
    def edit(x: Tensor) -> Tensor:
        z = torch.randn(x.shape, generator=gen, dtype=torch.float32) / x.shape[-1] ** 0.5
        return x + (scale_norm * z).to(x.dtype).to(x.device)

    return edit


@torch.no_grad()
def _question_norm(model: LoadedModel, hook: str, questions: list[str]) -> float:
    from crosscoder.analysis.evidence.trait_prompts import span_activations
    from crosscoder.personas.activations import span_token_mask
    from crosscoder.personas.generate import chat_messages, render_prompt

    texts = [render_prompt(model.tokenizer, chat_messages(q)) for q in questions]
    items = [span_token_mask(model.tokenizer, t, 0, len(t)) for t in texts]
    x_ND = span_activations(model, [hook], items, desc=f"fuzzing norm ({model.name})")[:, 0]
    return float(x_ND.norm(dim=-1).mean())


def fuzzed_answers(run: MethodRun, model: LoadedModel, hook: str, questions: list[str]) -> Fuzzed:
    """`model`'s greedy answers under every (scale, draw) of noise at `hook`."""
    from crosscoder.models.residual import edit_residual
    from crosscoder.personas.generate import GenerationConfig, chat_messages, generate_chat

    c = run.cfg.fuzzing
    if model.hf is None:
        raise ModelError(f"fuzzing: model {model.name} has no HF module to generate with; load it from HF weights")
    norm = _question_norm(model, hook, questions)
    gen = GenerationConfig(max_new_tokens=c.max_new_tokens, greedy=True, seed=c.seed, batch_size=16)
    convs = [chat_messages(q) for q in questions]
    out = {}
    for si, scale in enumerate(c.noise_scales):
        for draw in range(c.samples):
            g = torch.Generator().manual_seed(c.seed * 7919 + si * 101 + draw)
            with edit_residual(model, hook, _noise_edit(scale * norm, g)):
                out[(scale, draw)] = generate_chat(model.hf, model.tokenizer, convs, gen,
                                                   desc=f"fuzz {model.name} x{scale} #{draw}")  # fmt: skip
    return Fuzzed(out, norm)


@torch.no_grad()
def answer_projections(reader: LoadedModel, hook: str, questions: list[str], answers: list[str],
                       units_TD: Tensor) -> Tensor:  # fmt: skip
    """``[n_answers, n_traits]``: each (non-empty) answer's mean activation at `hook`, read by `reader`, on each unit
    trait vector."""
    from crosscoder.analysis.evidence.trait_prompts import item_means, span_activations
    from crosscoder.personas.activations import span_token_mask

    items = []
    for q, a in zip(questions, answers, strict=True):
        text = str(reader.tokenizer.apply_chat_template(
            [{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False))  # fmt: skip
        start = text.rfind(a)
        items.append(span_token_mask(reader.tokenizer, text, start, start + len(a)))
    x_ND = span_activations(reader, [hook], items, desc="fuzzing: read answers")[:, 0].float()
    return item_means(x_ND, items) @ units_TD.T


def bootstrap_z(d_NT: Tensor, n_boot: int, seed: int) -> Tensor:
    """Per column: mean / bootstrap standard deviation of the mean (0 where both are 0)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(d_NT.shape[0], (n_boot, d_NT.shape[0]), generator=g)
    sd_T = d_NT[idx].mean(1).std(0)
    mean_T = d_NT.mean(0)
    return torch.where(sd_T > 0, mean_T / sd_T.clamp_min(1e-12), torch.zeros_like(mean_T))


@register_method("fuzzing")
class ActivationFuzzing(DiffingMethod):
    """Traits ranked by the bootstrap z-score of (ft - base) trait expression under activation noise."""

    def cannot_apply(self, run: MethodRun) -> str | None:
        return None if run.traits else "no traits to score the fuzzed answers on (the trait library is empty)"

    def fit(self, run: MethodRun, result: MethodResult) -> None:
        c = run.cfg.fuzzing
        result.notes += two_model_note(run)
        base, ft = run.lms[0], run.lms[-1]
        hook = c.hook or f"blocks.{base.n_layers // 2}.hook_resid_post"
        lens = run.hooks[run.lens_idx]
        questions = pooled_questions(run.traits, c.questions)
        fz = {m.name: fuzzed_answers(run, m, hook, questions) for m in (base, ft)}
        names = sorted(run.traits)
        vecs = trait_vectors(base, lens, {t: run.traits[t] for t in names}, run.n_questions)
        units_TD = torch.stack([vecs[t].vector_D / vecs[t].vector_D.norm().clamp_min(1e-12) for t in names])
        diffs = []
        for key in fz[base.name].answers:
            a_base, a_ft = fz[base.name].answers[key], fz[ft.name].answers[key]
            keep = [i for i in range(len(questions)) if a_base[i].strip() and a_ft[i].strip()]
            qs = [questions[i] for i in keep]
            p_ft = answer_projections(base, lens, qs, [a_ft[i] for i in keep], units_TD)
            p_base = answer_projections(base, lens, qs, [a_base[i] for i in keep], units_TD)
            diffs.append(p_ft - p_base)
        d_NT = torch.cat(diffs)
        if d_NT.shape[0] == 0:
            result.notes.append("every fuzzed answer was empty: no trait is scored")
            return
        z_T = bootstrap_z(d_NT, c.bootstrap, c.seed)
        result.metrics = {"answers": float(d_NT.shape[0]), f"mean_norm_{base.name}": fz[base.name].mean_norm,
                          f"mean_norm_{ft.name}": fz[ft.name].mean_norm}  # fmt: skip
        if bool((d_NT == 0).all()):
            result.notes.append("the fuzzed answers of both models are identical: no trait is named")
        order = torch.argsort(z_T, descending=True)[: run.n_candidates]
        for r, t in enumerate(order.tolist()):
            z = float(z_T[t])
            result.candidates.append(MethodCandidate(
                rank=r + 1, name=f"trait {names[t]}", kind="trait", score=z,
                label=names[t] if z >= c.min_z else "unlabelled", label_confidence=z, trait=names[t],
                direction_D=vecs[names[t]].vector_D.clone(), details={"mean_shift": float(d_NT[:, t].mean())},
            ))  # fmt: skip
