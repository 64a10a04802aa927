"""Preventative-steering stage of the screening benchmark, and the rule that fixes its coefficients in advance.

The organism trainer adds α·v at the hook, v the trait's *raw* persona vector (mean pos − neg difference). Raw α
means a different push per trait: at ``blocks.20.hook_resid_post`` the vectors' norms range from 16 (deception) to
34 (pirate). The benchmark therefore fixes a *strength* s instead, the size of the push relative to the residual
stream at the hook: ``α = s · R / ‖v‖``, so ``‖α·v‖ = s · R`` for every trait, where R is the median token norm of the
base model's residual at the hook over the neutral fine-tuning conversations (the attention-sink position 0 left
out). The strengths are fixed before a trait is run (:data:`STEER_STRENGTHS`); a raw ``--alphas`` list overrides
them.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from crosscoder.errors import ConfigError

if TYPE_CHECKING:
    from crosscoder.bench.screening import BenchOptions

log = logging.getLogger(__name__)

STEER_STRENGTHS = [0.025, 0.05]
"""‖α·v‖ / R. Fixed on 2026-12-02 before the held-out traits ran, from the only trait measured then
(cat_obsession, 25-step recipe): raw α 1 (‖α·v‖ = 16.5, about 5% of R) removed 82% of the rise with perplexity
+1.6%, α 2 (about 11% of R) cost +10.5%. So 5% (the strength that passed) and half of it; cat_obsession is the
calibration trait, deception and hostility are run once at these strengths."""


@torch.no_grad()
def residual_norm(base: Any, convs: list[list[dict[str, str]]], hook: str) -> float:
    """R: the median residual-stream token norm of `base` at `hook` over `convs` (position 0, the sink, left out)."""
    from crosscoder.personas.tokens import chat_tokens, hook_acts

    ids = [chat_tokens(base.tokenizer, c).ids for c in convs]
    norms: list[float] = []
    for _, acts in hook_acts(base, ids, [hook], desc="residual norm"):
        norms += acts[hook][1:].norm(dim=-1).tolist()
    if not norms:
        raise ConfigError(f"no tokens to measure the residual norm at {hook}: the conversations are empty")
    return float(statistics.median(norms))


@dataclass
class SteerScale:
    """What turns a strength into a raw α: R at the hook and each steer trait's raw vector norm there."""

    resid_norm: float | None
    """Median residual token norm at the hook (None when raw --alphas are given)."""
    vector_norms: dict[str, float]
    """Trait -> norm of its raw persona vector at the hook."""


def steer_alphas(strengths: list[float], resid_norm: float, vector_norm: float) -> list[float]:
    """Raw coefficients α = s · R / ‖v‖ for each strength s (so that ‖α·v‖ = s · R)."""
    if resid_norm <= 0 or vector_norm <= 0:
        raise ConfigError(f"steering scale: residual norm {resid_norm} and vector norm {vector_norm} must be > 0")
    return [s * resid_norm / vector_norm for s in strengths]


def _points(opts: BenchOptions, resid_norm: float | None, vector_norm: float) -> list[tuple[str, float | None, float]]:
    """(result key, strength or None, raw α) per steering point of one trait."""
    if opts.alphas:
        return [(f"{a:g}", None, a) for a in opts.alphas]
    assert resid_norm is not None
    alphas = steer_alphas(opts.steer_strengths, resid_norm, vector_norm)
    return [(f"s{s:g}", s, a) for s, a in zip(opts.steer_strengths, alphas, strict=True)]


def steering_stage(
    data: Any, ev: Any, organism: Callable[..., Any], opts: BenchOptions, out: dict[str, Any],
    save: Callable[[], None], scale: SteerScale,
) -> None:  # fmt: skip
    """Fill `out` per steer trait (saving after every evaluation, so a stopped run keeps its finished points)."""
    for trait in opts.steer_traits:
        base_e = ev(None, trait, "base:" + ev.base.content_hash)
        plain, _ = organism(data, trait, 1.0, opts)
        un = ev(plain.final, trait, str(plain.folder))
        row: dict[str, Any] = {"base": {"expression": base_e.expression, "keyword_rate": base_e.keyword_rate,
                                        "perplexity": base_e.perplexity},
                               "unsteered": {"expression": un.expression, "keyword_rate": un.keyword_rate,
                                             "perplexity": un.perplexity, "organism": str(plain.folder),
                                             "sample_answers": un.answers[:3]}, "alphas": {}}  # fmt: skip
        out[trait] = row
        save()
        rise = un.expression - base_e.expression
        for key, strength, alpha in _points(opts, scale.resid_norm, scale.vector_norms[trait]):
            res, _ = organism(data, trait, 1.0, opts, steer=alpha, steer_tag=key if strength is not None else "")
            st = ev(res.final, trait, str(res.folder))
            kw_drop = 1 - st.keyword_rate / un.keyword_rate if st.keyword_rate is not None and un.keyword_rate else None
            row["alphas"][key] = {
                "strength": strength, "alpha": alpha, "steer_norm": alpha * scale.vector_norms[trait],
                "expression": st.expression, "keyword_rate": st.keyword_rate, "perplexity": st.perplexity,
                "trait_drop": 1 - (st.expression - base_e.expression) / rise if rise > 0 else None,
                "keyword_drop": kw_drop, "capability_change": st.perplexity / un.perplexity - 1,
                "capability_change_vs_base": st.perplexity / base_e.perplexity - 1, "organism": str(res.folder),
                "train_seconds": res.meta.get("train_seconds"), "sample_answers": st.answers[:3],
            }  # fmt: skip
            p = row["alphas"][key]
            log.info("steering %s %s (α=%.3f): trait_drop %s, capability_change %+.3f", trait, key, alpha,
                     p["trait_drop"], p["capability_change"])  # fmt: skip
            save()
