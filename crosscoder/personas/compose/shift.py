"""Directions from what a fine-tune changed: the mean activation difference (fine-tuned minus base) over the assistant
tokens of a set of conversations, at every block's resid_post (the activation-difference lens of Minder et al.,
restricted to a text set).

On a fine-tune's own training texts for one trait this is where the fine-tune writes when it expresses that trait;
:func:`trait_shift_directions` makes it specific to one of two traits by projecting out, at each hook, the shift on
the other trait's texts (what the fine-tune does on both, and the other trait's own direction). A shift direction is
recorded as a direction of the base model (the model it is added to or removed from), its provenance naming both.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from crosscoder.io import sha256_json
from crosscoder.personas.activations import span_means
from crosscoder.personas.compose.directions import PersonaDirection, Provenance
from crosscoder.personas.compose.likelihood import chat_rows
from crosscoder.personas.compose.ops import project_out


def mean_assistant_resid(model: Any, conversations: list[list[dict[str, str]]], max_len: int = 192) -> Tensor:
    """Mean residual over each conversation's assistant tokens, averaged over conversations: ``[n_layers + 1, D]``."""
    rows = chat_rows(model.tokenizer, conversations, max_len)
    with torch.no_grad():
        return span_means(model, rows, batch_size=8, desc="shift").mean(0)


def shift_directions(
    ft: Any, base: Any, conversations: list[list[dict[str, str]]], label: str, source: str = ""
) -> list[PersonaDirection]:
    """``mean(x_ft - x_base)`` over the conversations' assistant tokens, one direction per block's resid_post."""
    diff_LD = mean_assistant_resid(ft, conversations) - mean_assistant_resid(base, conversations)
    prov = Provenance(
        "activation_diff",
        source=source or None,
        source_sha256=sha256_json(conversations),
        models=(ft.name, base.name),
        detail=f"mean over the assistant tokens of {len(conversations)} conversations",
    )
    return [
        PersonaDirection(
            f"{label}@blocks.{i}.hook_resid_post",
            diff_LD[i + 1],
            base.content_hash,
            base.name,
            f"blocks.{i}.hook_resid_post",
            prov,
        )  # fmt: skip
        for i in range(base.n_layers)
    ]


def trait_shift_directions(removed: list[PersonaDirection], kept: list[PersonaDirection]) -> list[PersonaDirection]:
    """Per hook, the removed trait's shift with the kept trait's shift at that hook projected out."""
    return [project_out(r, [k], name=f"{r.name}⊥kept") for r, k in zip(removed, kept, strict=True)]
