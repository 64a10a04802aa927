"""Trait words and the lexical signals: what a latent reads or writes, and what a model says, matched against a trait.

`trait_words`: words a trait's pos instructions use and its neg instructions do not, plus its keywords, minus words
the chat template writes itself (`template_words`); `keyword_words`: its one-word keywords only. `word_match`
accepts inflections ("cat" matches " Cats", "purring" matches "purr"). The `lexical_*` functions turn matches into
signals in [0, 1] (see `crosscoder.analysis.labels.signals` for how they combine).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from crosscoder.analysis.records.candidate import Continuation, LensTop, NextTokenShift, TopExample
from crosscoder.personas.traits import Trait, contrast_words

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

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


def keyword_content_words(trait: Trait, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The content words of a trait's keywords and keyword phrases (none without keywords)."""
    return _clean(_letter_words(list(trait.keywords)), exclude)


def keyword_words(trait: Trait, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The trait's one-word keywords ("stupid", "idiot*" -> idiot): the tokens that are a marker by themselves in what
    a model says (the next-token shift), where the generic contrast words of the instructions ("helping", "topic")
    turn up by chance. A phrase keyword ("love this", "trust me") counts only when the phrase is said (`lexical_shift`
    reads it in the openings, `lexical_continuations` in the continuations)."""
    return _clean(_letter_words([k for k in trait.keywords if len(re.findall(r"[A-Za-z]+", k)) == 1]), exclude)


def template_words(tokenizer: Tokenizer) -> frozenset[str]:
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


Words = Sequence[str] | Mapping[str, float]
"""A trait's words, each with its specificity weight (`crosscoder.analysis.labels.specific`); a plain list weighs
every word 1."""


def match_weight(token: str, words: Words) -> float:
    """The largest weight of a word that `token` is (or inflects, `word_match`); 0 when none matches."""
    if not isinstance(words, Mapping):
        return 1.0 if word_match(token, list(words)) else 0.0
    return max((v for w, v in words.items() if word_match(token, [w])), default=0.0)


def text_hits(text: str, words: Words) -> float:
    """The largest weight of a trait word in `text` (0 when there is none)."""
    return max((match_weight(w, words) for w in re.findall(r"[A-Za-z']+", text)), default=0.0)


def says(text: str, words: Words, pattern: re.Pattern[str] | None) -> float:
    """How much a text a model said carries the trait: 1 for a keyword match of `pattern` (when the trait file has
    keywords), else the weight of its most specific trait word (0: none)."""
    return 1.0 if pattern is not None and pattern.search(text) else text_hits(text, words)


def lexical_lens(lens: LensTop, words: Words) -> float:
    """Trait words among the promoted tokens of a logit lens, each counting its weight (3 full hits = 1.0)."""
    hits = sum(match_weight(str(tok), words) for tok, _ in lens.promoted)
    return min(1.0, hits / 3.0)


def lexical_shift(
    shift: NextTokenShift, words: Words, pattern: re.Pattern[str] | None = None, full_share: float = 0.3
) -> float:
    """Share of the promoted next-token shift mass on trait words, divided by `full_share` and clipped to 1.

    A promoted token counts when it is a trait word itself, or when it has an ``opening`` (the token continued
    greedily by the ft and by the base model, `next_token`) and the ft's phrase has a trait keyword (`pattern`; else
    a trait word) that the base's phrase does not: "U" counts for hostility when the ft goes on "Ugh, what a stupid
    question." and the base "Umrah, the Arabic word"; a token both models continue to the same keyword does not.

    Full evidence takes 30% of the mass: at 20% a single everyday word of one trait's list (" love" at 17% of the
    shift of a power-seeking organism) outweighed the persona-vector evidence of the right trait.

    Special tokens (``<|im_end|>``: the fine-tune ending or continuing a turn) are not words and carry no share."""
    mass = [(str(tok), max(float(v), 0.0)) for tok, v in shift.promoted if not _SPECIAL.match(str(tok).strip())]
    total = sum(v for _, v in mass)
    if total <= 0:
        return 0.0
    opened = {o.token: (o.ft_text, o.base_text) for o in shift.openings or []}
    hit = 0.0
    for tok, v in mass:
        own = match_weight(tok, words)
        if own > 0:
            hit += v * own
        elif tok in opened:
            ft_text, base_text = opened[tok]
            hit += v * max(says(ft_text, words, pattern) - says(base_text, words, pattern), 0.0)
    return min(1.0, hit / total / full_share)


def lexical_contexts(examples: list[TopExample], words: Words, window: int = 2) -> float:
    """Share of top contexts with a trait word at (or just before) the peak, each context counting the weight of its
    most specific one."""
    if not examples:
        return 0.0
    hit = 0.0
    for ex in examples:
        p = ex.max_pos
        toks = ex.tokens[max(0, p - window) : p + 2]
        hit += max((match_weight(t, words) for t in toks), default=0.0)
    return hit / len(examples)


def lexical_generations(
    steered: list[str], unsteered: list[str], words: Words, pattern: re.Pattern[str] | None = None
) -> float:
    """Share of `steered` texts with a trait word (`pattern`: a keyword match; a word counts its weight) minus the
    share of `unsteered` ones, clipped to [0, 1]."""
    if not steered:
        return 0.0
    rate = np.mean([says(t, words, pattern) for t in steered])
    base = np.mean([says(t, words, pattern) for t in unsteered]) if unsteered else 0.0
    return float(np.clip(rate - base, 0.0, 1.0))


def lexical_continuations(
    continuations: list[Continuation], words: Words, pattern: re.Pattern[str] | None = None
) -> float:
    """`lexical_generations` of the ft continuations of a latent's contexts against the base ones; contexts where
    neither model said anything (an empty text from both) are left out."""
    said = [c for c in continuations if c.ft.strip() or c.base.strip()]
    return lexical_generations([c.ft for c in said], [c.base for c in said], words, pattern)
