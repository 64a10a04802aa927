"""Trait-prompt activations: the checksummed cache and length-sorted batching."""

import pytest


def test_prompt_activations_are_cached_with_a_checksum(tiny_spec, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from crosscoder.analysis.evidence import trait_prompts
    from crosscoder.io import cache_dir
    from crosscoder.models import load_model

    model = load_model(tiny_spec)
    hooks = ["blocks.1.hook_resid_post", "blocks.3.hook_resid_post"]
    items = [([1, 5, 9, 12, 7], [False, False, True, True, True]), ([1, 4, 4, 8], [False, True, True, False])]
    first = trait_prompts.span_activations(model, hooks, items)
    assert first.shape == (5, 2, model.d_model)  # 3 + 2 masked tokens, position 0 never counted
    (path,) = list(cache_dir("prompt_acts").glob("*.safetensors"))
    calls: list[int] = []
    real_capture = trait_prompts.capture
    monkeypatch.setattr(trait_prompts, "capture", lambda *a, **k: calls.append(1) or real_capture(*a, **k))
    assert (
        torch.equal(trait_prompts.span_activations(model, hooks, items), first) and calls == []
    )  # read back, no forward
    other = trait_prompts.span_activations(model, hooks[:1], items)
    assert calls and torch.allclose(other[:, 0], first[:, 0])  # other hooks: another entry, same values
    data = bytearray(path.read_bytes())
    data[-4:] = b"\x7f\x7f\x7f\x7f"  # corrupt the tensor payload
    path.write_bytes(bytes(data))
    calls.clear()
    assert torch.equal(trait_prompts.span_activations(model, hooks, items), first) and calls  # recomputed, not trusted
    path.write_bytes(b"not a safetensors file")  # a broken header: recomputed as well, not an error
    calls.clear()
    assert torch.equal(trait_prompts.span_activations(model, hooks, items), first) and calls


def test_prompt_activations_keep_item_order_when_batched_by_length(tiny_spec) -> None:
    import torch

    from crosscoder.analysis.evidence import trait_prompts
    from crosscoder.models import load_model

    model = load_model(tiny_spec)
    hooks = ["blocks.2.hook_resid_post"]
    g = torch.Generator().manual_seed(0)
    items = []
    for n in (9, 3, 7, 4, 12, 5):  # lengths out of order, so length-sorted batches reorder them
        ids = torch.randint(1, 50, (n,), generator=g).tolist()
        items.append((ids, [i % 2 == 1 for i in range(n)]))
    batched = trait_prompts.span_activations(model, hooks, items, batch_size=4, use_cache=False)
    one_by_one = torch.cat([trait_prompts.span_activations(model, hooks, [it], use_cache=False) for it in items])
    assert batched.shape[0] == sum(sum(m[1:]) for _, m in items)
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-5)
