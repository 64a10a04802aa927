"""Next-token shift: mean p_ft - p_base after the prefixes of a latent's top contexts, against a direct forward."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from crosscoder.analysis.evidence.next_token import _prefix, greedy_continue, next_token_shift
from crosscoder.analysis.records.candidate import TopExample


def test_prefix_keeps_the_sink_and_the_tokens_up_to_the_peak() -> None:
    ids = list(range(100, 120))
    assert _prefix(ids, 5, 64) == ids[:6]
    assert _prefix(ids, 15, 4) == [100, 113, 114, 115]  # sink + the last 3 tokens up to the peak


def _ex(seq: int, pos: int) -> TopExample:
    """A top context of which next_token_shift reads the sequence and the peak position."""
    return TopExample(seq=seq, pos=pos, tokens=[], acts=[], max_pos=0, max_act=0.0)


def test_shift_matches_a_direct_computation(tiny_spec, tiny_dir) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.models import load_model, make_tiny_llama

    base = load_model(tiny_spec)
    ft = load_model(make_tiny_llama(tiny_dir / "tiny_shift_ft", seed=3, name="ft"))
    seqs = {0: [1, 17, 23, 5, 9, 40, 2], 1: [1, 8, 8, 31, 12]}
    acts = SimpleNamespace(sequence_tokens=lambda s: seqs[s])
    contexts = {7: [_ex(0, 4), _ex(1, 2)], 9: [_ex(1, 4)]}
    out = next_token_shift([base, ft], acts, contexts, [7, 9], n_contexts=2, k=5).shifts

    def probs(model, prefix):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return torch.softmax(model.tl(torch.tensor([prefix])).float()[0, -1], dim=-1)

    want_V = sum(probs(ft, p) - probs(base, p) for p in ([1, 17, 23, 5, 9], [1, 8, 8])) / 2
    top_v, top_i = want_V.topk(5)
    got = out[7].promoted
    assert [t for t, _ in got] == [ft.tokenizer.decode([int(i)]) for i in top_i]
    assert [v for _, v in got] == pytest.approx([float(v) for v in top_v], abs=1e-5)
    assert out[9].suppressed[0][1] == pytest.approx(
        float((probs(ft, [1, 8, 8, 31, 12]) - probs(base, [1, 8, 8, 31, 12])).min()), abs=1e-5
    )
    same = next_token_shift([base, base], acts, contexts, [7], n_contexts=2, k=3).shifts
    assert all(abs(v) < 1e-6 for _, v in same[7].promoted)  # a model paired with itself shifts nothing


def _greedy_by_hand(model, prefix, n, eos=None):  # type: ignore[no-untyped-def]
    """Greedy continuation by repeated full forwards of the TL model (no cache), the end-of-turn token never chosen."""
    ids = list(prefix)
    for _ in range(n):
        with torch.no_grad():
            logits = model.tl(torch.tensor([ids])).float()[0, -1]
        logits[model.tokenizer.eos_token_id if eos is None else eos] = -torch.inf
        ids.append(int(logits.argmax()))
    return ids[len(prefix) :]


def test_continuations_are_each_models_greedy_text_by_both_paths(tiny_spec, tiny_dir) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.models import load_model, make_tiny_llama

    base = load_model(tiny_spec)
    ft = load_model(make_tiny_llama(tiny_dir / "tiny_shift_ft", seed=3, name="ft"))
    prompts = [[1, 17, 23, 5, 9], [1, 8, 8], [1, 40, 2, 31, 12, 7, 7]]
    want = [_greedy_by_hand(ft, p, 6) for p in prompts]
    p_hf, c_hf = greedy_continue(ft, prompts, 6, batch_size=2)  # KV-cached HF generate, left-padded batches
    tl_only = SimpleNamespace(tl=ft.tl, tokenizer=ft.tokenizer, hf=None)
    p_tl, c_tl = greedy_continue(tl_only, prompts, 6, batch_size=2)  # TL forwards, right-padded batches
    assert c_hf == want and c_tl == want
    assert torch.allclose(p_hf, p_tl, atol=1e-5)
    assert greedy_continue(ft, prompts, 0)[1] == [[], [], []]  # probabilities only
    # the end-of-turn token is never chosen: make the token the model picks first the end-of-turn token
    eos = want[0][0]
    tok = SimpleNamespace(eos_token_id=eos, pad_token_id=ft.tokenizer.pad_token_id)
    want_eos = [_greedy_by_hand(ft, p, 6, eos=eos) for p in prompts]
    assert want_eos[0][0] != eos and all(eos not in w for w in want_eos)
    for model in (
        SimpleNamespace(tl=ft.tl, tokenizer=tok, hf=ft.hf),
        SimpleNamespace(tl=ft.tl, tokenizer=tok, hf=None),
    ):
        p_eos, c_eos = greedy_continue(model, prompts, 6, batch_size=2)
        assert c_eos == want_eos and torch.allclose(p_eos, p_hf, atol=1e-5)  # the probabilities are before suppression

    seqs = {0: prompts[0] + [3, 3], 1: prompts[2]}
    acts = SimpleNamespace(sequence_tokens=lambda s: seqs[s])
    out = next_token_shift([base, ft], acts, {7: [_ex(0, 4), _ex(1, 6)]}, [7], n_contexts=2,
                           k=3, n_continue=6).shifts  # fmt: skip
    conts = out[7].continuations
    assert [c.ft for c in conts] == [ft.tokenizer.decode(w, skip_special_tokens=True) for w in want[::2]]
    assert [c.base for c in conts] == [
        base.tokenizer.decode(_greedy_by_hand(base, p, 6), skip_special_tokens=True) for p in prompts[::2]
    ]


def test_openings_continue_the_top_promoted_tokens_after_the_top_context(tiny_spec, tiny_dir) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.models import load_model, make_tiny_llama

    base = load_model(tiny_spec)
    ft = load_model(make_tiny_llama(tiny_dir / "tiny_shift_ft", seed=3, name="ft"))
    seqs = {0: [1, 17, 23, 5, 9, 40, 2], 1: [1, 8, 8, 31, 12]}
    acts = SimpleNamespace(sequence_tokens=lambda s: seqs[s])
    out = next_token_shift([base, ft], acts, {7: [_ex(0, 4), _ex(1, 2)]}, [7], n_contexts=2,
                           k=6, n_continue=4, n_expand=3).shifts  # fmt: skip
    rec = out[7].to_json()
    special = set(ft.tokenizer.all_special_ids)
    probs = (
        greedy_continue(ft, [[1, 17, 23, 5, 9], [1, 8, 8]], 0)[0]
        - greedy_continue(base, [[1, 17, 23, 5, 9], [1, 8, 8]], 0)[0]
    )
    ranked = [int(i) for i in probs.mean(0).topk(6).indices if int(i) not in special][:3]
    assert [o[0] for o in rec["openings"]] == [ft.tokenizer.decode([i]) for i in ranked]
    for (token, text, mass, base_text), i in zip(rec["openings"], ranked, strict=True):
        for model, got in ((ft, text), (base, base_text)):
            cont = _greedy_by_hand(model, [1, 17, 23, 5, 9, i], 4)  # after the top context, then the token
            assert got == model.tokenizer.decode([i, *cont], skip_special_tokens=True)
        assert [token, mass] in [[t, m] for t, m in rec["promoted"]]
    assert "openings" not in next_token_shift([base, ft], acts, {7: [_ex(0, 4)]}, [7], n_contexts=1, k=3,
                                              n_continue=4, n_expand=0).shifts[7].to_json()  # fmt: skip
