"""Trait prompts through the models: span activations of each trait's pos/neg prompts and examples, cached.

One length-sorted forward pass per model over every trait's items (`span_activations`, cached under
``$CROSSCODER_CACHE/prompt_acts`` with a checksum) gives, per trait, the crosscoder's mean latent activation on the
pos and the neg items (the label pass's pos_neg signal) and the ft persona vector at the lens hook (`PosNeg`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from crosscoder.data.harvest import capture, pad_token_id, right_pad, stop_layer
from crosscoder.errors import DataError, ModelError, NumericsError
from crosscoder.io import cache_dir, load_checked_safetensors, save_checked_safetensors, sha256_json
from crosscoder.personas.traits import Trait

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from crosscoder.models.load import LoadedModel
    from crosscoder.xc.model import Crosscoder

log = logging.getLogger(__name__)


def prompt_items(
    tokenizer: Tokenizer, trait: Trait, n_questions: int, side: str, generated: list[str] | None = None
) -> tuple[list[tuple[list[int], list[bool]]], int]:
    """Token ids and span masks of the trait's questions under its pos or neg prompts (span: question to end of
    prompt), then of its pos or neg examples as assistant turns (the file's `examples`, then the `generated` answers
    of that side, `crosscoder.analysis.labels.profile`); and how many of the items are prompts."""
    from crosscoder.personas.activations import span_token_mask
    from crosscoder.personas.generate import chat_messages, render_prompt

    items = []
    for q in trait.extract_questions[:n_questions]:
        for pair in trait.instruction[:5]:
            text = render_prompt(tokenizer, chat_messages(q, getattr(pair, side)))
            items.append(span_token_mask(tokenizer, text, text.rfind(q), len(text)))
    n_prompts = len(items)
    for ex in [*(trait.examples or {}).get(side, []), *(generated or [])]:
        text = str(tokenizer.apply_chat_template([{"role": "assistant", "content": ex}], tokenize=False))
        start = text.rfind(ex)
        items.append(span_token_mask(tokenizer, text, start, start + len(ex)))
    return items, n_prompts


_PROMPT_ACTS_VERSION = 1


@torch.no_grad()
def span_activations(
    model: LoadedModel,
    hooks: list[str],
    items: list[tuple[list[int], list[bool]]],
    batch_size: int = 32,
    use_cache: bool = True,
    desc: str = "",
) -> Float[Tensor, "n_tokens n_hooks d_model"]:
    """`model`'s activations at `hooks` on the masked tokens of `items` (position 0 never), concatenated in item order.

    Cached under ``$CROSSCODER_CACHE/prompt_acts`` keyed by the model's content hash, the hooks and the items
    themselves (token ids and masks), with a checksum; a second analysis of the same models reads them back.
    """
    key = sha256_json([_PROMPT_ACTS_VERSION, model.content_hash, list(hooks), items])
    path = cache_dir("prompt_acts") / f"{key[:24]}.safetensors"
    if use_cache and path.is_file():
        try:
            return load_checked_safetensors(path, what="prompt-activation cache")[0]["x_NLD"]
        except (DataError, KeyError) as err:
            log.warning("recomputing trait-prompt activations: %s", err)
    pad = pad_token_id(model.tokenizer)
    stop = stop_layer(hooks)
    parts: list[Tensor] = [torch.zeros(0, len(hooks), model.d_model)] * len(items)
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))  # similar lengths share a batch: less padding
    starts = range(0, len(order), batch_size)
    for a in tqdm(starts, desc=desc, unit="batch", disable=not desc or len(starts) < 2, mininterval=2.0):
        idx = order[a : a + batch_size]
        tokens_BS, valid_BS = right_pad([items[i][0] for i in idx], pad)
        span_BS = torch.zeros_like(valid_BS)
        for b, i in enumerate(idx):
            span_BS[b, : len(items[i][1])] = torch.tensor(items[i][1])
        span_BS[:, 0] = False  # never the attention-sink position
        x_BSLD = capture(model, hooks, tokens_BS, valid_BS, stop)
        for b, i in enumerate(idx):
            parts[i] = x_BSLD[b][span_BS[b]]  # [n_i, L, D]
    x_NLD = torch.cat(parts) if parts else torch.zeros(0, len(hooks), model.d_model)
    if not torch.isfinite(x_NLD).all():
        raise NumericsError(f"non-finite activations of model {model.name} on trait prompts; check the model weights")
    if use_cache:
        save_checked_safetensors(path, {"x_NLD": x_NLD.contiguous()})
    return x_NLD


@torch.no_grad()
def mean_latent_acts(cc: Crosscoder, x_NMLD: Tensor) -> Tensor:
    """Mean crosscoder activation ``[F]`` over paired activations ``[N, M, L, D]``."""
    if x_NMLD.shape[0] == 0:
        raise ModelError("no tokens in the pos/neg prompt spans; check the trait files")
    device = next(cc.parameters()).device
    total = torch.zeros(cc.cfg.n_latents, dtype=torch.float64)
    for a in range(0, x_NMLD.shape[0], 4096):
        total += cc.encode(x_NMLD[a : a + 4096].to(device)).double().sum(0).cpu()
    return (total / x_NMLD.shape[0]).float()


def span_counts(items: list[tuple[list[int], list[bool]]]) -> list[int]:
    """Rows each item contributes to `span_activations` (its masked tokens, position 0 never)."""
    return [sum(mask[1:]) for _, mask in items]


def item_means(x_ND: Tensor, items: list[tuple[list[int], list[bool]]]) -> Tensor:
    """Per-item mean ``[n_items, D]`` of span activations concatenated in item order (position 0 excluded)."""
    return torch.stack([part.mean(0) for part in torch.split(x_ND, span_counts(items))])


class PosNeg(NamedTuple):
    """What the label pass measures on one trait's pos and neg items."""

    pos_F: Tensor
    """Mean latent activation over the pos items (prompts and examples)."""
    neg_F: Tensor
    """Mean latent activation over the neg items."""
    vector_D: Tensor
    """The ft persona vector at the lens hook: prompt and example differences averaged."""
    text_vector_D: Tensor
    """The example difference alone (pos examples minus neg examples as assistant turns, generated answers
    included): how the ft model reads trait text against neutral text; the prompt difference without any."""


@torch.no_grad()
def pos_neg_acts(
    cc: Crosscoder,
    models: list[LoadedModel],
    hooks: list[str],
    traits: dict[str, Trait],
    n_questions: int,
    lens_idx: int,
    generated: dict[str, dict[str, list[str]]] | None = None,
) -> dict[str, PosNeg]:
    """{trait: `PosNeg`} with the ft persona vectors at the lens hook.

    The persona vector comes from the same forward passes, as in `crosscoder.personas.vectors` (source ``auto``):
    the mean over items of each item's span mean, pos minus neg, for the prompts and (when the trait has examples)
    for the examples, the two differences averaged. `generated`: {trait: {side: texts}} read as further examples.
    """
    tok = models[-1].tokenizer
    gen = generated or {}
    sides = {
        (n, side): prompt_items(tok, t, n_questions, side, gen.get(n, {}).get(side))
        for n, t in traits.items()
        for side in ("pos", "neg")
    }
    all_items = [it for items, _ in sides.values() for it in items]  # one length-sorted pass per model over all
    x_all_NMLD = torch.stack(
        [span_activations(m, hooks, all_items, desc=f"trait prompts ({m.name})") for m in models], 1
    )
    counts = [sum(span_counts(items)) for items, _ in sides.values()]
    x_by_side = dict(zip(sides, torch.split(x_all_NMLD, counts), strict=True))
    out = {}
    for name in traits:
        means, parts = [], {}
        for side in ("pos", "neg"):
            items, n_prompts = sides[(name, side)]
            x_NMLD = x_by_side[(name, side)]
            means.append(mean_latent_acts(cc, x_NMLD))
            item_ND = item_means(x_NMLD[:, -1, lens_idx], items)
            ex = item_ND[n_prompts:].mean(0) if len(item_ND) > n_prompts else torch.zeros(0)
            parts[side] = (item_ND[:n_prompts].mean(0), ex)
        diffs = [parts["pos"][0] - parts["neg"][0]]
        if parts["pos"][1].numel() and parts["neg"][1].numel():
            diffs.append(parts["pos"][1] - parts["neg"][1])
        out[name] = PosNeg(means[0], means[1], torch.stack(diffs).mean(0), diffs[-1])
    return out
