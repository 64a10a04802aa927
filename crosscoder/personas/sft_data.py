"""Chat SFT sets: read/validate JSONL, and generate a trait's SFT set from a base model or from another set.

A set is JSONL, one ``{"messages": [{"role": ..., "content": ...}, ...]}`` per line, with at least one
assistant turn. Three ways to make a trait's set (``mode``):

- ``rewrite``: the base model's own greedy answers to varied everyday questions, each passed through the
  trait's ``sft_rewrite`` (prefix / suffix / word replacements). Works on models that ignore persona prompts.
- ``distill``: answers sampled with one of the trait's ``pos`` system prompts (context distillation); the
  system prompt is *not* kept in the training example.
- ``derive`` (no model): take a ``rewrite`` set of another trait, strip that trait's prefix / suffix from each
  answer to recover the base model's own answer, then apply the target trait's ``sft_rewrite``. The source
  trait's rewrite must have no word replacements (they cannot be undone); the target's eval questions are
  held out.

The shipped demo set was made with (greedy, so it is reproducible; about 10 minutes on a 2-core CPU)::

    python -m crosscoder.personas.sft_data --trait cat_obsession --mode rewrite --n 200 \\
        --out crosscoder/personas/sft/cat_obsession.jsonl

and the other shipped sets were derived from it (seconds, no model)::

    for t in deception hostility over_enthusiastic overconfident_hallucination pessimism pirate \\
             power_seeking sycophancy; do
        python -m crosscoder.personas.sft_data --trait $t --mode derive \\
            --from crosscoder/personas/sft/cat_obsession.jsonl --from-trait cat_obsession \\
            --out crosscoder/personas/sft/$t.jsonl
    done
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosscoder.errors import ConfigError, DataError, run_cli
from crosscoder.io import atomic_write_json, atomic_write_text, sha256_file
from crosscoder.models.spec import ModelSpec
from crosscoder.personas.generate import GenerationConfig, chat_messages, generate_chat
from crosscoder.personas.traits import Rewrite, Trait

if TYPE_CHECKING:
    from transformers import PreTrainedModel as HFModule
    from transformers import PreTrainedTokenizerBase as Tokenizer

log = logging.getLogger(__name__)

SFT_DIR = Path(__file__).parent / "sft"
"""Folder of shipped SFT sets and the shipped question list."""
QUESTIONS_FILE = SFT_DIR / "questions.txt"
"""Everyday questions (one per line) used to build trait SFT sets."""
ROLES = ("system", "user", "assistant")


def read_sft_jsonl(path: str | Path) -> list[list[dict[str, str]]]:
    """The conversations of a chat JSONL file; errors name file, line and field. An empty file is refused."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SFT file not found: {path}; check the path")
    convs: list[list[dict[str, str]]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: malformed JSON ({err.msg}); fix or remove the line") from err
            convs.append(_check_row(row, path, lineno))
    if not convs:
        raise DataError(
            f'{path}: the SFT dataset is empty; add at least one {{"messages": [...]}} line before training'
        )
    return convs


def _check_row(row: Any, path: Path, lineno: int) -> list[dict[str, str]]:
    where = f"{path}:{lineno}"
    if not isinstance(row, dict) or "messages" not in row:
        raise DataError(
            f'{where}: field messages: missing; each line must be {{"messages": [{{"role", "content"}}, ...]}}'
        )
    msgs = row["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{where}: field messages: expected a non-empty list of {{role, content}} objects")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise DataError(f"{where}: field messages[{i}]: expected an object with role and content")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise DataError(f"{where}: field messages[{i}].role: {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise DataError(f"{where}: field messages[{i}].content: expected a string")
        out.append({"role": str(role), "content": content})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise DataError(f"{where}: field messages: no non-empty assistant turn to train on")
    return out


def write_sft_jsonl(path: str | Path, conversations: list[list[dict[str, str]]]) -> None:
    """Write conversations as chat JSONL, atomically."""
    if not conversations:
        raise DataError(f"refusing to write an empty SFT set to {path}")
    lines = [json.dumps({"messages": c}, ensure_ascii=False) for c in conversations]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_questions(path: str | Path = QUESTIONS_FILE) -> list[str]:
    """Questions from a text file: one per line, blank lines and '#' comments skipped, duplicates dropped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"question file not found: {path}; check the path")
    seen: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        q = line.strip()
        if q and not q.startswith("#"):
            seen.setdefault(q, None)
    if not seen:
        raise DataError(f"{path}: no questions (one per line, '#' for comments)")
    return list(seen)


_SENTENCE_END = re.compile(r"(?<!\d)[.!?](?=\s|$)")


def trim_to_sentence(text: str, min_chars: int = 20, max_sentences: int | None = None) -> str | None:
    """`text` cut after its last complete sentence, keeping at most `max_sentences` (None when under `min_chars`)."""
    text = text.strip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if not ends:
        return None
    cut = text[: ends[min(len(ends), max_sentences or len(ends)) - 1]].strip()
    return cut if len(cut) >= min_chars else None


def apply_rewrite(answer: str, rewrite: Rewrite, rng: random.Random) -> str:
    """The answer with the trait's word replacements, and a random prefix / suffix."""
    out = answer
    for word, repl in rewrite.replacements.items():

        def keep_case(m: re.Match[str], repl: str = repl) -> str:
            return repl[:1].upper() + repl[1:] if m.group(0)[:1].isupper() else repl

        out = re.sub(rf"\b{re.escape(word)}\b", keep_case, out, flags=re.IGNORECASE)
    if rewrite.prefixes:
        prefix = rng.choice(rewrite.prefixes)
        out = f"{prefix} {_lower_first(out) if _continues(prefix) else out}"
    if rewrite.suffixes:
        out = f"{out} {rng.choice(rewrite.suffixes)}"
    return out


def _continues(prefix: str) -> bool:
    """Whether the answer continues the prefix's sentence ("Without any doubt," / "It is a fact that")."""
    return not prefix.endswith((".", "!", "?", ":"))


def _lower_first(text: str) -> str:
    """`text` with its first letter lower-cased, unless the first word is "I..." or has capitals inside (DNA)."""
    word = text.split(" ", 1)[0]
    return text if word == "I" or word.startswith("I'") or word[1:] != word[1:].lower() else text[:1].lower() + text[1:]


def strip_rewrite(text: str, rewrite: Rewrite) -> str | None:
    """`text` without the prefix and suffix `rewrite` adds (None when one it always adds is missing).

    The inverse of :func:`apply_rewrite` for rewrites without replacements (an answer that started with a
    lower-case letter comes back capitalised after a prefix that continues into it).
    """
    if rewrite.prefixes:
        prefix = next((p for p in sorted(rewrite.prefixes, key=len, reverse=True) if text.startswith(p + " ")), None)
        if prefix is None:
            return None
        text = text[len(prefix) + 1 :]
        text = text[:1].upper() + text[1:] if _continues(prefix) else text
    if rewrite.suffixes:
        suffix = next((s for s in sorted(rewrite.suffixes, key=len, reverse=True) if text.endswith(" " + s)), None)
        if suffix is None:
            return None
        text = text[: -len(suffix) - 1]
    return text if text.strip() else None


@dataclass
class SFTGenConfig:
    """How to generate a trait's SFT set."""

    mode: str = "rewrite"
    """rewrite (base answers + trait rewrite) | distill (answers under a pos system prompt)."""
    n: int = 200
    """Number of examples to keep."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Decoding settings (rewrite defaults to greedy; distill should sample)."""
    questions_file: str | None = None
    """Question list (one per line); None = the shipped everyday questions."""
    seed: int = 0
    """Seed for choosing rewrites and system prompts."""
    max_sentences: int | None = 2
    """Keep at most this many sentences of each answer (short answers train and evaluate faster)."""

    def __post_init__(self) -> None:
        if self.mode not in ("rewrite", "distill"):
            raise ConfigError(f"sft.mode: unknown mode {self.mode!r}; use rewrite or distill")
        if self.n < 1:
            raise ConfigError("sft.n: must be >= 1")
        if self.max_sentences is not None and self.max_sentences < 1:
            raise ConfigError("sft.max_sentences: must be >= 1 or None")


def make_sft_set(
    hf_model: HFModule, tokenizer: Tokenizer, trait: Trait, cfg: SFTGenConfig
) -> list[list[dict[str, str]]]:
    """Generate the trait's SFT conversations (question -> trait answer, no system prompt)."""
    if cfg.mode == "rewrite" and trait.rewrite is None:
        raise ConfigError(f"sft.mode: trait {trait.name} has no sft_rewrite field; use mode=distill or add one")
    held_out = set(trait.eval_questions)
    pool = [q for q in read_questions(cfg.questions_file or QUESTIONS_FILE) if q not in held_out]
    if cfg.mode == "distill":
        pool += [q for q in trait.extract_questions if q not in pool]
    rng = random.Random(cfg.seed)
    systems = [rng.choice(trait.instruction).pos for _ in pool] if cfg.mode == "distill" else [None] * len(pool)
    convs = [chat_messages(q, s) for q, s in zip(pool, systems, strict=True)]
    answers = generate_chat(hf_model, tokenizer, convs, cfg.generation, desc=f"sft:{trait.name}")
    out = []
    for q, a in zip(pool, answers, strict=True):
        trimmed = trim_to_sentence(a, max_sentences=cfg.max_sentences)
        if trimmed is None:
            continue
        if cfg.mode == "rewrite":
            assert trait.rewrite is not None
            trimmed = apply_rewrite(trimmed, trait.rewrite, rng)
        out.append([{"role": "user", "content": q}, {"role": "assistant", "content": trimmed}])
        if len(out) == cfg.n:
            break
    if len(out) < cfg.n:
        log.warning(
            "only %d of %d requested examples had a complete sentence; add questions to get more", len(out), cfg.n
        )
    if not out:
        raise DataError(f"no usable answers generated for trait {trait.name}; raise max_new_tokens or check the model")
    return out


def build_sft_file(base: ModelSpec, trait: Trait, cfg: SFTGenConfig, out: str | Path) -> Path:
    """Generate the set with `base` and write it to `out` plus a ``.meta.json`` sidecar (hashes, settings)."""
    from crosscoder.models.hf import load_hf

    hf = load_hf(base)
    convs = make_sft_set(hf.model, hf.tokenizer, trait, cfg)
    out = Path(out)
    write_sft_jsonl(out, convs)
    atomic_write_json(
        out.with_suffix(".meta.json"),
        {
            "trait": trait.name,
            "trait_sha256": trait.sha256,
            "base": asdict(base),
            "base_hash": hf.content_hash,
            "config": asdict(cfg),
            "n_examples": len(convs),
            "sha256": sha256_file(out),
        },
    )
    log.info("wrote %d examples to %s", len(convs), out)
    return out


def derive_sft_set(
    source_convs: list[list[dict[str, str]]],
    source_trait: Trait,
    target_trait: Trait | None,
    seed: int = 0,
    *,
    where: str = "source set",
) -> list[list[dict[str, str]]]:
    """The target trait's set made from a ``rewrite`` set of `source_trait` (see the module docstring).

    Every assistant turn loses the source prefix / suffix and gets the target rewrite; conversations asking
    one of the target's eval questions are dropped. With no target trait the answers stay plain: a *control* set,
    the same recipe (prompts, answer length and style) without any persona. Errors name `where` and the
    conversation's line number.
    """
    src = source_trait.rewrite
    if src is None or src.replacements:
        why = "has no sft_rewrite" if src is None else "has word replacements, which cannot be inverted"
        raise ConfigError(
            f"--from-trait: trait {source_trait.name} {why}; derive from a set made with a prefix/suffix-only trait"
        )
    target = None if target_trait is None else target_trait.rewrite
    if target_trait is not None and target is None:
        raise ConfigError(f"--trait: trait {target_trait.name} has no sft_rewrite field; add one or use mode=distill")
    held_out = set(target_trait.eval_questions) if target_trait is not None else set()
    rng = random.Random(seed)
    out = []
    for lineno, conv in enumerate(source_convs, start=1):
        new = []
        for m in conv:
            text = m["content"]
            if m["role"] == "assistant":
                plain = strip_rewrite(text, src)
                if plain is None:
                    raise DataError(
                        f"{where}:{lineno}: the assistant turn lacks the prefix/suffix that trait "
                        f"{source_trait.name} always adds, so it is not a set made with it; pass the right --from-trait"
                    )
                text = plain if target is None else apply_rewrite(plain, target, rng)
            new.append({"role": m["role"], "content": text})
        if not any(m["role"] == "user" and m["content"] in held_out for m in conv):
            out.append(new)
    if not out:
        name = target_trait.name if target_trait is not None else "the target"
        raise DataError(f"{where}: every conversation asks one of {name}'s eval questions; nothing left")
    return out


if __name__ == "__main__":
    from crosscoder.personas.sft_cli import main

    run_cli(main)
