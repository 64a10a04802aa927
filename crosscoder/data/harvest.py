"""Run every model of a set on the same token batches and capture the residual stream at the configured hooks.

Each forward pass stops after the last block any hook needs (``stop_at_layer``), so a mid-depth hook costs about
half a full forward. Right padding with an explicit attention mask keeps every real token's activations identical
to an unpadded run (causal attention never looks at later positions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from crosscoder.data.sources import Sequence
from crosscoder.errors import ModelError, NumericsError
from crosscoder.models.load import LoadedModel
from crosscoder.models.modelset import check_model_set

BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")
PRE_BLOCK_HOOKS = ("hook_embed", "hook_pos_embed")


def stop_layer(hooks: list[str]) -> int | None:
    """The ``stop_at_layer`` that still runs every block the hooks read (None = a full forward is needed)."""
    last = -1
    for hook in hooks:
        m = BLOCK_RE.match(hook)
        if m:
            last = max(last, int(m.group(1)))
        elif hook not in PRE_BLOCK_HOOKS:
            return None
    return last + 1


def check_models(models: list[LoadedModel], hooks: list[str]) -> None:
    """Refuse a set that cannot be harvested together: bad hook names (listing valid ones), tokenizers, widths."""
    if not models:
        raise ModelError("no models given; a harvest needs 1 or more (2 or more for a diff)")
    for m in models:
        have = set(m.tl.hook_dict.keys())
        for hook in hooks:
            if hook not in have:
                resid = ", ".join(f"blocks.{i}.hook_resid_post" for i in (0, 1, m.n_layers - 1))
                raise ModelError(
                    f"hook {hook!r} is not in model {m.name}; valid residual hooks are blocks.0..{m.n_layers - 1}"
                    f".hook_resid_pre|mid|post (e.g. {resid}); all names: LoadedModel.hook_names()"
                )
    if len(models) > 1:
        check_model_set(models, hooks)


@dataclass
class HarvestBatch:
    """The stored rows of one harvest batch: every real (non-pad) token, in (sequence, position) order."""

    x_NMLD: Float[Tensor, "rows n_models n_hooks d_model"]
    seq_N: Int[Tensor, " rows"]
    """Sequence index local to the batch (0..B-1)."""
    pos_N: Int[Tensor, " rows"]
    token_N: Int[Tensor, " rows"]
    role_N: Int[Tensor, " rows"]
    turn_idx_N: Int[Tensor, " rows"]
    turn_rem_N: Int[Tensor, " rows"]
    n_seqs: int
    """Number of sequences in the batch."""


def right_pad(ids: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Token id lists as right-padded ``tokens_BS`` and ``valid_BS`` (True at real tokens)."""
    S = max(len(row) for row in ids)
    tokens_BS = torch.full((len(ids), S), pad_id, dtype=torch.long)
    valid_BS = torch.zeros((len(ids), S), dtype=torch.bool)
    for b, row in enumerate(ids):
        tokens_BS[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        valid_BS[b, : len(row)] = True
    return tokens_BS, valid_BS


def pad_batch(seqs: list[Sequence], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-padded ``tokens_BS`` and ``valid_BS`` of harvest sequences."""
    return right_pad([s.ids for s in seqs], pad_id)


def recording_hooks(hooks: list[str], out_BSLD: Tensor) -> list[tuple[str, Any]]:
    """TransformerLens forward hooks copying the activation at ``hooks[l]`` into ``out_BSLD[:, :, l]`` (float32)."""

    def make_hook(l: int):  # noqa: E741
        def hook(act, hook=None):  # TL passes the HookPoint as `hook`
            out_BSLD[:, :, l, :] = act.detach().to(torch.float32)
            return act

        return hook

    return [(h, make_hook(i)) for i, h in enumerate(hooks)]


def capture(
    model: LoadedModel, hooks: list[str], tokens_BS: Tensor, valid_BS: Tensor, stop: int | None
) -> Float[Tensor, "batch seq n_hooks d_model"]:
    """One forward pass of `model`, returning the activations at `hooks` (stopping early when possible)."""
    B, S = tokens_BS.shape
    out_BSLD = torch.empty((B, S, len(hooks), model.d_model), dtype=torch.float32)
    fwd_hooks = recording_hooks(hooks, out_BSLD)
    device = next(model.tl.parameters()).device
    with torch.inference_mode():
        model.tl.run_with_hooks(
            tokens_BS.to(device),
            fwd_hooks=fwd_hooks,
            return_type=None,
            stop_at_layer=stop,
            attention_mask=valid_BS.to(device).long(),
        )
    return out_BSLD


def harvest_batch(
    models: list[LoadedModel],
    hooks: list[str],
    seqs: list[Sequence],
    pad_id: int,
    check_finite: bool = True,
    seq_offset: int = 0,
) -> HarvestBatch:
    """Run all models on `seqs` and return the rows of every real token."""
    tokens_BS, valid_BS = pad_batch(seqs, pad_id)
    stop = stop_layer(hooks)
    idx_b, idx_s = valid_BS.nonzero(as_tuple=True)
    per_model = []
    for model in models:
        acts_BSLD = capture(model, hooks, tokens_BS, valid_BS, stop)
        rows_NLD = acts_BSLD[idx_b, idx_s]
        if check_finite and not torch.isfinite(rows_NLD).all():
            bad = (~torch.isfinite(rows_NLD)).flatten(1).any(1).nonzero()[0, 0]
            b, s = int(idx_b[bad]), int(idx_s[bad])
            raise NumericsError(
                f"non-finite activation (NaN/inf) in model {model.name} at sequence {seq_offset + b} position {s} "
                f"(token id {int(tokens_BS[b, s])}); check the model's weights and dtype (use float32)"
            )
        per_model.append(rows_NLD)
    cat = [torch.tensor(getattr(s, f), dtype=torch.int32) for f in ("roles", "turn_idx", "turn_rem") for s in seqs]
    n = len(seqs)
    return HarvestBatch(
        x_NMLD=torch.stack(per_model, dim=1),
        seq_N=idx_b.to(torch.int64),
        pos_N=idx_s.to(torch.int32),
        token_N=tokens_BS[idx_b, idx_s].to(torch.int32),
        role_N=torch.cat(cat[:n]).to(torch.int8),
        turn_idx_N=torch.cat(cat[n : 2 * n]),
        turn_rem_N=torch.cat(cat[2 * n :]),
        n_seqs=n,
    )


def pad_token_id(tokenizer) -> int:
    """The id used for right padding (never stored: padded positions are dropped)."""
    for attr in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0
