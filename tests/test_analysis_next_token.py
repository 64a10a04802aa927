"""Next-token shift: mean p_ft - p_base after the prefixes of a latent's top contexts, against a direct forward."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from crosscoder.analysis.next_token import _prefix, next_token_shift


def test_prefix_keeps_the_sink_and_the_tokens_up_to_the_peak() -> None:
    ids = list(range(100, 120))
    assert _prefix(ids, 5, 64) == ids[:6]
    assert _prefix(ids, 15, 4) == [100, 113, 114, 115]  # sink + the last 3 tokens up to the peak


def test_shift_matches_a_direct_computation(tiny_spec, tiny_dir) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.models import load_model, make_tiny_llama

    base = load_model(tiny_spec)
    ft = load_model(make_tiny_llama(tiny_dir / "tiny_shift_ft", seed=3, name="ft"))
    seqs = {0: [1, 17, 23, 5, 9, 40, 2], 1: [1, 8, 8, 31, 12]}
    acts = SimpleNamespace(sequence_tokens=lambda s: seqs[s])
    contexts = {7: [{"seq": 0, "pos": 4}, {"seq": 1, "pos": 2}], 9: [{"seq": 1, "pos": 4}]}
    out = next_token_shift([base, ft], acts, contexts, [7, 9], n_contexts=2, k=5)

    def probs(model, prefix):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return torch.softmax(model.tl(torch.tensor([prefix])).float()[0, -1], dim=-1)

    want_V = sum(probs(ft, p) - probs(base, p) for p in ([1, 17, 23, 5, 9], [1, 8, 8])) / 2
    top_v, top_i = want_V.topk(5)
    got = out[7]["promoted"]
    assert [t for t, _ in got] == [ft.tokenizer.decode([int(i)]) for i in top_i]
    assert [v for _, v in got] == pytest.approx([float(v) for v in top_v], abs=1e-5)
    assert out[9]["suppressed"][0][1] == pytest.approx(
        float((probs(ft, [1, 8, 8, 31, 12]) - probs(base, [1, 8, 8, 31, 12])).min()), abs=1e-5
    )
    same = next_token_shift([base, base], acts, contexts, [7], n_contexts=2, k=3)
    assert all(abs(v) < 1e-6 for _, v in same[7]["promoted"])  # a model paired with itself shifts nothing
