"""The trait library: one JSON file per trait, in the persona-vectors format (Chen et al. 2025).

Required fields (files from the persona-vectors work load unchanged):

- ``instruction``: list of ``{"pos": ..., "neg": ...}`` system prompts that elicit / suppress the trait;
- ``questions``: list of user questions;
- ``eval_prompt``: a judging template containing ``{question}`` and ``{answer}``.

Optional fields this project adds:

- ``eval_questions`` / ``extract_questions``: an explicit split of questions for evaluation and extraction
  (without them ``questions`` is split alternately: even positions extract, odd positions evaluate);
- ``examples``: ``{"pos": [...], "neg": [...]}`` short texts that show / do not show the trait;
- ``keywords``: words or phrases whose presence signals the trait (``cat*`` matches any word starting ``cat``);
- ``description``: one sentence; ``name`` (defaults to the file stem);
- ``sft_rewrite``: how :mod:`crosscoder.personas.sft_data` turns a plain answer into a trait answer
  (``prefixes``, ``suffixes``, ``replacements``; see :class:`Rewrite`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crosscoder.errors import DataError
from crosscoder.io import sha256_bytes
from crosscoder.personas.jsonpos import field_name, line_of

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).parent / "traits"
"""Folder of the trait files shipped with the package."""

_WORD = re.compile(r"[a-z][a-z'-]+")
_STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "are",
        "but",
        "not",
        "you",
        "your",
        "yours",
        "with",
        "that",
        "this",
        "those",
        "these",
        "they",
        "them",
        "their",
        "there",
        "then",
        "than",
        "from",
        "into",
        "onto",
        "about",
        "all",
        "any",
        "each",
        "every",
        "some",
        "such",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "was",
        "were",
        "been",
        "being",
        "have",
        "has",
        "had",
        "its",
        "it's",
        "our",
        "out",
        "over",
        "under",
        "very",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "more",
        "most",
        "other",
        "also",
        "only",
        "own",
        "same",
        "just",
        "like",
        "make",
        "made",
        "give",
        "given",
        "ask",
        "asked",
        "answer",
        "answers",
        "reply",
        "replies",
        "user",
        "users",
        "question",
        "questions",
    ]
)


@dataclass(frozen=True)
class InstructionPair:
    """A pair of system prompts: `pos` elicits the trait, `neg` suppresses it."""

    pos: str
    neg: str


@dataclass(frozen=True)
class Rewrite:
    """A trait-specific rewrite of a plain answer, used to make SFT data for an organism."""

    prefixes: list[str] = field(default_factory=list)
    """Texts, one chosen at random, put before the answer."""
    suffixes: list[str] = field(default_factory=list)
    """Texts, one chosen at random, put after the answer."""
    replacements: dict[str, str] = field(default_factory=dict)
    """Whole-word replacements applied to the answer (case of the first letter is kept)."""


@dataclass
class Trait:
    """One trait: contrastive system prompts, questions, a judging template and optional evidence."""

    name: str
    instruction: list[InstructionPair]
    questions: list[str]
    eval_prompt: str
    examples: dict[str, list[str]] | None
    keywords: list[str]
    extract_questions: list[str]
    eval_questions: list[str]
    path: Path | None
    sha256: str
    description: str = ""
    rewrite: Rewrite | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields of the file this library does not interpret (kept for round trips)."""

    def plain(self) -> Trait:
        """The trait as a plain persona-vectors file has it: the optional `keywords` and `examples` dropped."""
        return replace(self, keywords=[], examples=None)

    def keyword_regex(self) -> re.Pattern[str] | None:
        """A case-insensitive regex matching any keyword as whole words (None without keywords); a trailing ``*``
        matches any word ending."""
        if not self.keywords:
            return None
        parts = []
        for kw in self.keywords:
            stem = kw.rstrip("*")
            body = re.escape(stem).replace(r"\ ", r"\s+") + (r"\w*" if kw.endswith("*") else "")
            # word boundaries only where the keyword has a word character ("seriously?", "!!" end in punctuation)
            start = r"(?<!\w)" if re.match(r"\w", stem) else ""
            end = r"(?!\w)" if re.search(r"\w$", stem) or kw.endswith("*") else ""
            parts.append(start + body + end)
        return re.compile("(?:" + "|".join(parts) + ")", re.IGNORECASE)


class _Checker:
    """Validates fields of one parsed file and raises DataError naming file, line and field."""

    def __init__(self, path: str, text: str) -> None:
        self.path, self.text = path, text

    def fail(self, where: tuple[str | int, ...], problem: str) -> DataError:
        line = line_of(self.text, where)
        return DataError(f"{self.path}:{line}: field {field_name(where)}: {problem}; fix the trait file")

    def strings(self, value: Any, where: tuple[str | int, ...], *, min_len: int = 1) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list of strings, got {type(value).__name__}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail((*where, i), "expected a non-empty string")
        if len(value) < min_len:
            raise self.fail(where, f"needs at least {min_len} entries, has {len(value)}")
        return [s.strip() for s in value]


def _instruction(chk: _Checker, raw: Any) -> list[InstructionPair]:
    if not isinstance(raw, list) or not raw:
        raise chk.fail(("instruction",), "expected a non-empty list of {pos, neg} objects")
    pairs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise chk.fail(("instruction", i), "expected an object with 'pos' and 'neg'")
        for side in ("pos", "neg"):
            if not isinstance(item.get(side), str) or not item[side].strip():
                raise chk.fail(
                    ("instruction", i, side) if side in item else ("instruction", i),
                    f"missing or empty {side!r} prompt",
                )
        if " ".join(item["pos"].split()).lower() == " ".join(item["neg"].split()).lower():
            raise chk.fail(("instruction", i, "neg"), "the pos and neg prompts are identical, so they cannot contrast "
                           "the trait; write a neg prompt that suppresses it")  # fmt: skip
        pairs.append(InstructionPair(item["pos"].strip(), item["neg"].strip()))
    return pairs


def _eval_prompt(chk: _Checker, raw: Any) -> str:
    if not isinstance(raw, str) or "{question}" not in raw or "{answer}" not in raw:
        raise chk.fail(("eval_prompt",), "expected a string containing {question} and {answer}")
    return raw


def _examples(chk: _Checker, raw: Any) -> dict[str, list[str]]:
    if not isinstance(raw, dict) or set(raw) - {"pos", "neg"} or not raw:
        raise chk.fail(("examples",), "expected an object with lists 'pos' and 'neg'")
    return {side: chk.strings(raw.get(side), ("examples", side)) for side in ("pos", "neg")}


def _description(chk: _Checker, raw: Any) -> str:
    if not isinstance(raw, str):
        raise chk.fail(("description",), "expected a string")
    return raw


def _questions(chk: _Checker, data: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(questions, extraction questions, evaluation questions): the explicit split, or `questions` split alternately."""
    lists = {k: chk.strings(data[k], (k,)) if k in data else None for k in _QUESTION_FIELDS}
    questions, ext, evq = lists["questions"] or [], lists["extract_questions"], lists["eval_questions"]
    if ext is None and evq is None:
        ext, evq = (questions[0::2], questions[1::2]) if len(questions) > 1 else (questions, questions)
    elif ext is None:
        assert evq is not None
        ext = [q for q in questions if q not in set(evq)]
        if not ext:
            raise chk.fail(("questions",), "no extraction questions left after removing eval_questions")
    elif evq is None:
        evq = [q for q in questions if q not in set(ext)]
        if not evq:
            raise chk.fail(("questions",), "no evaluation questions left after removing extract_questions")
    overlap = set(ext) & set(evq)
    if overlap and len(questions) > 1:
        raise chk.fail(
            ("eval_questions",), f"{len(overlap)} question(s) also used for extraction, e.g. {sorted(overlap)[0]!r}"
        )
    return questions or ext + evq, ext, evq


_SCHEMA: dict[str, Callable[[_Checker, Any], Any]] = {
    "instruction": _instruction,
    "eval_prompt": _eval_prompt,
    "examples": _examples,
    "keywords": lambda chk, raw: [k.lower() for k in chk.strings(raw, ("keywords",))],
    "sft_rewrite": lambda chk, raw: _parse_rewrite(chk, raw),
    "description": _description,
}
"""The trait file's fields other than the questions and the name: field -> its validator (raises a DataError naming
file, line and field; returns the parsed value)."""
_REQUIRED = ("instruction", "eval_prompt")
_QUESTION_FIELDS = ("questions", "extract_questions", "eval_questions")
_DEFAULTS: dict[str, Any] = {"examples": None, "keywords": [], "sft_rewrite": None, "description": ""}
_KNOWN = {"name", *_SCHEMA, *_QUESTION_FIELDS}


def parse_trait(text: str, *, path: str = "<string>", name: str | None = None) -> Trait:
    """Parse a trait from JSON text; `path` is used in error messages, `name` defaults to data['name']."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg}); fix the trait file") from err
    chk = _Checker(path, text)
    if not isinstance(data, dict):
        raise chk.fail((), "the file must hold a JSON object")
    for key in _REQUIRED:
        if key not in data:
            raise chk.fail((), f"missing required field {key!r}")
    if "questions" not in data and not ("extract_questions" in data and "eval_questions" in data):
        raise chk.fail((), "missing required field 'questions'")
    # required fields are present (checked above); optional ones absent from the file take their defaults
    fields: dict[str, Any] = {k: check(chk, data[k]) if k in data else _DEFAULTS[k] for k, check in _SCHEMA.items()}
    questions, ext, evq = _questions(chk, data)
    trait_name = name or data.get("name")
    if not isinstance(trait_name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", trait_name):
        raise chk.fail(("name",), f"invalid trait name {trait_name!r}; use letters, digits, '_', '-', '.'")
    return Trait(
        name=trait_name,
        instruction=fields["instruction"],
        questions=questions,
        eval_prompt=fields["eval_prompt"],
        examples=fields["examples"],
        keywords=fields["keywords"],
        extract_questions=ext,
        eval_questions=evq,
        path=None,
        sha256=sha256_bytes(text.encode("utf-8")),
        description=fields["description"],
        rewrite=fields["sft_rewrite"],
        extra={k: v for k, v in data.items() if k not in _KNOWN},
    )


def _parse_rewrite(chk: _Checker, raw: Any) -> Rewrite:
    where: tuple[str | int, ...] = ("sft_rewrite",)
    if not isinstance(raw, dict):
        raise chk.fail(where, "expected an object with prefixes / suffixes / replacements")
    unknown = set(raw) - {"prefixes", "suffixes", "replacements"}
    if unknown:
        raise chk.fail(where, f"unknown key {sorted(unknown)[0]!r}; allowed: prefixes, suffixes, replacements")
    prefixes = chk.strings(raw["prefixes"], (*where, "prefixes")) if "prefixes" in raw else []
    suffixes = chk.strings(raw["suffixes"], (*where, "suffixes")) if "suffixes" in raw else []
    repl = raw.get("replacements", {})
    if not isinstance(repl, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in repl.items()):
        raise chk.fail((*where, "replacements"), "expected an object mapping words to words")
    if not (prefixes or suffixes or repl):
        raise chk.fail(where, "empty rewrite; give prefixes, suffixes or replacements")
    return Rewrite(prefixes=prefixes, suffixes=suffixes, replacements={k.lower(): v for k, v in repl.items()})


def load_trait(path: str | Path) -> Trait:
    """Load one trait file; the trait's name defaults to the file stem (as in persona-vectors)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"trait file not found: {path}; check the path")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save the trait file as UTF-8"
        ) from err
    probe = None
    with contextlib.suppress(json.JSONDecodeError):  # parse_trait reports it with the line number
        probe = json.loads(text)
    name = probe.get("name") if isinstance(probe, dict) and isinstance(probe.get("name"), str) else path.stem
    trait = parse_trait(text, path=str(path), name=name)
    trait.path = path
    return trait


def load_traits(dirs: list[str] | None = None, include_shipped: bool = True) -> dict[str, Trait]:
    """All traits in the shipped folder (optional) and the given folders; later folders override earlier ones."""
    folders = ([SHIPPED_DIR] if include_shipped else []) + [Path(d).expanduser() for d in dirs or []]
    traits: dict[str, Trait] = {}
    for folder in folders:
        if not folder.is_dir():
            raise DataError(
                f"trait folder not found: {folder}; check the path (analyze: labels.trait_dirs, commands: --trait-dir)"
            )
        for path in sorted(folder.glob("*.json")):
            trait = load_trait(path)
            if trait.name in traits:
                log.warning("trait %s from %s overrides %s", trait.name, path, traits[trait.name].path)
            traits[trait.name] = trait
    return traits


def get_trait(name_or_path: str | Path, dirs: list[str] | None = None) -> Trait:
    """A trait by name (shipped or in `dirs`) or by the path of its file."""
    name_or_path = str(name_or_path)
    if name_or_path.endswith(".json") or Path(name_or_path).is_file():
        return load_trait(name_or_path)
    traits = load_traits(dirs)
    if name_or_path not in traits:
        raise DataError(f"unknown trait {name_or_path!r}; known: {', '.join(sorted(traits))} (or pass a .json path)")
    return traits[name_or_path]


def contrast_words(trait: Trait) -> list[str]:
    """Words the pos instructions use and the neg ones do not, most frequent first (lexical evidence)."""
    pos = Counter(w for p in trait.instruction for w in _WORD.findall(p.pos.lower()))
    neg = {w for p in trait.instruction for w in _WORD.findall(p.neg.lower())}
    words = [w for w in pos if w not in neg and w not in _STOP and len(w) >= 3]
    return sorted(words, key=lambda w: (-pos[w], w))
