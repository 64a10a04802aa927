"""`adl`: the activation-difference lens. The mean ft - base difference per position class, read and steered.

For each position class (all tokens, the first assistant tokens, the last token of each assistant turn) the mean
difference at the lens hook is a candidate direction, ranked by its norm relative to the base model's mean residual
norm. The shared labeller reads it like a latent: the logit lens of the direction through each model, the contexts
where the difference points most along it, the next-token shift there, its persona-vector alignment, and the base
model's answers steered along it (unit direction x strength x the base mean norm), which join the lexical evidence
as a crosscoder latent's steering would.
"""

from __future__ import annotations

import torch

from crosscoder.analysis.methods.base import (
    DiffingMethod,
    MethodCandidate,
    MethodResult,
    MethodRun,
    register_method,
    two_model_note,
)  # fmt: skip
from crosscoder.analysis.methods.labelling import label_directions
from crosscoder.analysis.methods.meandiff import MeanDiffs
from crosscoder.analysis.methods.scan import projection_encoder, scan_cache
from crosscoder.analysis.methods.traitvec import pooled_questions
from crosscoder.analysis.records.causal import Generation, SteeringRecord
from crosscoder.errors import ModelError


def steered_answers(run: MethodRun, dirs: list[torch.Tensor], base_norm: float) -> dict[int, SteeringRecord]:
    """The base model's greedy answers to the pooled questions, unsteered and steered along each direction."""
    from crosscoder.models.residual import edit_residual, steer_vector
    from crosscoder.personas.generate import GenerationConfig, chat_messages, generate_chat

    c = run.cfg.adl
    base, hook = run.lms[0], run.hooks[run.lens_idx]
    questions = pooled_questions(run.traits, c.questions)
    convs = [chat_messages(q) for q in questions]
    gen = GenerationConfig(max_new_tokens=c.max_new_tokens, greedy=True, seed=run.analysis.seed, batch_size=16)
    hf = base.hf
    if hf is None:
        raise ModelError(f"adl: model {base.name} has no HF module to generate with; load it from HF weights")
    plain = generate_chat(hf, base.tokenizer, convs, gen, desc="adl: unsteered")
    unsteered = [Generation(q, t) for q, t in zip(questions, plain, strict=True)]
    out = {}
    for n, d_D in enumerate(dirs):
        u_D = d_D / d_D.norm().clamp_min(1e-12)
        texts = []
        for s in c.steer_strengths:
            with edit_residual(base, hook, steer_vector(u_D * base_norm, s)):
                answers = generate_chat(hf, base.tokenizer, convs, gen, desc=f"adl: steer {n} x{s}")
            texts += [Generation(q, t, s) for q, t in zip(questions, answers, strict=True)]
        out[n] = SteeringRecord(trait="", model=base.name, hook=hook, score_hook="", strengths=[0.0, *c.steer_strengths],
                                trait_score=[], keyword_rate=[], generations=texts, unsteered=unsteered)  # fmt: skip
    return out


@register_method("adl")
class ActivationDifferenceLens(DiffingMethod):
    """Mean differences per position class, ranked by relative norm, labelled with their steering."""

    def fit(self, run: MethodRun, result: MethodResult) -> None:
        result.notes += two_model_note(run)
        md = run.mean_diffs
        classes = [c for c in md.mean_CD if md.relative_norm(c) > 1e-6]
        if not classes:
            result.notes.append("the mean difference is zero in every position class: nothing to rank")
            return
        classes.sort(key=md.relative_norm, reverse=True)
        classes = classes[: run.n_candidates]
        result.metrics = {f"relative_norm_{c}": md.relative_norm(c) for c in md.mean_CD}
        self._label(run, result, md, classes)

    @staticmethod
    def _label(run: MethodRun, result: MethodResult, md: MeanDiffs, classes: list[str]) -> None:
        dirs = [md.mean_CD[c] for c in classes]
        cands = [MethodCandidate(rank=r + 1, name=f"mean difference ({c})", kind="mean_diff",
                                 score=md.relative_norm(c), position=c, direction_D=md.mean_CD[c].clone(),
                                 details={"rows": float(md.count_C[c])})
                 for r, c in enumerate(classes)]  # fmt: skip
        enc = projection_encoder(torch.stack(dirs), run.lens_idx)
        scan = scan_cache(enc, run.acts, max_rows=run.analysis.stats.max_rows, batch_size=2048,
                          top_k=4 * run.analysis.evidence.n_top_examples)  # fmt: skip
        steering = steered_answers(run, dirs, md.base_norm)
        label_directions(run, cands, list(range(len(cands))), enc, scan, steering)
        result.candidates = cands
