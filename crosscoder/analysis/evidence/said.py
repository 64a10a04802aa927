"""The persona vectors' reading of what the models say where a latent fires (the labels' ``said`` signal).

The lexical signal matches a trait's keywords in what the ft and the base model say at a latent's top contexts (their
greedy continuations and the phrases the top promoted tokens open, `crosscoder.analysis.evidence.next_token`). This signal asks
the persona vectors the same question without a word list. The ft model reads each context followed by the ft's text
and, separately, by the base's text; the mean activation over the said tokens at the lens hook, ft text minus base
text, is averaged over a latent's contexts (continuations and openings apart; an opening weighs what its token's
probability rose) and projected onto each trait's text
persona vector v_t (the ft model's mean activation over the trait's pos examples minus its neg examples,
`crosscoder.analysis.evidence.trait_prompts.pos_neg_acts`):

    said_t(j) = < mean_c [ h(ctx_c + ft_c) - h(ctx_c + base_c) ], v_t > / ||v_t||^2

1.0 when the fine-tune's words there differ from the base's along trait t as much as the trait's pos examples differ
from its neg examples; 0 when both models say the same. A data-path organism that barely follows persona system
prompts still *reads* pessimistic or hostile text differently from neutral text, so this works where the decoder
cosine with prompt-based persona vectors does not (persona vectors as monitors of a model's own responses, Chen et al.
2025). Persona vectors of different traits share a component (any persona text against helpful text), so the signal
is not specific by itself; the label needs a second kind of evidence (`crosscoder.analysis.labels.signals.label_latent`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.analysis.evidence.next_token import SaidPair, _prefix
from crosscoder.analysis.evidence.trait_prompts import item_means, span_activations

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel

log = logging.getLogger(__name__)


@torch.no_grad()
def said_diffs(
    model: LoadedModel, hook: str, said: dict[int, list[SaidPair]], read_prefix: int = 16
) -> dict[int, dict[str, Float[Tensor, " d_model"]]]:
    """{latent: {source: weighted mean over its pairs of h(ctx + ft text) - h(ctx + base text) [D]}} read by `model`
    at `hook` (mean over the said tokens), from the `SaidPair`s of `next_token_shift` (continuations weigh the same,
    openings by their token's promoted mass); each context keeps its last `read_prefix` tokens (and the sink). Pairs
    where both models said the same tokens contribute exactly zero and are not read; a text repeated in several pairs
    (top contexts often end alike) is read once."""
    texts: dict[tuple[int, ...], int] = {}  # unique token sequences to read -> item index
    spans: list[int] = []  # said tokens at the end of each item
    pairs: list[tuple[int, str, float, int, int]] = []  # latent, source, weight, ft item, base item (-1: equal texts)
    for j, said_pairs in said.items():
        for pair in said_pairs:
            source, prefix, ft_ids, base_ids, weight = pair.source, pair.prefix, pair.ft_ids, pair.base_ids, pair.weight
            if not ft_ids or not base_ids or weight <= 0:
                continue
            if list(ft_ids) == list(base_ids):
                pairs.append((int(j), str(source), float(weight), -1, -1))
                continue
            ctx = _prefix(list(prefix), len(prefix) - 1, read_prefix)
            idx = []
            for ids in (ft_ids, base_ids):
                key = (*ctx, *ids)
                if key not in texts:
                    texts[key] = len(texts)
                    spans.append(len(ids))
                idx.append(texts[key])
            pairs.append((int(j), str(source), float(weight), idx[0], idx[1]))
    if not pairs:
        return {}
    t0 = time.perf_counter()
    items = [(list(key), [False] * (len(key) - n) + [True] * n) for key, n in zip(texts, spans, strict=True)]
    h_ID = torch.zeros(0, model.d_model)
    if items:
        h_ID = item_means(span_activations(model, [hook], items, use_cache=False)[:, 0], items)  # [unique texts, D]
    out: dict[int, dict[str, Tensor]] = {}
    total: dict[tuple[int, str], float] = {}
    for j, source, w, a, b in pairs:
        acc = out.setdefault(j, {}).setdefault(source, torch.zeros(model.d_model))
        if a >= 0:
            acc += w * (h_ID[a] - h_ID[b])
        total[(j, source)] = total.get((j, source), 0.0) + w
    for (j, source), w in total.items():
        out[j][source] = out[j][source] / w
    log.info("said signal: the ft model read %d texts for %d ft/base pairs of %d latents in %.1f s", len(items),
             len(pairs), len(out), time.perf_counter() - t0)  # fmt: skip
    return out


def said_alignment(
    diff_D: Float[Tensor, " d_model"], vec_TD: Float[Tensor, "n_traits d_model"]
) -> Float[Tensor, " n_traits"]:
    """<diff, v_t> / ||v_t||^2 per trait: the ft - base difference of what was said, in units of each trait's pos - neg
    separation along its persona vector."""
    vec = vec_TD.double()
    return ((vec @ diff_D.double()) / (vec * vec).sum(-1).clamp_min(1e-12)).float()


def said_joint(
    diff_D: Float[Tensor, " d_model"], vec_TD: Float[Tensor, "n_traits d_model"]
) -> Float[Tensor, " n_traits"]:
    """The coefficients beta of ``diff ~ sum_t beta_t v_t`` (least squares over all traits at once): the part of
    the said difference along trait t that no other trait's text vector explains, in units of v_t (one trait: the
    plain `said_alignment`). Text vectors of different traits share "persona text against helpful text"; the joint
    fit gives that shared part to none of them alone."""
    vec = vec_TD.double()
    if vec.shape[0] == 1:
        return said_alignment(diff_D, vec_TD)
    return torch.linalg.lstsq(vec.T, diff_D.double()[:, None]).solution[:, 0].float()


def said_scores(
    diffs: dict[int, dict[str, Tensor]], vec_TD: Float[Tensor, "n_traits d_model"], joint: bool = True
) -> dict[int, Float[Tensor, " n_traits"]]:
    """{latent: per trait, the larger reading of its sources (continuations, openings)}: `said_joint`, or the plain
    per-trait `said_alignment` with ``joint=False``."""
    read = said_joint if joint else said_alignment
    return {
        j: torch.stack([read(d, vec_TD) for d in by_source.values()]).max(0).values for j, by_source in diffs.items()
    }
