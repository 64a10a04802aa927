"""Log-likelihoods of assistant turns: the generation-free measurements of the composition tools.

A chat is encoded with the SFT encoder (loss positions = assistant tokens, the end-of-turn token included), and a
model's log-probability of those tokens is summed per chat. Steering or ablation hooks active around the call apply.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from crosscoder.personas.compose.tail import _decoder, any_module, batch_tensors, head_of, targets
from crosscoder.personas.organisms.sft import IGNORE, encode_conversation

Row = tuple[list[int], list[bool]]
"""Token ids of one chat and, per token, whether it is scored (an assistant token)."""


def chat_rows(tokenizer: Any, conversations: list[list[dict[str, str]]], max_len: int = 256) -> list[Row]:
    """Encode chats; each keeps its assistant tokens as the scored ones."""
    rows = []
    for conv in conversations:
        ids, labels = encode_conversation(tokenizer, conv, max_len)
        rows.append((ids, [lab != IGNORE for lab in labels]))
    return rows


def assistant_only_rows(tokenizer: Any, texts: list[str], max_len: int = 256) -> list[Row]:
    """Texts as lone assistant turns (no user question), e.g. a trait's pos/neg examples."""
    return chat_rows(tokenizer, [[{"role": "assistant", "content": t}] for t in texts], max_len)


def pad_id_of(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


def token_logprobs(logits_NV: Tensor, ids_BS: Tensor, pos_BS: Tensor) -> Tensor:
    """log p(next token) at every scored position, in row-major order."""
    return torch.log_softmax(logits_NV.float(), dim=-1).gather(-1, targets(ids_BS, pos_BS)[:, None])[:, 0]


def per_row(values_N: Tensor, pos_BS: Tensor) -> tuple[Tensor, Tensor]:
    """Sums and counts of per-position values for each row of a batch."""
    row_of = torch.arange(pos_BS.shape[0])[:, None].expand_as(pos_BS)[pos_BS]
    sums = torch.zeros(pos_BS.shape[0], dtype=values_N.dtype).index_add(0, row_of, values_N)
    return sums, pos_BS.sum(1)


@torch.no_grad()
def logprob_sums(model: Any, rows: list[Row], pad_id: int, batch_size: int = 16) -> tuple[Tensor, Tensor]:
    """Summed log-probability of each row's scored tokens, and their number (a full forward per batch)."""
    hf = any_module(model)
    dec, head = _decoder(hf), head_of(hf)
    sums, counts = [], []
    for start in range(0, len(rows), batch_size):
        ids, mask, pos = batch_tensors(rows[start : start + batch_size], pad_id)
        hidden = dec(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        s, c = per_row(token_logprobs(head(hidden[pos]), ids, pos), pos)
        sums.append(s)
        counts.append(c)
    return torch.cat(sums), torch.cat(counts)
