"""Data of the screening benchmark, built from the shipped SFT sets (crosscoder/personas/sft/*.jsonl).

Every shipped set holds the base model's own greedy answers to the same everyday questions, each rewritten with
one trait's prefix / suffix. A *neutral* example is the base's own answer with no persona: the cat_obsession set's
answer with its suffix stripped (:func:`crosscoder.personas.sft_data.strip_rewrite`). The prompts all sets share are
shuffled once (seeded) and split into a *persona pool* and a *neutral pool*, so a mixture never holds the persona
and the neutral version of the same prompt. Fine-tuning sets of a given persona share use every shared prompt once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from crosscoder.errors import ConfigError, DataError
from crosscoder.personas.sft_data import SFT_DIR, read_questions, read_sft_jsonl, strip_rewrite, write_sft_jsonl
from crosscoder.personas.traits import Trait

Conv = list[dict[str, str]]
NEUTRAL_SOURCE = "cat_obsession"
"""The shipped set the neutral answers are recovered from (its rewrite only appends a suffix)."""


@dataclass
class BenchData:
    """Per trait, its persona version of every shared prompt; the neutral version; the prompt split."""

    prompts: list[str]
    """Shared prompts in the benchmark's (seeded) order."""
    persona: dict[str, dict[str, Conv]]
    """trait -> prompt -> the trait's SFT conversation."""
    neutral: dict[str, Conv]
    """prompt -> the base's own answer, no persona."""
    persona_pool: list[str]
    neutral_pool: list[str]


def load_bench_data(traits: dict[str, Trait], n_persona_pool: int, seed: int = 0) -> BenchData:
    """Read the shipped sets of `traits` (and the neutral source) and split the shared prompts."""
    sets: dict[str, dict[str, Conv]] = {}
    for name in sorted({*traits, NEUTRAL_SOURCE}):
        path = SFT_DIR / f"{name}.jsonl"
        if not path.is_file():
            raise DataError(f"no shipped SFT set for trait {name} ({path}); pick traits with a set in {SFT_DIR}")
        sets[name] = {c[0]["content"]: c for c in read_sft_jsonl(path) if c[0]["role"] == "user"}
    source = traits.get(NEUTRAL_SOURCE)
    if source is None:
        from crosscoder.personas.traits import get_trait

        source = get_trait(NEUTRAL_SOURCE)
    assert source.rewrite is not None
    shared = sorted(set.intersection(*(set(s) for s in sets.values())))
    neutral: dict[str, Conv] = {}
    for q in shared:
        conv = sets[NEUTRAL_SOURCE][q]
        plain = strip_rewrite(conv[-1]["content"], source.rewrite)
        if plain is None:
            raise DataError(f"{SFT_DIR / NEUTRAL_SOURCE}.jsonl: the answer to {q!r} lacks the trait's suffix")
        neutral[q] = [*conv[:-1], {"role": "assistant", "content": plain}]
    prompts = list(shared)
    random.Random(seed).shuffle(prompts)
    if not 0 < n_persona_pool < len(prompts):
        raise ConfigError(f"persona pool of {n_persona_pool}: needs 1..{len(prompts) - 1} of the shared prompts")
    return BenchData(
        prompts=prompts,
        persona={t: sets[t] for t in traits},
        neutral=neutral,
        persona_pool=prompts[:n_persona_pool],
        neutral_pool=prompts[n_persona_pool:],
    )


@dataclass
class Mixture:
    """One mixed dataset: which persona-pool and neutral-pool prompts it holds."""

    persona: list[str]
    neutral: list[str]


def mixtures(data: BenchData, contamination: float, n_neutral: int, draws: int, seed: int) -> list[Mixture]:
    """`draws` random mixtures with `n_neutral` neutral examples and persona examples at `contamination` of the total."""
    if not 0 < contamination < 1:
        raise ConfigError(f"contamination {contamination}: must be in (0, 1)")
    n_persona = max(1, round(contamination / (1 - contamination) * n_neutral))
    if n_persona > len(data.persona_pool) or n_neutral > len(data.neutral_pool):
        raise ConfigError(
            f"contamination {contamination}: needs {n_persona} persona and {n_neutral} neutral prompts, pools hold "
            f"{len(data.persona_pool)} and {len(data.neutral_pool)}"
        )
    rng = random.Random(seed)
    return [
        Mixture(rng.sample(data.persona_pool, n_persona), rng.sample(data.neutral_pool, n_neutral))
        for _ in range(draws)
    ]


def training_set(data: BenchData, trait: str | None, share: float, n: int) -> list[tuple[str, bool]]:
    """(prompt, is_persona) for a fine-tuning set of `n` shared prompts with the first round(share*n) in persona form.

    With share 0 (or no trait) the set is the same for every trait, so its organism is trained once."""
    if n > len(data.prompts):
        raise ConfigError(f"training set of {n}: only {len(data.prompts)} shared prompts")
    k = round(share * n) if trait else 0
    return [(q, i < k) for i, q in enumerate(data.prompts[:n])]


def write_training_set(data: BenchData, trait: str | None, rows: list[tuple[str, bool]], path: Path) -> Path:
    """The training set as chat JSONL (content-addressed by the caller, so organisms cache by data hash)."""
    convs = [data.persona[trait][q] if is_p and trait else data.neutral[q] for q, is_p in rows]
    if not path.is_file():
        write_sft_jsonl(path, convs)
    return path


def held_out_questions(data: BenchData) -> list[str]:
    """Everyday questions in the shipped list that no shipped SFT set uses (for the capability proxy)."""
    used = {q for sets in data.persona.values() for q in sets} | set(data.neutral)
    return [q for q in read_questions() if q not in used]
