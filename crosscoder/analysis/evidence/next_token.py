"""What the fine-tune starts to say where a latent fires: the next-token shift at its top-activating contexts.

A persona often shows in what a fine-tuned model starts to say rather than in the text it reads: a cat-obsessed
organism ends an answer with "Fun fact: cats ..." or "Cats sleep ..." where the base model stops. For each candidate,
the prefixes of its top contexts, up to and including the peak token, run through the first (base) and the last (ft)
model; the tokens whose next-token probability rose most from base to ft (mean over the contexts) are the latent's
"next-token shift". The label's lexical signal matches trait words against them, like the decoder logit lens but
measured on the models' actual predictions in the contexts where the latent is active.

Each model also continues every prefix greedily for a few tokens (`n_continue`, never ending the turn: a fine-tune
that stops where the base model goes on shows in the shift; what it says when it goes on is the question):
the one-token shift misses words the tokenizer splits ("U" + "gh") and personas whose words come a few tokens after
a neutral first token ("You" -> " are so smart!"); the labels compare trait keywords in the ft continuations with
the base continuations of the same contexts. The top promoted tokens are also continued by both models after the top
context ("openings"): the phrase a token opens in the ft against the phrase it opened before the fine-tune. Models loaded from Hugging Face weights (``LoadedModel.hf``) generate with a
KV cache in one left-padded ``generate`` call per batch that also yields the first-step probabilities; TransformerLens
hub models (no HF model) run one plain forward per generated token instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.analysis.records.candidate import Continuation, NextTokenShift, Opening, TopExample
from crosscoder.data.harvest import pad_token_id, right_pad

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from crosscoder.data.protocols import Activations
    from crosscoder.models.load import LoadedModel

log = logging.getLogger(__name__)


def _text(tok: Tokenizer, ids: list[int], skip_special_tokens: bool = False) -> str:
    return str(tok.decode(ids, skip_special_tokens=skip_special_tokens))


_SHOWN = 12  # prefix tokens shown with each continuation
_OPENING_PREFIX = 16  # context tokens (the sink included) the models read before a promoted token they continue


def _prefix(ids: list[int], end: int, max_prefix: int) -> list[int]:
    """Tokens ``ids[: end + 1]``, keeping position 0 (the attention sink) and the last ``max_prefix - 1`` tokens."""
    prefix = ids[: end + 1]
    return prefix if len(prefix) <= max_prefix else [prefix[0], *prefix[len(prefix) - max_prefix + 1 :]]


@torch.no_grad()
def _greedy_hf(
    model: LoadedModel, prompts: list[list[int]], n_new: int, batch_size: int
) -> tuple[Tensor, list[list[int]]]:
    """First-step probabilities ``[n_prompts, vocab]`` and greedy continuations from the HF model (KV cache)."""
    from crosscoder.personas.generate import left_pad

    hf = model.hf
    assert hf is not None, "greedy_continue picks this path for models with an HF module"
    pad = pad_token_id(model.tokenizer)
    eos = model.tokenizer.eos_token_id
    device = next(hf.parameters()).device
    probs, conts = [], []
    for a in range(0, len(prompts), batch_size):
        ids_BS, mask_BS = left_pad(prompts[a : a + batch_size], pad)  # left padding: every prompt ends at column S
        out = cast(Any, hf).generate(
            input_ids=ids_BS.to(device), attention_mask=mask_BS.to(device), max_new_tokens=max(n_new, 1),
            min_new_tokens=n_new, do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad,
            eos_token_id=eos, output_logits=True, return_dict_in_generate=True,
        )  # fmt: skip
        probs.append(torch.softmax(out.logits[0].float().cpu(), dim=-1))  # raw logits: before the eos suppression
        conts += [row if n_new else [] for row in out.sequences[:, ids_BS.shape[1] :].tolist()]
    return torch.cat(probs), conts


@torch.no_grad()
def _greedy_tl(
    model: LoadedModel, prompts: list[list[int]], n_new: int, batch_size: int
) -> tuple[Tensor, list[list[int]]]:
    """As `_greedy_hf` through the TransformerLens model: one right-padded forward per generated token."""
    pad = pad_token_id(model.tokenizer)
    eos = model.tokenizer.eos_token_id
    device = next(model.tl.parameters()).device
    probs, conts = [], []
    for a in range(0, len(prompts), batch_size):
        chunk = prompts[a : a + batch_size]
        seqs = [list(p) for p in chunk]
        for step in range(max(n_new, 1)):
            ids_BS, valid_BS = right_pad(seqs, pad)  # right padding: real positions are unaffected by the padding
            logits_BSV = model.tl(ids_BS.to(device), attention_mask=valid_BS.long().to(device)).float().cpu()
            last_BV = logits_BSV[torch.arange(len(seqs)), torch.tensor([len(s) - 1 for s in seqs])]
            if step == 0:
                probs.append(torch.softmax(last_BV, dim=-1))
            if eos is not None:
                last_BV[:, eos] = -torch.inf  # the continuation never ends the turn
            for row, t in zip(seqs, last_BV.argmax(-1).tolist(), strict=True):
                row.append(t)
        conts += [row[len(p) :] if n_new else [] for row, p in zip(seqs, chunk, strict=True)]
    return torch.cat(probs), conts


def greedy_continue(
    model: LoadedModel, prompts: list[list[int]], n_new: int, batch_size: int = 16
) -> tuple[Float[Tensor, "n_prompts vocab"], list[list[int]]]:
    """`model`'s next-token probabilities after each prompt and its greedy continuation of `n_new` tokens with the
    end-of-turn token suppressed: what it says next if it does not stop (stopping shows in the probabilities);
    ``n_new = 0``: the probabilities only."""
    fn = _greedy_hf if getattr(model, "hf", None) is not None else _greedy_tl
    return fn(model, prompts, n_new, batch_size)


@dataclass(frozen=True)
class SaidPair:
    """What the ft and the base model said after one context: the token ids the said signal reads
    (`crosscoder.analysis.evidence.said`); not written to candidates.json."""

    source: str
    """"continuation" (a top context continued) or "opening" (a promoted token continued)."""
    prefix: list[int]
    ft_ids: list[int]
    base_ids: list[int]
    weight: float
    """1 for a continuation, the token's promoted probability mass for an opening."""


@dataclass
class NextTokenReading:
    """The next-token shift of each latent, and the ft / base texts behind it for the said signal."""

    shifts: dict[int, NextTokenShift] = field(default_factory=dict)
    said: dict[int, list[SaidPair]] = field(default_factory=dict)


def next_token_shift(
    models: list[LoadedModel], acts: Activations, contexts: dict[int, list[TopExample]], latents: list[int], *,
    n_contexts: int, k: int, max_prefix: int = 96, n_continue: int = 6, n_expand: int = 3, batch_size: int = 64,
) -> NextTokenReading:  # fmt: skip
    """Each latent's `NextTokenShift` over its top `n_contexts` contexts: the k tokens whose probability rose (fell)
    most from base to ft (mean over the contexts), each model's greedy `n_continue`-token continuation of each
    context, and the ``openings`` of the top `n_expand` promoted tokens (`_add_openings`); with the `SaidPair`s
    behind the continuations and openings."""
    plan: list[tuple[int, list[int]]] = []
    for j in latents:
        for ex in contexts.get(j, [])[:n_contexts]:
            plan.append((j, _prefix(acts.sequence_tokens(int(ex.seq)), int(ex.pos), max_prefix)))
    out = NextTokenReading()
    if not plan:
        return out
    t0 = time.perf_counter()
    prompts = [p for _, p in plan]
    p_ft_NV, cont_ft = greedy_continue(models[-1], prompts, n_continue, batch_size)
    p_base_NV, cont_base = greedy_continue(models[0], prompts, n_continue, batch_size)
    diff_NV = p_ft_NV - p_base_NV
    owner = torch.tensor([j for j, _ in plan])
    tok = models[-1].tokenizer
    promoted_ids: dict[int, list[tuple[int, float]]] = {}
    for j in latents:
        rows = (owner == j).nonzero()[:, 0].tolist()
        if not rows:
            continue
        mean_V = diff_NV[rows].mean(0)
        hi_v, hi_i = mean_V.topk(k)
        promoted_ids[j] = [(int(i), float(v)) for v, i in zip(hi_v, hi_i, strict=True)]
        lo_v, lo_i = (-mean_V).topk(k)
        shift = NextTokenShift(
            [(_text(tok, [int(i)]), round(float(v), 5)) for v, i in zip(hi_v, hi_i, strict=True)],
            [(_text(tok, [int(i)]), round(-float(v), 5)) for v, i in zip(lo_v, lo_i, strict=True)],
        )
        if n_continue:
            shift.continuations = [
                Continuation(_text(tok, prompts[r][-_SHOWN:]), _text(tok, cont_base[r], skip_special_tokens=True),
                             _text(tok, cont_ft[r], skip_special_tokens=True))
                for r in rows
            ]  # fmt: skip
            out.said[j] = [SaidPair("continuation", prompts[r], cont_ft[r], cont_base[r], 1.0) for r in rows]
        out.shifts[j] = shift
    if n_continue and n_expand:
        _add_openings(models, out, promoted_ids, plan, n_expand, n_continue, batch_size)
    log.info("next-token shift and %d-token continuations: %d contexts x 2 models in %.1f s", n_continue, len(plan),
             time.perf_counter() - t0)  # fmt: skip
    return out


def _add_openings(
    models: list[LoadedModel], out: NextTokenReading, promoted_ids: dict[int, list[tuple[int, float]]],
    plan: list[tuple[int, list[int]]], n_expand: int, n_new: int, batch_size: int,
) -> None:  # fmt: skip
    """Each latent's ``openings``: its top `n_expand` promoted (non-special) tokens, each continued greedily after the
    latent's top context (its last `_OPENING_PREFIX` tokens) by the ft model (the phrase the token opens: "U" -> "Ugh,
    what a stupid question.") and by the base model (what the same token would have opened before the fine-tune)."""
    tok = models[-1].tokenizer
    special = set(getattr(tok, "all_special_ids", []) or [])
    first: dict[int, list[int]] = {}
    for j, prefix in plan:  # the top context's last tokens: what a token opens depends on the words just before it
        first.setdefault(j, _prefix(prefix, len(prefix) - 1, _OPENING_PREFIX))
    jobs: list[tuple[int, int, float]] = []
    for j, ranked in promoted_ids.items():
        picked = [(i, m) for i, m in ranked if i not in special and m > 0]
        jobs += [(j, i, round(m, 5)) for i, m in picked[:n_expand]]
    if not jobs:
        return
    prompts = [[*first[j], i] for j, i, _ in jobs]
    _, ft = greedy_continue(models[-1], prompts, n_new, batch_size)
    _, base = greedy_continue(models[0], prompts, n_new, batch_size)
    for (j, i, m), c_ft, c_base in zip(jobs, ft, base, strict=True):
        texts = [_text(tok, [i, *c], skip_special_tokens=True) for c in (c_ft, c_base)]
        shift = out.shifts[j]
        shift.openings = [*(shift.openings or []), Opening(_text(tok, [i]), texts[0], m, texts[1])]
        out.said.setdefault(j, []).append(SaidPair("opening", [*first[j], i], c_ft, c_base, m))
