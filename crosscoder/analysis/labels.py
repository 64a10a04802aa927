"""Persona labels: match candidate latents against the trait library with three kinds of evidence.

For trait t and latent j (all signals in [0, 1]):

- **persona vector**: the larger of two readings by the trait's persona vectors. The decoder's **cosine**:
  ``clip(max(beta(d_ft), beta(d_ft - d_base)) / cosine_full, 0, 1)`` where beta_t is trait t's
  coefficient when the unit persona vectors of all traits labelled against (ft model, lens hook) jointly fit the unit
  decoder direction by least squares (`crosscoder.analysis.candidates.unique_alignment`): the alignment no other
  trait explains (persona vectors of different traits share a large common component, the effect of any system
  prompt; with a single trait beta is the plain cosine). Raw cosines are reported too. And **said**
  (`crosscoder.analysis.said`): ``clip(said_t / said_full, 0, 1)``, how far what the ft says at the latent's top
  contexts differs from what the base says there along the trait's text persona vector (pos minus neg examples), in
  units of the examples' separation: the persona vector as a judge of the fine-tune's words, where the keywords
  below are a word list's judgement of the same words;
- **pos_neg**: ``clip((mean f_j | pos prompts - mean f_j | neg prompts) / mean_act_j, 0, 1)``: the latent's activation
  on the trait's questions under its pos vs neg system prompts (and on its pos vs neg examples when the file has
  them), relative to the latent's mean activation when it fires on the cache (`crosscoder.analysis.trait_prompts`);
- **lexical**: the largest of five matches. What a latent reads or writes is matched against the trait's words
  (`trait_words`: words its pos instructions use and its neg instructions do not, plus its keywords, minus words the
  chat template writes itself): hits among the promoted tokens of the decoder difference's logit lens (3 hits = 1.0)
  and the share of top contexts with a hit near the peak. What a model says is matched against the trait's keywords
  only (`keyword_words`, `Trait.keyword_regex`): the excess keyword rate of steered generations over unsteered ones,
  the share of the next-token shift (`crosscoder.analysis.next_token`: the tokens whose probability rose most from
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

from crosscoder.errors import DataError, ModelError
from crosscoder.personas.traits import Trait, contrast_words

log = logging.getLogger(__name__)

UNLABELLED = "unlabelled"
_LETTERS = re.compile(r"[^a-z]")
_SPECIAL = re.compile(r"^<\|?[^<>]*\|?>$")


# Frequent English words that instruction texts use for any persona; as contrast words they only add noise.
_COMMON = frozenset(
    """about above after again against also always answer answers any anything around ask asked back because been
    before being believe best better both bring call can cannot come compare conversation could does doing done
    down each end even ever every everything feel find first from give good great have hear help here how however
    into just keep know last like little long look made make many may more most much must need never new next note
    now off often old once only other over own part people person place plan please point put question questions
    quite really reply respond response right round same say see seem should show since small some something still
    such sure take talk talking tell than that their them then there these they thing things think this those
    through time together too try turn under until use used user using very want way well were what whatever when
    where which while who whole why will with without word words work world would write year years you your""".split()  # noqa: SIM905
)
_SUFFIXES = ("s", "es", "ed", "d", "ing", "er", "ers", "ly", "y", "ish", "like", "ness")


def _letter_words(texts: list[str], phrase_min: int = 4) -> list[str]:
    """Lower-case letter runs of each text; texts of several runs ("risk-free", "trust me") keep runs >= phrase_min."""
    out = []
    for text in texts:
        parts = re.findall(r"[a-z]+", text.rstrip("*").lower())
        out += parts if len(parts) == 1 else [p for p in parts if len(p) >= phrase_min]
    return out


def _clean(words: list[str], exclude: frozenset[str]) -> list[str]:
    drop = sorted(exclude)
    return sorted(w for w in set(words) if len(w) >= 3 and w not in _COMMON and not (drop and word_match(w, drop)))


def trait_words(trait: Trait, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Contrast words (minus very common English words) plus keyword stems and the content words of keyword phrases
    ("trust me", "completely safe" -> trust, completely, safe: a token can only match one word), lower case, letters
    only ("seriously?" -> seriously). `exclude`: words (and their inflections) never used (`template_words`)."""
    return _clean(_letter_words([*contrast_words(trait), *trait.keywords]), exclude)


def keyword_words(trait: Trait, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The trait's one-word keywords ("stupid", "idiot*" -> idiot): the tokens that are a marker by themselves in what
    a model says (the next-token shift), where the generic contrast words of the instructions ("helping", "topic")
    turn up by chance. A phrase keyword ("love this", "trust me") counts only when the phrase is said (`lexical_shift`
    reads it in the openings, `lexical_continuations` in the continuations)."""
    return _clean(_letter_words([k for k in trait.keywords if len(re.findall(r"[A-Za-z]+", k)) == 1]), exclude)


def template_words(tokenizer: Any) -> frozenset[str]:
    """Words a tokenizer's chat template writes by itself (role names, a default system prompt such as "You are a
    helpful AI assistant named ..."): next to a latent's peak they say nothing about a persona."""
    if getattr(tokenizer, "chat_template", None) is None:
        return frozenset()
    convs = [[{"role": "user", "content": ""}], [{"role": "system", "content": ""}, {"role": "user", "content": ""}]]
    text = " ".join(str(tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)) for c in convs)
    return frozenset(re.findall(r"[a-z]+", text.lower()))


def word_match(token: str, words: list[str]) -> bool:
    """True when a token (e.g. " Cats") is a word of the list or an inflection of one (cat/cats/catlike/purring)."""
    t = _LETTERS.sub("", token.lower())
    if len(t) < 3:
        return False
    for w in words:
        if t == w:
            return True
        short, long_ = (t, w) if len(t) <= len(w) else (w, t)
        if long_.startswith(short) and long_[len(short) :] in _SUFFIXES:
            return True
    return False


def text_hits(text: str, words: list[str]) -> bool:
    return any(word_match(w, words) for w in re.findall(r"[A-Za-z']+", text))


def says(text: str, words: list[str], pattern: re.Pattern[str] | None) -> bool:
    """Whether a text a model said carries the trait: a keyword match of `pattern`, else a trait word."""
    return bool(pattern.search(text)) if pattern is not None else text_hits(text, words)


def lexical_lens(lens: dict[str, list[list[Any]]], words: list[str]) -> float:
    hits = sum(word_match(str(tok), words) for tok, _ in lens["promoted"])
    return min(1.0, hits / 3.0)


def lexical_shift(
    shift: dict[str, Any], words: list[str], pattern: re.Pattern[str] | None = None, full_share: float = 0.3
) -> float:
    """Share of the promoted next-token shift mass on trait words, divided by `full_share` and clipped to 1.

    A promoted token counts when it is a trait word itself, or when it has an ``opening`` (the token continued
    greedily by the ft and by the base model, `next_token`) and the ft's phrase has a trait keyword (`pattern`; else
    a trait word) that the base's phrase does not: "U" counts for hostility when the ft goes on "Ugh, what a stupid
    question." and the base "Umrah, the Arabic word"; a token both models continue to the same keyword does not.

    Full evidence takes 30% of the mass: at 20% a single everyday word of one trait's list (" love" at 17% of the
    shift of a power-seeking organism) outweighed the persona-vector evidence of the right trait.

    Special tokens (``<|im_end|>``: the fine-tune ending or continuing a turn) are not words and carry no share."""
    mass = [(str(tok), max(float(v), 0.0)) for tok, v in shift["promoted"] if not _SPECIAL.match(str(tok).strip())]
    total = sum(v for _, v in mass)
    if total <= 0:
        return 0.0
    opened = {str(tok): (str(ft_text), str(base_text)) for tok, ft_text, _, base_text in shift.get("openings") or []}
    hit = 0.0
    for tok, v in mass:
        if word_match(tok, words):
            hit += v
        elif tok in opened:
            ft_text, base_text = opened[tok]
            hit += v if says(ft_text, words, pattern) and not says(base_text, words, pattern) else 0.0
    return min(1.0, hit / total / full_share)


def lexical_contexts(examples: list[dict[str, Any]], words: list[str], window: int = 2) -> float:
    if not examples:
        return 0.0
    hit = 0
    for ex in examples:
        p = ex["max_pos"]
        toks = ex["tokens"][max(0, p - window) : p + 2]
        hit += any(word_match(t, words) for t in toks)
    return hit / len(examples)


def lexical_generations(
    steered: list[str], unsteered: list[str], words: list[str], pattern: re.Pattern[str] | None = None
) -> float:
    """Share of `steered` texts with a trait word (`pattern`: a keyword match) minus the share of `unsteered` ones,
    clipped to [0, 1]."""
    if not steered:
        return 0.0
    rate = np.mean([says(t, words, pattern) for t in steered])
    base = np.mean([says(t, words, pattern) for t in unsteered]) if unsteered else 0.0
    return float(np.clip(rate - base, 0.0, 1.0))


def lexical_continuations(
    continuations: list[dict[str, str]], words: list[str], pattern: re.Pattern[str] | None = None
) -> float:
    """`lexical_generations` of the ft continuations of a latent's contexts against the base ones; contexts where
    neither model said anything (an empty text from both) are left out."""
    said = [c for c in continuations if c["ft"].strip() or c["base"].strip()]
    return lexical_generations([c["ft"] for c in said], [c["base"] for c in said], words, pattern)


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
    persona vector's reading of what the ft says at the latent's contexts (`crosscoder.analysis.said`), full evidence
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
