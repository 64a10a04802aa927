"""The capability proxy: does an edit break the model?

Two measurements, both without generation:

- **perplexity** of the base model's own greedy answers to held-out everyday questions (shipped in
  ``data/heldout_questions.txt``, none of them an SFT or trait question), over the answer tokens. The answers are
  generated once per base model and cached (``$CROSSCODER_CACHE/composition/answers``).
- **accuracy** on a small shipped multiple-choice set of easy facts (``data/facts.jsonl``, 40 questions, four
  choices, correct answers spread evenly over the positions): a question is right when the correct choice, as the
  assistant's answer, has the highest mean log-probability per token.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from crosscoder.errors import DataError
from crosscoder.io import atomic_write_json, cache_dir, read_json, sha256_json
from crosscoder.personas.compose.likelihood import chat_rows, logprob_sums, pad_id_of
from crosscoder.personas.generate import GenerationConfig, chat_messages, generate_chat
from crosscoder.personas.sft_data import read_questions

DATA_DIR = Path(__file__).parent / "data"
HELDOUT_FILE = DATA_DIR / "heldout_questions.txt"
FACTS_FILE = DATA_DIR / "facts.jsonl"


@dataclass(frozen=True)
class Fact:
    """One multiple-choice question."""

    question: str
    choices: tuple[str, ...]
    answer: int
    """Index of the correct choice."""


@dataclass
class Capability:
    """The capability proxy of one model (or model + edit)."""

    perplexity: float
    """exp(mean negative log-likelihood) of the held-out base answers' tokens."""
    accuracy: float
    """Fraction of the factual questions answered right."""
    n_answer_tokens: int
    n_facts: int


def read_facts(path: str | Path = FACTS_FILE) -> list[Fact]:
    """The factual question set; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"fact file {path} not found; check the path")
    facts = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            fact = Fact(str(row["question"]), tuple(str(c) for c in row["choices"]), int(row["answer"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"{path}:{lineno}: not a {{question, choices, answer}} object ({err}); fix the line"
            ) from err
        if len(fact.choices) < 2 or not 0 <= fact.answer < len(fact.choices):
            raise DataError(f"{path}:{lineno}: needs 2+ choices and an answer index among them; fix the line")
        facts.append(fact)
    if not facts:
        raise DataError(f"{path}: no questions; add at least one line")
    return facts


def base_answers(base: Any, questions: list[str], max_new_tokens: int = 64) -> list[str]:
    """The base model's greedy answers to `questions`, generated once and cached by (model hash, questions, length)."""
    key = sha256_json([base.content_hash, questions, max_new_tokens])[:20]
    path = cache_dir("composition", "answers") / f"answers-{key}.json"
    if path.is_file():
        cached = read_json(path)
        if isinstance(cached, dict) and cached.get("questions") == questions:
            return [str(a) for a in cached["answers"]]
    gen = GenerationConfig(max_new_tokens=max_new_tokens, greedy=True)
    answers = generate_chat(base.hf, base.tokenizer, [chat_messages(q) for q in questions], gen, desc="base answers")
    atomic_write_json(path, {"model_hash": base.content_hash, "questions": questions, "answers": answers})
    return answers


def heldout_conversations(base: Any, n: int | None = None, max_new_tokens: int = 64) -> list[list[dict[str, str]]]:
    """(question, base answer) chats for the first `n` held-out questions."""
    questions = read_questions(HELDOUT_FILE)[:n]
    answers = base_answers(base, questions, max_new_tokens)
    return [
        [*chat_messages(q), {"role": "assistant", "content": a or "."}] for q, a in zip(questions, answers, strict=True)
    ]


def fact_accuracy(model: Any, facts: list[Fact], batch_size: int = 16) -> float:
    """Fraction of `facts` whose correct choice has the highest mean log-probability per token."""
    convs = [[*chat_messages(f.question), {"role": "assistant", "content": c}] for f in facts for c in f.choices]
    sums, counts = logprob_sums(model, chat_rows(model.tokenizer, convs), pad_id_of(model.tokenizer), batch_size)
    mean = sums / counts.clamp_min(1)
    right, i = 0, 0
    for f in facts:
        scores = mean[i : i + len(f.choices)]
        right += int(int(torch.argmax(scores)) == f.answer)
        i += len(f.choices)
    return right / len(facts)


def measure_capability(model: Any, conversations: list[list[dict[str, str]]], facts: list[Fact]) -> Capability:
    """Perplexity on `conversations` (assistant tokens) and accuracy on `facts`, with any active edit applied."""
    sums, counts = logprob_sums(model, chat_rows(model.tokenizer, conversations), pad_id_of(model.tokenizer))
    n = int(counts.sum())
    ppl = math.exp(-float(sums.sum()) / max(n, 1))
    return Capability(ppl, fact_accuracy(model, facts), n, len(facts))


def capability_change(edited: Capability, reference: Capability) -> float:
    """The larger of the relative perplexity change and the absolute accuracy change (both as fractions)."""
    return max(abs(edited.perplexity / reference.perplexity - 1.0), abs(edited.accuracy - reference.accuracy))
