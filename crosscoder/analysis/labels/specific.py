"""How specific each of a trait's words is within the trait library (`specificity`), and generic changes.

A word the lexical signals find counts in proportion to how much it says about *this* trait rather than any:

- ``1 / n`` where n is the number of library traits whose word list (spoken words, and keywords with
  ``labels.hints``) has the word or an inflection of it: a word several traits' generated contrasts share
  ("wonderful" for two upbeat traits) is weak evidence for each;
- 0 for instruction-following vocabulary: a word that the instructions (pos or neg) of two or more traits use
  ("helping", "respond", "answers", "tone"): it describes how to follow a system prompt, not a persona.

`generic_share`: the share of a latent's next-token shift carried by tokens that say nothing about a persona: special
tokens (``<|im_end|>``: the fine-tune ends or continues its turn, i.e. answer length), pronouns, articles,
punctuation and white space. `content_contrast`: how much more often the ft than the base says its most
over-represented content n-gram at the latent's contexts (`crosscoder.analysis.labels.describe.contrast_ngrams`). A
candidate whose shift is mostly generic and whose ft says no content n-gram clearly more often than the base (a
latent that only ends answers earlier, or starts them with "I") is never read as a persona; one that ends answers
where the ft then appends a phrase of its own ("But honestly, it's not going to work out") is still read.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from crosscoder.analysis.labels.describe import contrast_ngrams, said_texts
from crosscoder.analysis.labels.words import _COMMON, word_match

if TYPE_CHECKING:
    from crosscoder.analysis.records.candidate import Candidate, NextTokenShift
    from crosscoder.personas.traits import Trait

_GENERIC_WORDS = frozenset(
    """i me my mine myself you your yours we us our he him his she her it its they them their the a an and or this
    that these those here there so well oh yes no""".split()  # noqa: SIM905
)
_SPECIAL = re.compile(r"^<\|?[^<>]*\|?>$")


def instruction_vocabulary(traits: dict[str, Trait]) -> frozenset[str]:
    """Words (3+ letters, lower case) the instructions of two or more traits use: how to follow a system prompt."""
    seen: Counter[str] = Counter()
    for trait in traits.values():
        words = {w for p in trait.instruction for text in (p.pos, p.neg) for w in re.findall(r"[a-z]+", text.lower())}
        seen.update(w for w in words if len(w) >= 3)
    return frozenset(w for w, n in seen.items() if n >= 2)


def specificity(lists: dict[str, list[str]], generic: frozenset[str]) -> dict[str, dict[str, float]]:
    """Per trait, each word of its list -> 1 / (number of traits whose list has it), 0 for `generic` words and
    very common English words (module docstring)."""
    generic_list = sorted(generic)
    out: dict[str, dict[str, float]] = {}
    for t, words in lists.items():
        weights: dict[str, float] = {}
        for w in words:
            if w in _COMMON or (generic_list and word_match(w, generic_list)):
                weights[w] = 0.0
                continue
            n = sum(1 for other in lists.values() if word_match(w, other))
            weights[w] = 1.0 / max(n, 1)
        out[t] = weights
    return out


def _is_generic(token: str) -> bool:
    s = token.strip()
    if not s or _SPECIAL.match(s):
        return True
    letters = re.sub(r"[^A-Za-z]", "", s).lower()
    return not letters or letters in _GENERIC_WORDS


def generic_share(shift: NextTokenShift | None) -> float:
    """Share of the promoted next-token shift mass on generic tokens (0 without a shift or without positive mass)."""
    if shift is None:
        return 0.0
    mass = [(str(tok), max(float(v), 0.0)) for tok, v in shift.promoted]
    total = sum(v for _, v in mass)
    if total <= 0:
        return 0.0
    return sum(v for tok, v in mass if _is_generic(tok)) / total


def content_contrast(c: Candidate) -> float:
    """The contrast (share of ft texts minus share of base texts) of the ft's most over-represented content n-gram."""
    ft, base = said_texts(c)
    grams = contrast_ngrams(ft, base, k=1)
    return grams[0][3] if grams else 0.0


def is_generic(c: Candidate, generic_max: float, content_min: float) -> bool:
    """A mostly generic next-token shift with no clear content change in what the ft says (module docstring)."""
    share = generic_share(c.next_token_shift)
    return c.next_token_shift is not None and share >= generic_max and content_contrast(c) < content_min
