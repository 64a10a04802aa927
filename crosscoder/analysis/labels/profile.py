"""What each trait looks like in the base model, from the trait file alone (`TraitProfile`).

The persona-vectors recipe (Chen et al. 2025): the base model answers the trait's questions under its pos and under
its neg instructions (`crosscoder.personas.responses.trait_evidence`); the *lexicon* ``L_t[v]`` is how much more
ready the pos instruction makes the model to say token v while it answers. The profile keeps

- **spoken words**: the word tokens whose lexicon is highest *relative to the other traits of the library*
  (``S_t[v] = L_t[v] - mean_{u != t} L_u[v]``, positive in both): what this trait's instruction makes the model say
  that the others' do not. Any persona prompt raises some words for every trait ("really", "so", an exclamation);
  they cancel in S. These are the words the lexical signals look for in what a model says, wherever a trait file's
  hand-written ``keywords`` were read before (keywords, when a file has them and ``labels.hints`` is on, are added);
- **generated texts**: the pos and neg answers, used as the trait's examples wherever ``examples`` were read (the
  pos/neg activations and the text persona vector of the said reading);
- **separation**: how well the model tells its own pos answers from its neg answers (cross-fitted, 0..1), and the
  **weight** the generated evidence gets: ``0.5 + 0.5 * clip(separation / 0.5, 0, 1)``. A model that ignores a
  persona prompt gives weak evidence, not wrong evidence; a separation below ``labels.min_separation`` is reported
  as a warning in the summary (the trait's labels are unreliable).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crosscoder.analysis.labels.words import _COMMON, template_words
from crosscoder.personas.responses import ResponseConfig, trait_evidence

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from crosscoder.models.load import LoadedModel
    from crosscoder.personas.traits import Trait

log = logging.getLogger(__name__)

_WORDLIKE = re.compile(r"^ [A-Za-z]{3,}$")


@dataclass
class TraitProfile:
    """A trait as the base model shows it (module docstring)."""

    trait: str
    words: list[str] = field(default_factory=list)
    """Spoken words specific to the trait (lower case), most specific first."""
    separation: float = 0.0
    """Cross-fitted 2 * AUC - 1 of the model's pos against neg answers (0: indistinguishable)."""
    weight: float = 1.0
    """Weight of the evidence drawn from the generated answers (0.5 .. 1)."""
    pos_texts: list[str] = field(default_factory=list)
    neg_texts: list[str] = field(default_factory=list)
    top_tokens: list[tuple[str, float]] = field(default_factory=list)
    """(token, specific lexicon value) of the words, for the report."""

    def to_json(self) -> dict[str, object]:
        return {"trait": self.trait, "words": self.words, "separation": round(self.separation, 4),
                "weight": round(self.weight, 4), "top_tokens": [[t, round(v, 4)] for t, v in self.top_tokens],
                "n_answers": len(self.pos_texts)}  # fmt: skip


def evidence_weight(separation: float) -> float:
    """0.5 for a model that cannot tell pos from neg answers, 1.0 from a separation of 0.5 up."""
    return 0.5 + 0.5 * min(max(separation / 0.5, 0.0), 1.0)


def word_ids(tokenizer: Tokenizer, exclude: frozenset[str]) -> tuple[Tensor, list[str]]:
    """Vocabulary ids of word-start tokens (a space and 3+ letters: a whole word or its head, never a fragment of
    one) that are not very common English words nor words of the chat template, and their lower-case letters."""
    ids, words = [], []
    for i in range(len(tokenizer)):
        tok = str(tokenizer.decode([i]))
        if not _WORDLIKE.match(tok):
            continue
        w = tok.strip().lower()
        if w in _COMMON or w in exclude:
            continue
        ids.append(i)
        words.append(w)
    return torch.tensor(ids, dtype=torch.long), words


def specific_lexicon(lex_TV: Tensor) -> Tensor:
    """``S_t = L_t - mean_{u != t} L_u`` (a single trait keeps its lexicon)."""
    n = lex_TV.shape[0]
    if n < 2:
        return lex_TV.clone()
    others = (lex_TV.sum(0, keepdim=True) - lex_TV) / (n - 1)
    return lex_TV - others


def spoken_words(
    lex_V: Tensor, spec_V: Tensor, ids: Tensor, words: list[str], n_words: int, min_value: float
) -> list[tuple[str, float]]:
    """The `n_words` word tokens with the highest specific lexicon (both it and the lexicon >= `min_value`), one entry
    per lower-case word."""
    s = spec_V[ids]
    ok = (s >= min_value) & (lex_V[ids] >= min_value)
    order = torch.argsort(torch.where(ok, s, torch.full_like(s, -1e9)), descending=True)
    out: dict[str, float] = {}
    for k in order.tolist():
        if not bool(ok[k]) or len(out) >= n_words:
            break
        out.setdefault(words[k], float(s[k]))
    return list(out.items())


def build_profiles(
    model: LoadedModel, traits: dict[str, Trait], cfg: ResponseConfig, n_words: int = 30, min_value: float = 0.05
) -> dict[str, TraitProfile]:
    """{trait: TraitProfile} from `model` (the base), answers and lexicons cached per model hash and trait file."""
    if model.hf is None:
        log.warning("no generated trait evidence: model %s has no Hugging Face module to generate with; the labels "
                    "read the trait instructions only", model.name)  # fmt: skip
        return {}
    tok = model.tokenizer
    resp = trait_evidence(model.hf, tok, model.content_hash, traits, cfg)
    names = list(traits)
    lex_TV = torch.stack([resp[t].lexicon_V for t in names]).float()
    spec_TV = specific_lexicon(lex_TV)
    ids, words = word_ids(tok, template_words(tok))
    out = {}
    for i, t in enumerate(names):
        top = spoken_words(lex_TV[i], spec_TV[i], ids, words, n_words, min_value)
        sep = resp[t].separation
        out[t] = TraitProfile(t, [w for w, _ in top], sep, evidence_weight(sep), list(resp[t].pos),
                              list(resp[t].neg), top)  # fmt: skip
        log.info("trait %s: separation %.2f, words %s", t, sep, ", ".join(w for w, _ in top[:12]))
    return out
