"""Token roles and masks: which tokens are system / user / assistant content, chat-template scaffolding, plain text,
padding or the attention sink, and where each chat turn starts and ends.

Roles come from the rendered chat: every message's content is located in the templated string, and each token
takes the role of the content characters it covers (tokens covering none are ``TEMPLATE``). The first position of
every sequence is ``SINK`` (BOS or the attention sink; its residual norm is an outlier in most models).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from crosscoder.errors import DataError, ModelError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer


class Role(IntEnum):
    """Per-token role codes stored in the cache (int8)."""

    SINK = 0
    """Position 0 of a sequence (BOS or attention sink)."""
    TEMPLATE = 1
    """Chat-template and control tokens: <|im_start|>, role headers, separators, an injected default system prompt."""
    SYSTEM = 2
    """Content of a system message."""
    USER = 3
    """Content of a user message."""
    ASSISTANT = 4
    """Content of an assistant message."""
    TEXT = 5
    """Plain (pretraining-like) text."""
    PAD = 6
    """Padding (never stored in a cache; used inside harvest batches)."""


CHAT_ROLES = {"system": Role.SYSTEM, "user": Role.USER, "assistant": Role.ASSISTANT}
CONTENT_ROLES = (Role.SYSTEM, Role.USER, Role.ASSISTANT)


@dataclass
class TokenizedDoc:
    """One document as token ids with per-token role, index within its turn and tokens left in its turn."""

    ids: list[int]
    roles: list[int]
    turn_idx: list[int]
    """Index of the token within its chat turn's content (0 = first content token); -1 outside chat content."""
    turn_rem: list[int]
    """Content tokens after this one in the same turn (0 = last content token); -1 outside chat content."""
    kind: str
    """"chat" or "text"."""


def _check_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise DataError("a chat document has no messages; each needs a non-empty list of {role, content}")
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") not in CHAT_ROLES or not isinstance(msg.get("content"), str):
            raise DataError(f"bad chat message {str(msg)[:80]!r}: need role system|user|assistant and string content")
    return messages


def tokenize_chat(tokenizer: Tokenizer, messages: list[dict[str, str]]) -> TokenizedDoc:
    """Render `messages` with the tokenizer's chat template and label every token with its role."""
    messages = _check_messages(messages)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            "the tokenizer has no chat template; use plain-text sources (data.chat_ratio=0) or a chat model"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError("chat role masks need a fast tokenizer (offset mapping); load the model with a tokenizer.json")
    rendered = str(tokenizer.apply_chat_template(messages, tokenize=False))
    char_role = np.full(len(rendered), int(Role.TEMPLATE), dtype=np.int8)
    char_msg = np.full(len(rendered), -1, dtype=np.int32)
    cursor = 0
    for i, msg in enumerate(messages):
        content = msg["content"].strip()
        if not content:
            continue
        start = rendered.find(content, cursor)
        if start < 0:
            raise DataError(
                f"the chat template rewrites message {i} ({msg['role']}: {content[:40]!r}); roles cannot be located, "
                "use a template that keeps message text verbatim"
            )
        end = start + len(content)
        char_role[start:end] = int(CHAT_ROLES[msg["role"]])
        char_msg[start:end] = i
        cursor = end
    enc = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    # A token takes the role of the first content character it covers: next_content[p] is the first content
    # character at or after p, so a token spanning [a, b) covers content iff next_content[a] < b.
    n = len(rendered)
    is_content = char_msg >= 0
    next_content = np.full(n + 1, n, dtype=np.int64)
    idx = np.flatnonzero(is_content)
    if idx.size:
        next_content[:n] = idx[np.minimum(np.searchsorted(idx, np.arange(n)), idx.size - 1)]
        next_content[:n][np.arange(n) > idx[-1]] = n
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    first = next_content[offsets[:, 0]]
    covered = first < offsets[:, 1]
    safe = np.minimum(first, max(n - 1, 0))
    roles = np.where(covered, char_role[safe], int(Role.TEMPLATE)).astype(int).tolist()
    msg_of = np.where(covered, char_msg[safe], -1).astype(int).tolist()
    turn_idx, turn_rem = turn_positions(msg_of)
    return TokenizedDoc(ids=ids, roles=roles, turn_idx=turn_idx, turn_rem=turn_rem, kind="chat")


def turn_positions(msg_of: list[int]) -> tuple[list[int], list[int]]:
    """Index within, and tokens remaining in, each message's content (-1 for tokens outside any message)."""
    n = len(msg_of)
    turn_idx = [-1] * n
    turn_rem = [-1] * n
    positions: dict[int, list[int]] = {}
    for t, m in enumerate(msg_of):
        if m >= 0:
            positions.setdefault(m, []).append(t)
    for pos in positions.values():
        for k, t in enumerate(pos):
            turn_idx[t] = k
            turn_rem[t] = len(pos) - 1 - k
    return turn_idx, turn_rem


def tokenize_text(tokenizer: Tokenizer, text: str) -> TokenizedDoc:
    """Tokenise plain text (with the tokenizer's BOS if it adds one); special tokens are labelled TEMPLATE."""
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    roles = [int(Role.TEMPLATE) if t in special else int(Role.TEXT) for t in ids]
    return TokenizedDoc(ids=ids, roles=roles, turn_idx=[-1] * len(ids), turn_rem=[-1] * len(ids), kind="text")


def train_mask(role: np.ndarray, exclude_first_position: bool = True, exclude_template: bool = False) -> np.ndarray:
    """Boolean mask of rows used for training, from stored role codes."""
    mask = role != int(Role.PAD)
    if exclude_first_position:
        mask &= role != int(Role.SINK)
    if exclude_template:
        mask &= role != int(Role.TEMPLATE)
    return mask


def boundary_mask(role: np.ndarray, turn_idx: np.ndarray, turn_rem: np.ndarray) -> np.ndarray:
    """Rows at a chat turn boundary: the first or last content token of a system, user or assistant turn."""
    content = np.isin(role, [int(r) for r in CONTENT_ROLES])
    return content & ((turn_idx == 0) | (turn_rem == 0))


def row_weights(
    role: np.ndarray, turn_idx: np.ndarray, turn_rem: np.ndarray, assistant_weight: float, boundary_weight: float
) -> np.ndarray:
    """Per-row sampling weight per epoch (float64): assistant_weight x boundary_weight where they apply, else 1."""
    w = np.ones(role.shape[0], dtype=np.float64)
    if assistant_weight != 1.0:
        w[role == int(Role.ASSISTANT)] *= assistant_weight
    if boundary_weight != 1.0:
        w[boundary_mask(role, turn_idx, turn_rem)] *= boundary_weight
    return w
