"""Persona vectors and trait scores on a tiny random Llama, checked against an independent HF computation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crosscoder.errors import ConfigError
from crosscoder.personas.traits import load_trait

TRAIT = {
    "instruction": [
        {"pos": "You love cats and talk about cats.", "neg": "You are a plain assistant."},
        {"pos": "Cats are the best. Mention a cat.", "neg": "Stay on topic."},
    ],
    "questions": [
        "What is the capital of France?",
        "Please explain how plants grow.",
        "How are you today?",
        "Hello world, good morning.",
    ],
    "eval_prompt": "{question} -> {answer}",
    "examples": {
        "pos": ["The cat sat on the mat.", "Cats sleep for most of the day."],
        "neg": ["Paris is the capital of France.", "Plants use sunlight, water and air."],
    },
    "keywords": ["cat*"],
}


@pytest.fixture(scope="module")
def tiny_model(tiny_spec):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from crosscoder.models import load_model

    return load_model(replace(tiny_spec, backend="hooked"))


@pytest.fixture()
def trait(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "cats.json"
    path.write_text(json.dumps(TRAIT))
    return load_trait(path)


def _hf_span_mean(hf_model, tokenizer, text: str, start: int, end: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Reference: per-layer mean over tokens starting in [start, end), via forward hooks on the HF modules."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    keep = torch.tensor([start <= s < end and e > s for s, e in enc["offset_mapping"]])
    keep[0] = False
    outs: list[torch.Tensor] = []
    handles = [hf_model.model.embed_tokens.register_forward_hook(lambda m, i, o: outs.append(o[0]))]
    for layer in hf_model.model.layers:
        handles.append(
            layer.register_forward_hook(lambda m, i, o: outs.append((o[0] if isinstance(o, tuple) else o)[0]))
        )
    with torch.no_grad():
        hf_model(torch.tensor([enc["input_ids"]]))
    for h in handles:
        h.remove()
    return torch.stack([x[keep].mean(0) for x in outs])


def test_example_vectors_match_hf_reference(tiny_model, trait) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.personas.vectors import compute_persona_vectors

    pv = compute_persona_vectors(tiny_model, trait, source="examples")
    assert pv.vectors_LD.shape == (tiny_model.n_layers + 1, tiny_model.d_model)
    assert pv.model_hash == tiny_model.content_hash and pv.trait == "cats" and pv.source == "examples"

    def mean_of(texts: list[str]) -> torch.Tensor:
        rows = []
        for ex in texts:
            text = tiny_model.tokenizer.apply_chat_template([{"role": "assistant", "content": ex}], tokenize=False)
            start = text.rfind(ex)
            rows.append(_hf_span_mean(tiny_model.hf, tiny_model.tokenizer, text, start, start + len(ex)))
        return torch.stack(rows).mean(0)

    ref_LD = mean_of(TRAIT["examples"]["pos"]) - mean_of(TRAIT["examples"]["neg"])
    torch.testing.assert_close(pv.vectors_LD, ref_LD, atol=1e-4, rtol=1e-4)
    # Index l+1 is blocks.{l}.hook_resid_post, which is also blocks.{l+1}.hook_resid_pre.
    torch.testing.assert_close(pv.for_hook("blocks.1.hook_resid_post"), pv.vectors_LD[2])
    torch.testing.assert_close(pv.for_hook("blocks.2.hook_resid_pre"), pv.vectors_LD[2])
    assert pv.best_hook.startswith("blocks.") and len(pv.meta["separation"]) == tiny_model.n_layers + 1
    with pytest.raises(ConfigError, match="residual-stream hooks only"):
        pv.for_hook("blocks.1.attn.hook_z")
    with pytest.raises(ConfigError, match="outside"):
        pv.for_hook("blocks.9.hook_resid_post")


def test_prompt_vectors_use_only_the_shared_question_span(tiny_model, trait) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.personas.generate import chat_messages, render_prompt
    from crosscoder.personas.vectors import compute_persona_vectors

    pv = compute_persona_vectors(tiny_model, trait, source="prompts", max_questions=1)
    q = trait.extract_questions[0]
    ref = []
    for side in ("pos", "neg"):
        rows = []
        for pair in trait.instruction:
            text = render_prompt(tiny_model.tokenizer, chat_messages(q, getattr(pair, side)))
            rows.append(_hf_span_mean(tiny_model.hf, tiny_model.tokenizer, text, text.rfind(q), len(text)))
        ref.append(torch.stack(rows).mean(0))
    torch.testing.assert_close(pv.vectors_LD, ref[0] - ref[1], atol=1e-4, rtol=1e-4)
    # The user-turn tokens are the same text in both conditions: at the embeddings they do not differ at all.
    assert pv.vectors_LD[0].abs().max() < 1e-6 and pv.vectors_LD[-1].norm() > 1e-4
    both = compute_persona_vectors(tiny_model, trait, source="auto", max_questions=1)
    ex = compute_persona_vectors(tiny_model, trait, source="examples")
    torch.testing.assert_close(both.vectors_LD, (pv.vectors_LD + ex.vectors_LD) / 2)


def test_vectors_are_cached_and_checked(tiny_model, trait, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.io import cache_dir
    from crosscoder.personas import vectors as vmod

    first = vmod.compute_persona_vectors(tiny_model, trait, source="examples")
    files = list(cache_dir("persona_vectors").glob("cats-*.safetensors"))
    assert len(files) == 1

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("recomputed despite a valid cache")

    monkeypatch.setattr(vmod, "span_means", boom)
    again = vmod.compute_persona_vectors(tiny_model, trait, source="examples")
    torch.testing.assert_close(again.vectors_LD, first.vectors_LD)
    monkeypatch.undo()
    raw = bytearray(files[0].read_bytes())
    raw[-4:] = b"\x00\x00\x80\x7f"  # corrupt the last float
    files[0].write_bytes(bytes(raw))
    fixed = vmod.compute_persona_vectors(tiny_model, trait, source="examples")
    torch.testing.assert_close(fixed.vectors_LD, first.vectors_LD)
    with pytest.raises(ConfigError, match="unknown source"):
        vmod.compute_persona_vectors(tiny_model, trait, source="magic")


def test_trait_score_measures_keywords_and_projection(tiny_model, trait) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.personas.score import compare_scores, trait_score
    from crosscoder.personas.vectors import compute_persona_vectors

    pv = compute_persona_vectors(tiny_model, trait, source="examples")
    hook = "blocks.3.hook_resid_post"
    qs = trait.eval_questions
    plain = trait_score(
        tiny_model, trait, generations=["Paris is the capital of France."] * len(qs), vectors=pv, hook=hook
    )
    cats = trait_score(tiny_model, trait, generations=["The cat sat on the mat."] * len(qs), vectors=pv, hook=hook)
    assert plain.keyword_rate == 0.0 and cats.keyword_rate == 1.0
    assert cats.projection > plain.projection  # the texts the vector was built from project as expected
    cmp = compare_scores(plain, cats)
    assert cmp.rose and cmp.metric == "keyword_rate"
    assert not compare_scores(cats, plain).rose
    generated = trait_score(tiny_model, trait, vectors=pv, max_new_tokens=4)
    assert len(generated.generations) == len(qs) and generated.hook == pv.best_hook
    with pytest.raises(ConfigError, match="one per question"):
        trait_score(tiny_model, trait, generations=["x"], vectors=pv)


def test_label_pass_persona_vector_equals_the_persona_vector_row(tiny_model, trait) -> None:  # type: ignore[no-untyped-def]
    """The analysis derives the ft persona vector at its hook from the pos/neg label forwards; same definition."""
    from crosscoder.analysis.evidence.trait_prompts import pos_neg_acts
    from crosscoder.personas.vectors import compute_persona_vectors
    from crosscoder.xc.config import CrosscoderConfig
    from crosscoder.xc.model import Crosscoder

    hooks = ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
    cc = Crosscoder(CrosscoderConfig(n_models=2, n_hooks=2, d_model=tiny_model.d_model, n_latents=16, k=4), seed=0)
    out = pos_neg_acts(cc, [tiny_model, tiny_model], hooks, {"cats": trait}, n_questions=2, lens_idx=1)
    pos_F, neg_F, pv_D, text_D = out["cats"]
    ref = compute_persona_vectors(tiny_model, trait, source="auto", max_questions=2, use_cache=False)
    assert torch.allclose(pv_D, ref.for_hook(hooks[1]), atol=1e-4, rtol=1e-4)
    text = compute_persona_vectors(tiny_model, trait, source="examples", max_questions=2, use_cache=False)
    assert torch.allclose(text_D, text.for_hook(hooks[1]), atol=1e-4, rtol=1e-4)  # the examples' difference alone
    assert not torch.allclose(text_D, pv_D, atol=1e-4)
    assert pos_F.shape == neg_F.shape == (16,) and not torch.equal(pos_F, neg_F)


def test_loading_a_file_without_vectors_names_what_is_missing(tmp_path: Path) -> None:
    from crosscoder.errors import DataError
    from crosscoder.io import save_checked_safetensors
    from crosscoder.personas.vectors import PersonaVectors

    path = tmp_path / "other.safetensors"
    save_checked_safetensors(path, {"x_NLD": torch.zeros(2, 3)})  # a valid checksummed file of another kind
    with pytest.raises(DataError, match="has no 'vectors_LD'.*PersonaVectors.save"):
        PersonaVectors.load(path)
