"""What the fine-tune starts to say where a latent fires: the next-token shift at its top-activating contexts.

A persona often shows in what a fine-tuned model starts to say rather than in the text it reads: a cat-obsessed
organism ends an answer with "Fun fact: cats ..." or "Cats sleep ..." where the base model stops. For each candidate,
the prefixes of its top contexts, up to and including the peak token, run through the first (base) and the last (ft)
model; the tokens whose next-token probability rose most from base to ft (mean over the contexts) are the latent's
"next-token shift". The label's lexical signal matches trait words against them, like the decoder logit lens but
measured on the models' actual predictions in the contexts where the latent is active.

One forward pass per model over all candidates' contexts (right-padded, logits read at each prefix's last token).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import Tensor

from crosscoder.data.harvest import pad_token_id, right_pad

log = logging.getLogger(__name__)


def _prefix(ids: list[int], end: int, max_prefix: int) -> list[int]:
    """Tokens ``ids[: end + 1]``, keeping position 0 (the attention sink) and the last ``max_prefix - 1`` tokens."""
    prefix = ids[: end + 1]
    return prefix if len(prefix) <= max_prefix else [prefix[0], *prefix[len(prefix) - max_prefix + 1 :]]


@torch.no_grad()
def _next_token_probs(model: Any, prompts: list[list[int]], batch_size: int) -> Tensor:
    """Next-token probabilities ``[n_prompts, vocab]`` after each prompt's last token."""
    pad = pad_token_id(model.tokenizer)
    device = next(model.tl.parameters()).device
    out = []
    for a in range(0, len(prompts), batch_size):
        chunk = prompts[a : a + batch_size]
        ids_BS, valid_BS = right_pad(chunk, pad)  # right padding: real positions are unaffected by the padding
        logits_BSV = model.tl(ids_BS.to(device), attention_mask=valid_BS.long().to(device)).float().cpu()
        last_B = torch.tensor([len(p) - 1 for p in chunk])
        out.append(torch.softmax(logits_BSV[torch.arange(len(chunk)), last_B], dim=-1))
    return torch.cat(out)


def next_token_shift(
    models: list[Any], acts: Any, contexts: dict[int, list[dict[str, Any]]], latents: list[int], *,
    n_contexts: int, k: int, max_prefix: int = 96, batch_size: int = 16,
) -> dict[int, dict[str, list[list[Any]]]]:  # fmt: skip
    """{latent: {"promoted": [[token, mean p_ft - p_base], ...], "suppressed": [...]}} over its top contexts."""
    plan: list[tuple[int, list[int]]] = []
    for j in latents:
        for ex in contexts.get(j, [])[:n_contexts]:
            plan.append((j, _prefix(acts.sequence_tokens(int(ex["seq"])), int(ex["pos"]), max_prefix)))
    if not plan:
        return {}
    t0 = time.perf_counter()
    prompts = [p for _, p in plan]
    diff_NV = _next_token_probs(models[-1], prompts, batch_size) - _next_token_probs(models[0], prompts, batch_size)
    owner = torch.tensor([j for j, _ in plan])
    tok = models[-1].tokenizer
    out: dict[int, dict[str, list[list[Any]]]] = {}
    for j in latents:
        rows = (owner == j).nonzero()[:, 0]
        if len(rows) == 0:
            continue
        mean_V = diff_NV[rows].mean(0)
        hi_v, hi_i = mean_V.topk(k)
        lo_v, lo_i = (-mean_V).topk(k)
        out[j] = {
            "promoted": [[tok.decode([int(i)]), round(float(v), 5)] for v, i in zip(hi_v, hi_i, strict=True)],
            "suppressed": [[tok.decode([int(i)]), round(-float(v), 5)] for v, i in zip(lo_v, lo_i, strict=True)],
        }
    log.info("next-token shift: %d contexts x 2 models in %.1f s", len(plan), time.perf_counter() - t0)
    return out
