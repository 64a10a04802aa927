"""The said signal: the persona vector's reading of what the ft says against what the base says at a latent's contexts."""

from __future__ import annotations

import pytest
import torch

from crosscoder.analysis.evidence.next_token import SaidPair
from crosscoder.analysis.evidence.said import said_alignment, said_diffs, said_scores
from crosscoder.analysis.labels.decide import LabelRule, label_latent
from crosscoder.analysis.labels.signals import LatentReading, TraitMeasures, TraitWords, trait_evidence
from crosscoder.analysis.records.candidate import Continuation, NextTokenShift, TraitEvidence
from crosscoder.analysis.records.summary import UNLABELLED


def _mean_at(model, hook: str, ids: list[int], start: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Reference: the TL model's activation at `hook`, mean over positions start.. of one unpadded sequence."""
    _, cache = model.tl.run_with_cache(torch.tensor([ids]), names_filter=[hook])
    return cache[hook][0, start:].float().mean(0)


def test_said_diffs_match_a_direct_forward_and_vanish_for_equal_texts(tiny_spec) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.models import load_model

    model = load_model(tiny_spec)
    hook = "blocks.2.hook_resid_post"
    ctx_a, ctx_b = [1, 17, 23, 5, 9, 40, 2, 8], [1, 8, 8, 31]
    shift = {
        7: [
            SaidPair("continuation", ctx_a, [11, 12, 13], [21, 22], 1.0),
            SaidPair("continuation", ctx_b, [5, 6], [7, 8, 9], 1.0),
        ],
        9: [
            SaidPair("continuation", ctx_b, [4, 4], [4, 4], 1.0),
            SaidPair("opening", [*ctx_a, 30], [31], [32, 33], 0.3),
            SaidPair("opening", ctx_b, [3], [5], 0.1),
            SaidPair("opening", ctx_b, [6], [7], 0.0),
        ],
    }
    out = said_diffs(model, hook, shift, read_prefix=5)
    read_a = [1, *ctx_a[-4:]]  # the sink and the last read_prefix - 1 tokens

    def diff(ctx: list[int], ft: list[int], base: list[int]) -> torch.Tensor:
        return _mean_at(model, hook, [*ctx, *ft], len(ctx)) - _mean_at(model, hook, [*ctx, *base], len(ctx))

    want_7 = (diff(read_a, [11, 12, 13], [21, 22]) + diff(ctx_b, [5, 6], [7, 8, 9])) / 2
    assert set(out) == {7, 9} and set(out[7]) == {"continuation"} and set(out[9]) == {"continuation", "opening"}
    assert torch.allclose(out[7]["continuation"], want_7, atol=1e-4)
    assert torch.equal(out[9]["continuation"], torch.zeros_like(want_7))  # both models said the same tokens
    read_open = [1, *ctx_a[-3:], 30]
    want_open = (0.3 * diff(read_open, [31], [32, 33]) + 0.1 * diff(ctx_b, [3], [5])) / 0.4  # weighted by the mass
    assert torch.allclose(out[9]["opening"], want_open, atol=1e-4)
    assert said_diffs(model, hook, {3: []}) == {}  # no continuations: nothing to read


def test_said_alignment_is_in_units_of_each_traits_separation() -> None:
    v_TD = torch.tensor([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [1.0, 1.0, 0.0]])
    got = said_alignment(torch.tensor([2.0, 2.0, 0.0]), v_TD)
    assert got.tolist() == pytest.approx([1.0, 0.5, 2.0])
    assert said_alignment(torch.tensor([0.0, 0.0, 3.0]), v_TD).abs().max() == 0  # orthogonal to every trait
    best = said_scores({5: {"continuation": torch.tensor([0.0, 4.0, 0.0]), "opening": torch.tensor([2.0, 0.0, 0.0])}},
                       v_TD, joint=False)  # fmt: skip
    assert best[5].tolist() == pytest.approx([1.0, 1.0, 2.0])  # per trait, the larger of the two sources
    joint = said_scores({5: {"continuation": torch.tensor([2.0, 0.0, 0.0])}}, v_TD[:2])  # the default: joint fit
    assert joint[5].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)


def _ev(said: float, continuation_hit: bool) -> TraitEvidence:
    conts = [Continuation("", base="It is fine.", ft="It is hopeless." if continuation_hit else "It is fine.")]
    return trait_evidence(LatentReading(next_token=NextTokenShift([], [], conts), mean_act=1.0), TraitMeasures(said=said),
                          TraitWords(["hopeless"]), cosine_full=0.5, said_full=0.5)  # fmt: skip


def test_said_is_persona_vector_evidence_that_needs_a_second_signal() -> None:
    ev = _ev(0.4, continuation_hit=True)
    assert ev.said_signal == pytest.approx(0.8) and ev.persona_signal == pytest.approx(0.8)
    assert ev.lexical == 1.0
    rule = LabelRule([1, 1, 1], 0.35)
    label, conf, _, _ = label_latent({"pessimism": ev, "pirate": _ev(0.0, False)}, rule)
    assert label == "pessimism" and conf == pytest.approx(1.6 / 3)  # the continuations capped at the said signal
    alone = {"pessimism": _ev(1.0, continuation_hit=False), "pirate": _ev(0.0, False)}
    assert label_latent(alone, rule)[0] == UNLABELLED  # the reading alone is one kind of evidence
    words_only = {"pessimism": _ev(-0.3, continuation_hit=True), "pirate": _ev(0.0, False)}
    assert label_latent(words_only, rule)[0] == UNLABELLED  # and so are the keywords alone
    assert words_only["pessimism"].said_signal == 0.0  # speech moving against the trait is no evidence
