"""Text sources (shipped corpus, Hugging Face datasets, local JSONL) and the token stream that mixes chat and text.

A source yields documents: chats (``{"messages": [{role, content}, ...]}``) and plain texts (``{"text": ...}``).
`sequence_stream` tokenises them with the models' shared tokenizer, cuts them into sequences of at most `seq_len`
tokens and mixes chat and text by token share (`chat_ratio`), deterministically for a seed.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosscoder.data.config import DataConfig
from crosscoder.data.masks import Role, TokenizedDoc, tokenize_chat, tokenize_text
from crosscoder.errors import ConfigError, DataError
from crosscoder.io import sha256_file

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

log = logging.getLogger(__name__)

CORPUS_DIR = Path(__file__).parent / "corpus"
SHUFFLE_BUFFER = 1024
ROLE_ALIASES = {
    "human": "user",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "user": "user",
    "assistant": "assistant",
    "system": "system",
}


@dataclass
class Source:
    """One configured source: where its documents come from."""

    spec: str
    kind: str
    """shipped | hf | jsonl"""
    paths: list[Path]
    dataset: str = ""
    split: str = "train"
    only: str = ""
    """For the shipped corpus: "chat", "text" or "" (both)."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records: the spec and a content hash of every local file."""
        return {"spec": self.spec, "kind": self.kind, "files": {p.name: sha256_file(p) for p in self.paths}}

    def documents(self) -> Iterator[dict[str, Any]]:
        """Every document, in source order."""
        if self.kind == "hf":
            yield from _hf_documents(self.dataset, self.split)
            return
        for path in self.paths:
            if self.only == "chat" and "text" in path.name or self.only == "text" and "chat" in path.name:
                continue
            yield from _jsonl_documents(path)


def resolve_sources(specs: list[str]) -> list[Source]:
    """Parse `data.sources` entries into `Source`s, checking local files exist."""
    out = []
    for spec in specs:
        if spec in ("shipped", "shipped:chat", "shipped:text"):
            paths = [CORPUS_DIR / "chat.jsonl.gz", CORPUS_DIR / "text.jsonl.gz"]
            for p in paths:
                if not p.is_file():
                    raise DataError(
                        f"the shipped corpus file {p} is missing; reinstall crosscoder or run python -m crosscoder.data.make_corpus"
                    )
            out.append(Source(spec, "shipped", paths, only=spec.partition(":")[2]))
        elif spec.startswith("hf:"):
            name, _, split = spec[3:].partition(":")
            if not name:
                raise ConfigError(f"data.sources: {spec!r} has no dataset name; use hf:<dataset>[:<split>]")
            out.append(Source(spec, "hf", [], dataset=name, split=split or "train"))
        elif spec.endswith((".jsonl", ".jsonl.gz")):
            path = Path(spec).expanduser()
            if not path.is_file():
                raise DataError(f"data.sources: file {path} not found; check the path")
            out.append(Source(spec, "jsonl", [path]))
        else:
            raise ConfigError(f'data.sources: {spec!r} is not "shipped", "hf:<dataset>" or a .jsonl path')
    return out


def _jsonl_documents(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path} line {lineno}: invalid JSON ({err.msg}); fix or remove the line") from err
            yield _normalise_doc(row, f"{path} line {lineno}")


def _normalise_doc(row: Any, where: str) -> dict[str, Any]:
    """Accept {"messages": [...]}, {"conversations": [{from, value}]} or {"text": ...}; return messages or text."""
    if isinstance(row, dict):
        msgs = row.get("messages", row.get("conversations"))
        if isinstance(msgs, list):
            out = []
            for m in msgs:
                if not isinstance(m, dict):
                    raise DataError(f'{where}: a message is not an object; use {{"role": ..., "content": ...}}')
                role = ROLE_ALIASES.get(str(m.get("role", m.get("from", ""))).lower())
                content = m.get("content", m.get("value"))
                if role is None or not isinstance(content, str):
                    raise DataError(
                        f"{where}: message {str(m)[:60]!r} needs role system|user|assistant and string content"
                    )
                out.append({"role": role, "content": content})
            return {"messages": out}
        if isinstance(row.get("text"), str):
            return {"text": row["text"]}
    raise DataError(f'{where}: expected {{"messages": [...]}} or {{"text": "..."}}, got {str(row)[:60]!r}')


def _hf_documents(name: str, split: str) -> Iterator[dict[str, Any]]:
    try:
        import datasets
    except ImportError as err:
        raise DataError(
            f"source hf:{name} needs the datasets package; pip install datasets, or use a local .jsonl"
        ) from err
    try:
        ds = datasets.load_dataset(name, split=split, streaming=True)
    except Exception as err:  # datasets raises many types (ConnectionError, FileNotFoundError, DatasetNotFoundError...)
        first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise DataError(
            f"cannot load Hugging Face dataset {name!r} split {split!r} ({first}); it needs network access or a local "
            "HF cache; offline, export it to .jsonl and list that file in data.sources"
        ) from err
    for i, row in enumerate(ds):
        yield _normalise_doc(row, f"hf:{name} row {i}")


def _shuffled(docs: Iterator[dict[str, Any]], rng: random.Random) -> Iterator[dict[str, Any]]:
    """Stream shuffle through a fixed-size buffer (deterministic for `rng`)."""
    buf: list[dict[str, Any]] = []
    for doc in docs:
        buf.append(doc)
        if len(buf) >= SHUFFLE_BUFFER:
            k = rng.randrange(len(buf))
            buf[k], buf[-1] = buf[-1], buf[k]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf


def _kind_docs(sources: list[Source], kind: str, rng: random.Random) -> Iterator[dict[str, Any]]:
    """Documents of one kind ("messages" or "text"), round-robin over sources, each shuffled through a buffer."""
    streams = [_shuffled((d for d in s.documents() if kind in d), rng) for s in sources]
    while streams:
        for it in list(streams):
            doc = next(it, None)
            if doc is None:
                streams.remove(it)
            else:
                yield doc


@dataclass
class Sequence:
    """One harvest sequence: at most seq_len tokens with roles and turn positions; position 0 is the sink."""

    ids: list[int]
    roles: list[int]
    turn_idx: list[int]
    turn_rem: list[int]
    kind: str


def _cut(doc: TokenizedDoc, seq_len: int, min_len: int) -> Iterator[Sequence]:
    """Chats are truncated to one sequence; texts are cut into consecutive chunks."""
    starts = [0] if doc.kind == "chat" else range(0, len(doc.ids), seq_len)
    for a in starts:
        b = min(a + seq_len, len(doc.ids))
        if b - a < min_len:
            continue
        roles = list(doc.roles[a:b])
        roles[0] = int(Role.SINK)
        yield Sequence(list(doc.ids[a:b]), roles, list(doc.turn_idx[a:b]), list(doc.turn_rem[a:b]), doc.kind)


def sequence_stream(tokenizer: Tokenizer, cfg: DataConfig) -> Iterator[Sequence]:
    """Endless-until-exhausted stream of sequences mixing chat and text by token share."""
    sources = resolve_sources(cfg.sources)
    rng = random.Random(cfg.seed)
    want = {"chat": cfg.chat_ratio, "text": 1.0 - cfg.chat_ratio}

    def seqs(kind: str) -> Iterator[Sequence]:
        for doc in _kind_docs(sources, "messages" if kind == "chat" else "text", random.Random(rng.random())):
            tok = tokenize_chat(tokenizer, doc["messages"]) if kind == "chat" else tokenize_text(tokenizer, doc["text"])
            yield from _cut(tok, cfg.seq_len, cfg.min_seq_len)

    streams = {k: seqs(k) for k in ("chat", "text") if want[k] > 0}
    served = {"chat": 0, "text": 0}
    while streams:
        total = max(1, served["chat"] + served["text"])
        kind = min(streams, key=lambda k: (served[k] / total - want[k], k))
        seq = next(streams[kind], None)
        if seq is None:
            del streams[kind]
            if streams:
                log.warning(
                    "the %s sources ran out after %d tokens; continuing with %s only", kind, served[kind], *streams
                )
            continue
        served[kind] += len(seq.ids)
        yield seq


def batch_stream(tokenizer: Tokenizer, cfg: DataConfig) -> Iterator[list[Sequence]]:
    """Harvest batches: sequences sorted by length within windows of `sort_window` batches (less padding)."""
    window = cfg.harvest_batch_size * cfg.sort_window
    buf: list[Sequence] = []
    stream = sequence_stream(tokenizer, cfg)
    while True:
        seq = next(stream, None)
        if seq is not None:
            buf.append(seq)
        if len(buf) >= window or (seq is None and buf):
            buf.sort(key=lambda s: len(s.ids))
            for i in range(0, len(buf), cfg.harvest_batch_size):
                yield buf[i : i + cfg.harvest_batch_size]
            buf = []
        if seq is None:
            return
