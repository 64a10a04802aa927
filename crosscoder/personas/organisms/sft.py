"""Turn chat conversations into training examples with loss on assistant tokens only."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Int
from torch import Tensor

from crosscoder.errors import DataError, ModelError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

log = logging.getLogger(__name__)

IGNORE = -100


def assistant_spans(text: str, messages: list[dict[str, str]], eos: str | None) -> list[tuple[int, int]]:
    """Character spans of the assistant contents inside the rendered `text` (each extended over a following eos)."""
    spans, cursor = [], 0
    for i, m in enumerate(messages):
        pos = text.find(m["content"], cursor)
        if pos < 0:
            raise DataError(
                f"message {i} ({m['role']}) is not found verbatim in the chat-template output; the template rewrites contents"
            )
        end = pos + len(m["content"])
        if m["role"] == "assistant":
            if eos and text.startswith(eos, end):
                end += len(eos)
            spans.append((pos, end))
        cursor = end
    return spans


def encode_conversation(
    tokenizer: Tokenizer, messages: list[dict[str, str]], max_len: int
) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 outside assistant turns), truncated to `max_len`."""
    text = str(tokenizer.apply_chat_template(messages, tokenize=False))
    spans = assistant_spans(text, messages, tokenizer.eos_token)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError("SFT needs a fast (Rust) tokenizer for character offsets; load the model's tokenizer.json")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])[:max_len]
    labels = [
        tok if any(a <= s < b for a, b in spans) and e > s else IGNORE
        for tok, (s, e) in zip(ids, enc["offset_mapping"][:max_len], strict=True)
    ]
    return ids, labels


def encode_dataset(
    tokenizer: Tokenizer, conversations: list[list[dict[str, str]]], max_len: int, source: str
) -> list[tuple[list[int], list[int]]]:
    """Encode every conversation; drop those whose assistant tokens were all truncated. Refuses an empty result."""
    out, dropped = [], 0
    for conv in conversations:
        ids, labels = encode_conversation(tokenizer, conv, max_len)
        if all(t == IGNORE for t in labels):
            dropped += 1
            continue
        out.append((ids, labels))
    if dropped:
        log.warning(
            "%s: %d conversation(s) had no assistant tokens within max_len=%d and were dropped",
            source,
            dropped,
            max_len,
        )
    if not out:
        raise DataError(
            f"{source}: no trainable assistant tokens (dataset empty or all truncated); raise organism.max_len or fix the data"
        )
    return out


def collate(
    batch: list[tuple[list[int], list[int]]], pad_id: int
) -> tuple[Int[Tensor, "B S"], Int[Tensor, "B S"], Int[Tensor, "B S"]]:
    """Right-padded (input_ids, attention_mask, labels)."""
    width = max(len(ids) for ids, _ in batch)
    ids_BS = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask_BS = torch.zeros((len(batch), width), dtype=torch.long)
    labels_BS = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, (ids, labels) in enumerate(batch):
        ids_BS[row, : len(ids)] = torch.tensor(ids)
        mask_BS[row, : len(ids)] = 1
        labels_BS[row, : len(labels)] = torch.tensor(labels)
    return ids_BS, mask_BS, labels_BS


def check_tokenizer_match(base_tok: Any, other: Any, where: str) -> None:
    """Refuse a tokenizer that differs from the base model's (vocabulary, special tokens or chat template)."""
    if base_tok.get_vocab() != other.get_vocab():
        raise ModelError(
            f"tokenizer {where} has a different vocabulary from the base model's; use the base model's tokenizer or the matching base"
        )
    if (base_tok.eos_token, getattr(base_tok, "chat_template", None)) != (
        other.eos_token,
        getattr(other, "chat_template", None),
    ):
        raise ModelError(
            f"tokenizer {where} has a different chat template or eos token from the base model's; use the matching base"
        )
