"""A description of every candidate, labelled or not: what the fine-tuned model says where the latent fires (and
when the base is steered along it) that the base model does not.

The texts compared, ft side against base side: the greedy continuations of the latent's top contexts by the ft and
by the base model, the phrases the top promoted next tokens open in each (`crosscoder.analysis.evidence.next_token`),
and the steered against the unsteered generations (`crosscoder.analysis.causal`). Every word n-gram (1-3 words) is
counted once per text; an n-gram's contrast is its share of ft texts minus its share of base texts, longer n-grams
preferred at equal contrast, n-grams of very common words only skipped. The description quotes the top contrasting
n-grams with their counts ('says "fun fact cats" (4/6 ft vs 0/6 base)'), so an unknown persona still reads as
something. Without such a contrast it falls back to the next-token shift ("ends the answer": the end-of-turn token
gained probability; or the tokens that gained most) and last to the tokens the latent fires on.
"""

from __future__ import annotations

import re
from collections import Counter

from crosscoder.analysis.labels.words import _COMMON
from crosscoder.analysis.records.candidate import Candidate

_TOKEN = re.compile(r"[a-z0-9']+|[!?]")
_SPECIAL = re.compile(r"^<\|?[^<>]*\|?>$")
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "be",
        "to",
        "of",
        "in",
        "on",
        "and",
        "or",
        "it",
        "its",
        "i",
        "me",
        "my",
        "we",
        "our",
        "as",
        "at",
        "by",
        "for",
        "not",
        "no",
        "so",
    ]
)


def _grams(text: str, n_max: int = 3) -> set[tuple[str, ...]]:
    words = _TOKEN.findall(text.lower())
    return {tuple(words[i : i + n]) for n in range(1, n_max + 1) for i in range(len(words) - n + 1)}


def _content(gram: tuple[str, ...]) -> bool:
    return any(w not in _FILLER and w not in _COMMON and (len(w) >= 3 or w in "!?") for w in gram)


def contrast_ngrams(
    ft: list[str], base: list[str], k: int = 3, min_count: int = 2
) -> list[tuple[str, int, int, float]]:
    """The `k` n-grams most over-represented in the ft texts against the base texts: (n-gram, ft texts with it,
    base texts with it, contrast), best first; an n-gram inside a chosen longer one with the same counts is
    skipped."""
    if not ft:
        return []
    c_ft = Counter(g for t in ft for g in _grams(t))
    c_base = Counter(g for t in base for g in _grams(t))
    need = min(min_count, len(ft))
    scored = []
    for g, n in c_ft.items():
        if n < need or not _content(g):
            continue
        contrast = n / len(ft) - (c_base[g] / len(base) if base else 0.0)
        if contrast > 0:
            scored.append((contrast * (1 + 0.25 * (len(g) - 1)), g, n, c_base[g], contrast))
    scored.sort(key=lambda x: (-x[0], -len(x[1]), x[1]))
    out: list[tuple[str, int, int, float]] = []
    chosen: list[tuple[str, ...]] = []
    for _, g, n, nb, contrast in scored:
        if any(" ".join(g) in " ".join(h) or " ".join(h) in " ".join(g) for h in chosen):
            continue
        chosen.append(g)
        out.append((" ".join(g), n, nb, contrast))
        if len(out) >= k:
            break
    return out


def said_texts(c: Candidate) -> tuple[list[str], list[str]]:
    """What the ft and the base say at the candidate's contexts (continuations, openings) and steered along it."""
    ft: list[str] = []
    base: list[str] = []
    nt = c.next_token_shift
    if nt is not None:
        for cont in nt.continuations:
            if cont.ft.strip() or cont.base.strip():
                ft.append(cont.ft)
                base.append(cont.base)
        for o in nt.openings or []:
            ft.append(o.ft_text)
            base.append(o.base_text)
    if c.steering is not None:
        steered, unsteered = c.steering.texts()
        ft += steered
        base += unsteered
    return ft, base


def _shift_phrase(c: Candidate) -> str:
    nt = c.next_token_shift
    if nt is None or not nt.promoted:
        return ""
    total = sum(max(float(v), 0.0) for _, v in nt.promoted) or 1.0
    top = [(str(t), max(float(v), 0.0) / total) for t, v in nt.promoted[:3]]
    if _SPECIAL.match(top[0][0].strip()):
        return f"ends the answer where the base goes on ({top[0][0].strip()} {top[0][1]:.0%} of the next-token shift)"
    return "next token shifts to " + ", ".join(f"{t!r} ({share:.0%})" for t, share in top)


def describe(c: Candidate) -> str:
    """A one-line description of a candidate (module docstring); never empty."""
    ft, base = said_texts(c)
    grams = contrast_ngrams(ft, base)
    if grams:
        said = "; ".join(f'"{g}" ({n}/{len(ft)} ft vs {nb}/{len(base)} base)' for g, n, nb, _ in grams)
        shift = _shift_phrase(c)
        return f"ft says {said}" + (f"; {shift}" if shift.startswith("ends") else "")
    shift = _shift_phrase(c)
    if shift:
        return shift + "; ft and base say the same words at its contexts"
    peaks = [ex.tokens[ex.max_pos] for ex in c.top_examples if 0 <= ex.max_pos < len(ex.tokens)]
    if peaks:
        common = ", ".join(repr(t) for t, _ in Counter(peaks).most_common(3))
        return f"fires on {common}; no text evidence of what the fine-tune says there"
    return "no text evidence (no top contexts)"
