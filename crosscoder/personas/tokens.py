"""Token-level residual activations of chats at a few hooks: the pass behind monitoring and data screening.

:func:`chat_tokens` renders a conversation with the chat template and records, per token, which message it belongs
to (-1 for template tokens such as ``<|im_start|>assistant``). :func:`hook_acts` runs the model over many token
sequences (right-padded batches, stopping after the deepest hook needed) and yields each sequence's activations at
the requested hooks; position 0 (the attention sink) is returned but callers never use it in a statistic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from crosscoder.data.harvest import right_pad
from crosscoder.errors import DataError, ModelError, NumericsError
from crosscoder.models.residual import parse_resid_hook

Message = dict[str, str]


@dataclass
class ChatTokens:
    """A rendered conversation: token ids, each token's text and the message each token belongs to."""

    ids: list[int]
    texts: list[str]
    turn: list[int]
    """Index into `messages` per token; -1 for chat-template tokens outside any message's content."""
    messages: list[Message]

    def mask(self, roles: tuple[str, ...] = ("assistant",), turns: set[int] | None = None) -> list[bool]:
        """Per token: inside a message with one of `roles` (and, when given, one of `turns`)."""
        return [t >= 0 and self.messages[t]["role"] in roles and (turns is None or t in turns) for t in self.turn]


def message_spans(text: str, messages: list[Message]) -> list[tuple[int, int]]:
    """Character span of each message's content inside the rendered `text`."""
    spans, cursor = [], 0
    for i, m in enumerate(messages):
        pos = text.find(m["content"], cursor)
        if pos < 0:
            raise DataError(
                f"message {i} ({m['role']}) is not found verbatim in the chat-template output; "
                "the template rewrites contents, so per-turn positions cannot be recovered"
            )
        spans.append((pos, pos + len(m["content"])))
        cursor = pos + len(m["content"])
    return spans


def chat_tokens(tokenizer: Any, messages: list[Message], *, add_generation_prompt: bool = False) -> ChatTokens:
    """Tokenise a conversation with the chat template, labelling each token with its message."""
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError("token traces need a fast (Rust) tokenizer for character offsets; load tokenizer.json")
    text = str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt))
    spans = message_spans(text, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    turn = []
    for s, e in enc["offset_mapping"]:
        owner = next((i for i, (a, b) in enumerate(spans) if a <= s < b and e > s), -1)
        turn.append(owner)
    texts = [text[s:e] for s, e in enc["offset_mapping"]]
    return ChatTokens(list(enc["input_ids"]), texts, turn, messages)


def _stop_layer(hooks: list[str], n_layers: int) -> int | None:
    """The block index to stop at (exclusive) so every hook is computed; None = run the whole model."""
    need = max(layer + (1 if kind == "post" else 0) for layer, kind in map(parse_resid_hook, hooks))
    return need if need < n_layers else None


@torch.no_grad()
def hook_acts(
    model: Any, ids: list[list[int]], hooks: list[str], *, batch_size: int = 8, desc: str = "activations"
) -> Iterator[tuple[int, dict[str, Float[Tensor, "seq d_model"]]]]:
    """Yield ``(index, {hook: [len(ids[index]), d_model]})`` for every sequence, in input order."""
    hooks = sorted(set(hooks))
    model.check_hooks(hooks)
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    stop = _stop_layer(hooks, model.n_layers)
    kwargs = {"stop_at_layer": stop} if stop is not None else {}
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        rows = order[start : start + batch_size]
        if any(not ids[i] for i in rows):
            raise DataError("an empty token sequence reached the activation pass; check the chat file")
        ids_BS, _ = right_pad([ids[i] for i in rows], pad_id)
        _, cache = model.tl.run_with_cache(ids_BS, names_filter=lambda name: name in hooks, **kwargs)
        acts = {h: cache[h].float() for h in hooks}
        for h, x_BSD in acts.items():
            if not torch.isfinite(x_BSD).all():
                raise NumericsError(f"non-finite activations at {h} in model {model.name}; check the model weights")
        for b, i in enumerate(rows):
            yield i, {h: x_BSD[b, : len(ids[i])].clone() for h, x_BSD in acts.items()}
        del cache
