"""Persona labels: match candidate latents against the trait library with three kinds of evidence.

For trait t and latent j (all signals in [0, 1]):

- **persona vector**: the larger of two readings by the trait's persona vectors. The decoder's **cosine**:
  ``clip(max(beta(d_ft), beta(d_ft - d_base)) / cosine_full, 0, 1)`` where beta_t is trait t's
  coefficient when the unit persona vectors of all traits labelled against (ft model, lens hook) jointly fit the unit
  decoder direction by least squares (`crosscoder.analysis.labels.assign.unique_alignment`): the alignment no other
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
  (`crosscoder.analysis.labels.assign.trait_word_lists`: the spoken words generated from the trait file, plus the
  content words of its keywords with ``labels.hints``; the instructions' contrast words only when there is nothing
  else, and then not against the logit lens): hits among the promoted tokens of the decoder difference's logit lens
  (3 hits = 1.0) and the share of top contexts with a hit near the peak. What a model says is matched against the
  spoken words and one-word keywords (`keyword_words`, `Trait.keyword_regex`): the excess rate of steered generations over unsteered ones,
  the share of the next-token shift (`crosscoder.analysis.evidence.next_token`: the tokens whose probability rose most from
  base to ft at the latent's top contexts, i.e. what the fine-tune starts to say where the latent fires) carried by
  keywords or by phrases with a keyword they open in the ft but not the base model (30% of the top-k shift mass =
  1.0), and the excess keyword rate of the ft model's greedy continuations of those contexts over the base model's.

Each word counts its specificity within the library (`crosscoder.analysis.labels.specific`: 1 / the number of traits
whose list has it, 0 for instruction-following vocabulary), and the instructions' own words are never matched against
the logit lens. How the signals become a label: `crosscoder.analysis.labels.decide`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from crosscoder.analysis.labels.words import (
    lexical_contexts,
    lexical_continuations,
    lexical_generations,
    lexical_lens,
    lexical_shift,
)
from crosscoder.analysis.records.candidate import LensTop, NextTokenShift, TopExample, TraitEvidence
from crosscoder.errors import DataError, ModelError

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel
    from crosscoder.personas.vectors import PersonaVectors

log = logging.getLogger(__name__)


def check_persona_vectors(pv: PersonaVectors, model: LoadedModel) -> None:
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


@dataclass
class LatentReading:
    """What a candidate shows, whatever the trait: the text signals are matched against each trait's words."""

    lens: LensTop | None = None
    """Logit lens of the decoder difference (the promoted tokens are matched)."""
    contexts: list[TopExample] = field(default_factory=list)
    next_token: NextTokenShift | None = None
    steered: list[str] = field(default_factory=list)
    """Answers of the base model steered along the latent (empty before steering ran)."""
    unsteered: list[str] = field(default_factory=list)
    mean_act: float = 0.0
    """The latent's mean activation where it fires (scales the pos - neg difference)."""


@dataclass
class TraitMeasures:
    """The numbers measured for one (latent, trait) pair."""

    cos_ft: float = 0.0
    """Cosine of the ft decoder with the trait's persona vector."""
    cos_diff: float = 0.0
    """Cosine of the decoder difference with it."""
    spec_ft: float = 0.0
    """The trait's least-squares coefficient for the unit ft decoder (`unique_alignment`)."""
    spec_diff: float = 0.0
    """The same for the unit decoder difference."""
    pos: float = 0.0
    """Mean latent activation on the trait's pos prompts."""
    neg: float = 0.0
    """... and on its neg prompts."""
    said: float = 0.0
    """The persona vector's reading of what the ft says at the latent's contexts (`crosscoder.analysis.evidence.said`)."""


@dataclass
class TraitWords:
    """What the lexical signals match: all trait words for what a latent reads or writes (contexts, logit lens),
    its one-word `keywords` and keyword `pattern` (when the trait has keywords) for what a model says."""

    words: list[str]
    keywords: list[str] | None = None
    pattern: re.Pattern[str] | None = None
    weight: float = 1.0
    """Weight of the what-a-model-says signals (generations, next-token shift, continuations): the trait profile's
    evidence weight (`crosscoder.analysis.labels.profile`) when its spoken words were generated, 1.0 otherwise."""
    specific: dict[str, float] = field(default_factory=dict)
    """Per word, how specific it is to the trait within the library (`crosscoder.analysis.labels.specific`); a word
    missing here weighs 1."""
    lens: bool = True
    """Whether `words` may be matched against logit-lens tokens: false when they are the instructions' own wording
    (a trait without generated or hand-written words), which a lens matches by chance ("helping" ~ " Help")."""

    def weighted(self, words: list[str]) -> dict[str, float]:
        return {w: self.specific.get(w, 1.0) for w in words}

    @property
    def spoken(self) -> list[str]:
        return self.words if self.keywords is None else self.keywords


def trait_evidence(
    reading: LatentReading, measured: TraitMeasures, words: TraitWords, cosine_full: float, said_full: float = 0.5
) -> TraitEvidence:
    """The signals of one (latent, trait) pair, raw values alongside the [0, 1] signals. The persona-vector signal is
    the larger of the decoder's cosine signal (full at `cosine_full`) and the said signal (full at `said_full`)."""
    m, r, pattern, w = measured, reading, words.pattern, words.weight
    read, spoken = words.weighted(words.words), words.weighted(words.spoken)
    lex = {
        "lexical_lens": lexical_lens(r.lens, read) if r.lens and words.lens else 0.0,
        "lexical_contexts": lexical_contexts(r.contexts, read),
        "lexical_generations": w * lexical_generations(r.steered, r.unsteered, spoken, pattern),
        "lexical_next_token": w * lexical_shift(r.next_token, spoken, pattern) if r.next_token else 0.0,
        "lexical_continuation": w * lexical_continuations(r.next_token.continuations if r.next_token else [],
                                                          spoken, pattern),
    }  # fmt: skip
    specific = max(m.spec_ft, m.spec_diff)
    diff = m.pos - m.neg
    cosine_signal = float(np.clip(specific / cosine_full, 0.0, 1.0))
    said_signal = float(np.clip(m.said / said_full, 0.0, 1.0))
    return TraitEvidence(
        cosine=round(max(m.cos_ft, m.cos_diff), 5),
        cosine_ft=round(m.cos_ft, 5),
        cosine_diff=round(m.cos_diff, 5),
        cosine_specific=round(specific, 5),
        cosine_signal=cosine_signal,
        said=round(m.said, 5),
        said_signal=said_signal,
        persona_signal=max(cosine_signal, said_signal),
        pos_neg_diff=round(diff, 6),
        pos_neg_signal=float(np.clip(diff / max(r.mean_act, 1e-9), 0.0, 1.0)),
        lexical=max(lex.values()),
        **lex,
    )
