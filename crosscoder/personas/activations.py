"""Residual-stream activations of chat texts, averaged over a chosen character span of each text.

Every layer is read at once: index 0 is the embedding output (``blocks.0.hook_resid_pre``) and index
``l + 1`` is ``blocks.{l}.hook_resid_post``, so a result is ``[n_texts, n_layers + 1, d_model]``.
Texts are right-padded, so a causal model's activations at real positions are unaffected by padding.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from crosscoder.data.harvest import right_pad
from crosscoder.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from crosscoder.models.load import LoadedModel

_HOOK = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


def resid_hooks(n_layers: int) -> list[str]:
    """Hook names in vector order: embeddings, then every block's resid_post."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]


def hook_index(hook: str, n_layers: int) -> int:
    """Row of a `[n_layers + 1, d]` stack holding `hook` (resid_pre of block l == resid_post of block l-1)."""
    if hook in ("hook_embed", "embed"):
        return 0
    m = _HOOK.match(hook)
    if m is None:
        raise ConfigError(
            f"hook {hook!r}: persona vectors exist for residual-stream hooks only (blocks.<l>.hook_resid_post|pre)"
        )
    layer = int(m.group(1))
    idx = layer + 1 if m.group(2) == "post" else layer
    if not 0 <= idx <= n_layers or layer >= n_layers:
        raise ConfigError(f"hook {hook!r}: layer {layer} is outside this model's {n_layers} layers")
    return idx


def span_token_mask(tokenizer: Tokenizer, text: str, start_char: int, end_char: int) -> tuple[list[int], list[bool]]:
    """Token ids of `text` and, per token, whether it starts inside ``[start_char, end_char)``."""
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            "persona tooling needs a fast (Rust) tokenizer for character offsets; load the model's tokenizer.json"
        )
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    mask = [start_char <= s < end_char and e > s for s, e in enc["offset_mapping"]]
    return ids, mask


def right_pad_spans(items: list[tuple[list[int], list[bool]]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Items as a right-padded batch: ids ``[B, S]`` and a float span mask ``[B, S]`` without position 0 (the sink)."""
    ids_BS, valid_BS = right_pad([ids for ids, _ in items], pad_id)
    mask_BS = torch.zeros(valid_BS.shape)
    for row, (_, mask) in enumerate(items):
        mask_BS[row, : len(mask)] = torch.tensor(mask, dtype=torch.float32)
    mask_BS[:, 0] = 0.0  # the attention-sink position never enters a statistic
    if (mask_BS.sum(1) == 0).any():
        raise ModelError("a text has no tokens in its span (empty example or question?); check the trait file")
    return ids_BS, mask_BS


@torch.no_grad()
def span_means(
    model: LoadedModel,
    items: list[tuple[list[int], list[bool]]],
    *,
    batch_size: int = 8,
    desc: str = "activations",
) -> Float[Tensor, "n n_layers_plus_1 d_model"]:
    """Mean residual activation over each item's masked tokens, for every layer (position 0 is never used)."""
    hooks = resid_hooks(model.n_layers)
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    out_NLD = torch.zeros(len(items), model.n_layers + 1, model.d_model)
    for start in tqdm(range(0, len(items), batch_size), desc=desc, unit="batch", leave=False):
        chunk = items[start : start + batch_size]
        ids_BS, mask_BS = right_pad_spans(chunk, pad_id)
        _, cache = model.tl.run_with_cache(ids_BS, names_filter=lambda name: name in hooks)
        for li, hook in enumerate(hooks):
            x_BSD = cache[hook].float()
            mean_BD = (x_BSD * mask_BS[..., None]).sum(1) / mask_BS.sum(1, keepdim=True)
            out_NLD[start : start + len(chunk), li] = mean_BD
        del cache
    if not torch.isfinite(out_NLD).all():
        from crosscoder.errors import NumericsError

        raise NumericsError("non-finite activations while computing persona statistics; check the model weights")
    return out_NLD
