"""Persona labels: match candidate latents against the trait library with three kinds of evidence.

For trait t and latent j (all signals in [0, 1]):

- **persona vector**: the larger of two readings by the trait's persona vectors. The decoder's **cosine**:
  ``clip(max(beta(d_ft), beta(d_ft - d_base)) / cosine_full, 0, 1)`` where beta_t is trait t's
  coefficient when the unit persona vectors of all traits labelled against (ft model, lens hook) jointly fit the unit
  decoder direction by least squares (`crosscoder.analysis.labels.candidates.unique_alignment`): the alignment no other
  trait explains (persona vectors of different traits share a large common component, the effect of any system
  prompt; with a single trait beta is the plain cosine). Raw cosines are reported too. And **said**
  (`crosscoder.analysis.evidence.said`): ``clip(said_t / said_full, 0, 1)``, how far what the ft says at the latent's top
  contexts differs from what the base says there along the trait's text persona vector (pos minus neg examples), in
  units of the examples' separation: the persona vector as a judge of the fine-tune's words, where the keywords
  below are a word list's judgement of the same words;
- **pos_neg**: ``clip((mean f_j | pos prompts - mean f_j | neg prompts) / mean_act_j, 0, 1)``: the latent's activation
  on the trait's questions under its pos vs neg system prompts (and on its pos vs neg examples when the file has
  them), relative to the latent's mean activation when it fires on the cache (`crosscoder.analysis.evidence.trait_prompts`);
- **lexical**: the largest of five matches. What a latent reads or writes is matched against the trait's words
  (`trait_words`: words its pos instructions use and its neg instructions do not, plus its keywords, minus words the
  chat template writes itself): hits among the promoted tokens of the decoder difference's logit lens (3 hits = 1.0)
  and the share of top contexts with a hit near the peak. What a model says is matched against the trait's keywords
  only (`keyword_words`, `Trait.keyword_regex`): the excess keyword rate of steered generations over unsteered ones,
  the share of the next-token shift (`crosscoder.analysis.evidence.next_token`: the tokens whose probability rose most from
  base to ft at the latent's top contexts, i.e. what the fine-tune starts to say where the latent fires) carried by
  keywords or by phrases with a keyword they open in the ft but not the base model (30% of the top-k shift mass =
  1.0), and the excess keyword rate of the ft model's greedy continuations of those contexts over the base model's.

combined = weighted mean (``label_weights``). Label = the best trait if combined >= ``label_threshold`` else
"unlabelled"; the confidence is the best combined score and the runner-up the second-best trait.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from crosscoder.analysis.labels.words import (
    lexical_contexts,
    lexical_continuations,
    lexical_generations,
    lexical_lens,
    lexical_shift,
)
from crosscoder.errors import DataError, ModelError

log = logging.getLogger(__name__)

UNLABELLED = "unlabelled"


def check_persona_vectors(pv: Any, model: Any) -> None:
    """Refuse persona vectors made for another model (content hash) or another width / depth."""
    if pv.model_hash != model.content_hash:
        raise DataError(
            f"persona vectors for trait {pv.trait} were computed for model hash {pv.model_hash[:12]}, not {model.name} "
            f"({model.content_hash[:12]}); recompute them for this model or drop the file"
        )
    if pv.vectors_LD.shape[-1] != model.d_model or pv.n_layers != model.n_layers:
        raise ModelError(
            f"persona vectors for trait {pv.trait} have shape {list(pv.vectors_LD.shape)} but model {model.name} has "
            f"{model.n_layers} layers of width {model.d_model}; recompute them for this model"
        )


def label_latent(
    evidence: dict[str, dict[str, float]], weights: list[float], threshold: float
) -> tuple[str, float, str, float]:
    """(label, confidence, runner-up, runner-up score) from per-trait signals; fills in each trait's 'combined'."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    for sig in evidence.values():
        sig["combined"] = float(w[0] * sig["persona_signal"] + w[1] * sig["pos_neg_signal"] + w[2] * sig["lexical"])
    ranked = sorted(evidence.items(), key=lambda kv: -kv[1]["combined"])
    if not ranked:
        return UNLABELLED, 0.0, "", 0.0
    best, best_s = ranked[0][0], ranked[0][1]["combined"]
    runner, runner_s = (ranked[1][0], ranked[1][1]["combined"]) if len(ranked) > 1 else ("", 0.0)
    return (best if best_s >= threshold else UNLABELLED), best_s, runner, runner_s


def trait_evidence(
    *, cos_ft: float, cos_diff: float, spec_ft: float, spec_diff: float, pos: float, neg: float, mean_act: float, lens: dict[str, list[list[Any]]] | None,
    contexts: list[dict[str, Any]], steered: list[str], unsteered: list[str], words: list[str], cosine_full: float,
    next_token: dict[str, Any] | None = None, keywords: list[str] | None = None, pattern: re.Pattern[str] | None = None,
    said: float = 0.0, said_full: float = 0.5,
) -> dict[str, float]:  # fmt: skip
    """The signals of one (latent, trait) pair, raw values alongside the [0, 1] signals. What a model says (steered
    generations, next-token shift, continuations) is matched against the trait's `keywords` (words) and keyword
    `pattern` when given; what a latent reads or writes (contexts, logit lens) against all its `words`. `said`: the
    persona vector's reading of what the ft says at the latent's contexts (`crosscoder.analysis.evidence.said`), full evidence
    at `said_full`; the persona-vector signal is the larger of it and the decoder's cosine signal."""
    cosine = max(cos_ft, cos_diff)
    specific = max(spec_ft, spec_diff)
    conts = (next_token or {}).get("continuations") or []
    spoken = words if keywords is None else keywords
    lex = {
        "lexical_lens": lexical_lens(lens, words) if lens else 0.0,
        "lexical_contexts": lexical_contexts(contexts, words),
        "lexical_generations": lexical_generations(steered, unsteered, spoken, pattern),
        "lexical_next_token": lexical_shift(next_token, spoken, pattern) if next_token else 0.0,
        "lexical_continuation": lexical_continuations(conts, spoken, pattern),
    }
    diff = pos - neg
    cosine_signal = float(np.clip(specific / cosine_full, 0.0, 1.0))
    said_signal = float(np.clip(said / said_full, 0.0, 1.0))
    return {
        "cosine": round(cosine, 5),
        "cosine_ft": round(cos_ft, 5),
        "cosine_diff": round(cos_diff, 5),
        "cosine_specific": round(specific, 5),
        "cosine_signal": cosine_signal,
        "said": round(said, 5),
        "said_signal": said_signal,
        "persona_signal": max(cosine_signal, said_signal),
        "pos_neg_diff": round(diff, 6),
        "pos_neg_signal": float(np.clip(diff / max(mean_act, 1e-9), 0.0, 1.0)),
        **lex,
        "lexical": max(lex.values()),
    }
