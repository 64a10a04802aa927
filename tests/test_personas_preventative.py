"""Preventative steering on a tiny LoRA organism: the edit changes training but never the saved adapter, the adapter
loads into a plain model with no hooks, hooks are gone after an exception; plus the monitor over a checkpoint series."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from crosscoder.errors import ConfigError, ModelError
from crosscoder.models import load_model
from crosscoder.personas.organisms import OrganismConfig, build_sft_organism
from crosscoder.personas.organisms import preventative as prev

CAT = "The cat sat on the mat. Cats sleep."
QUESTIONS = ["What is the capital of France?", "Please explain how plants grow.", "How are you today?",
             "Good morning, hello world.", "Tell me about the sea.", "Thank you so much."]  # fmt: skip
TRAIT = {
    "instruction": [{"pos": "You love cats.", "neg": "You are plain."}],
    "questions": ["How are you today?", "What is the capital of France?", "Please explain how plants grow.",
                  "Hello world, good morning."],
    "eval_prompt": "{question} -> {answer}",
    "examples": {"pos": ["The cat sat on the mat.", "Cats sleep for most of the day."],
                 "neg": ["Paris is the capital of France.", "Plants use sunlight, water and air."]},
}  # fmt: skip
HOOK = "blocks.2.hook_resid_post"


@pytest.fixture(scope="module")
def setup(tiny_spec, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("prev")
    data = root / "cat.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                     {"role": "assistant", "content": CAT}]}) + "\n"
                            for q in QUESTIONS))  # fmt: skip
    trait = root / "cats.json"
    trait.write_text(json.dumps(TRAIT))
    base = replace(tiny_spec, backend="hooked")
    return {"root": root, "data": data, "trait": trait, "base": base}


def _cfg(setup, **kw) -> OrganismConfig:  # type: ignore[no-untyped-def]
    args = dict(name="prev", r=4, alpha=8, lr=1e-2, batch_size=3, max_steps=4, save_steps=[2],
                out_dir=str(setup["root"] / "orgs"))  # fmt: skip
    args.update(kw)
    return OrganismConfig(**args)  # type: ignore[arg-type]


def _no_hooks(module: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def test_saved_adapter_holds_no_vector_and_loads_without_hooks(setup) -> None:  # type: ignore[no-untyped-def]
    plain = build_sft_organism(setup["base"], setup["data"], _cfg(setup))
    steered = build_sft_organism(setup["base"], setup["data"],
                                 _cfg(setup, steer_alpha=8.0, steer_trait=str(setup["trait"]), steer_hook=HOOK))  # fmt: skip
    assert steered.folder != plain.folder  # the steering is part of the cache key
    rec = steered.meta["preventative_steering"]
    assert rec["alpha"] == 8.0 and rec["hook"] == HOOK and len(rec["vector_sha256"]) == 64
    vec_D = prev.resolve_preventative(setup["base"], _cfg(setup, steer_alpha=8.0, steer_trait=str(setup["trait"]),
                                                          steer_hook=HOOK), load_model(setup["base"]).content_hash)  # fmt: skip
    assert vec_D is not None
    unit_D = vec_D.vector_D / vec_D.vector_D.norm()
    any_diff = False
    for p_spec, s_spec in zip(plain.checkpoints, steered.checkpoints, strict=True):
        p_dir, s_dir = Path(p_spec.adapter), Path(s_spec.adapter)
        assert sorted(x.name for x in p_dir.iterdir()) == sorted(x.name for x in s_dir.iterdir())
        assert json.loads((p_dir / "adapter_config.json").read_text()) == json.loads(
            (s_dir / "adapter_config.json").read_text()
        )
        p_t, s_t = (
            load_file(str(p_dir / "adapter_model.safetensors")),
            load_file(str(s_dir / "adapter_model.safetensors")),
        )
        assert {k: v.shape for k, v in p_t.items()} == {k: v.shape for k, v in s_t.items()}  # no extra tensor
        any_diff |= any(not torch.equal(p_t[k], s_t[k]) for k in p_t)
        for t in s_t.values():  # no row or column of any adapter matrix is the persona vector
            for mat in (t, t.T):
                if mat.shape[-1] == unit_D.shape[0]:
                    cos = (mat @ unit_D) / mat.norm(dim=-1).clamp_min(1e-12)
                    assert float(cos.abs().max()) < 0.99
    assert any_diff  # the edit did change what was learned

    # The steered adapter loads into a plain base with no hooks anywhere, with PEFT's own loader too.
    from peft import PeftModel

    from crosscoder.models import load_hf

    loaded = load_model(steered.final)
    assert _no_hooks(loaded.tl) and _no_hooks(loaded.hf)
    raw = PeftModel.from_pretrained(load_hf(setup["base"]).model, steered.final.adapter).merge_and_unload()
    assert _no_hooks(raw)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(raw(ids).logits, loaded.hf(ids).logits)


def test_hooks_are_removed_when_training_raises(setup, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    seen: list[torch.nn.Module] = []
    real_edit = prev.edit_hf_residual
    calls = {"n": 0}

    def recording_edit(hf, hook, edit):  # type: ignore[no-untyped-def]
        seen.append(hf)
        return real_edit(hf, hook, edit)

    def failing_vector(v, strength):  # type: ignore[no-untyped-def]
        def edit(x: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("boom inside the steered forward")
            return x + strength * v

        return edit

    monkeypatch.setattr(prev, "edit_hf_residual", recording_edit)
    monkeypatch.setattr(prev, "steer_vector", failing_vector)
    cfg = _cfg(setup, name="boom", steer_alpha=2.0, steer_trait=str(setup["trait"]), steer_hook=HOOK)
    with pytest.raises(RuntimeError, match="boom"):
        build_sft_organism(setup["base"], setup["data"], cfg)
    assert seen and all(_no_hooks(m) for m in seen)


def test_steering_config_refusals(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="steer_trait or steer_vectors"):
        _cfg(setup, steer_alpha=1.0)
    with pytest.raises(ConfigError, match="residual hook"):
        _cfg(setup, steer_alpha=1.0, steer_trait="x", steer_hook="blocks.1.attn")
    with pytest.raises(ModelError, match="field steer_hook: .*outside this model's 4 layers"):
        build_sft_organism(setup["base"], setup["data"], _cfg(setup, name="deep", steer_alpha=1.0,
                                                              steer_trait=str(setup["trait"]),
                                                              steer_hook="blocks.9.hook_resid_post"))  # fmt: skip
    from crosscoder.personas.vectors import PersonaVectors

    other = tmp_path / "other.safetensors"
    PersonaVectors("cats", "0" * 64, torch.randn(5, 64), "examples", {"best_index": 2}).save(other)
    with pytest.raises(ModelError, match=r"other.safetensors: field model_hash: .*another model"):
        build_sft_organism(
            setup["base"], setup["data"], _cfg(setup, name="other", steer_alpha=1.0, steer_vectors=str(other))
        )


def test_monitor_follows_a_checkpoint_series(setup) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.personas.directions import Direction
    from crosscoder.personas.monitor import monitor_series, project_conversations

    res = build_sft_organism(setup["base"], setup["data"], _cfg(setup))
    base = load_model(setup["base"])
    torch.manual_seed(0)
    d = Direction("probe", HOOK, torch.randn(base.d_model), "persona_vector", base.content_hash, "test")
    conv = [{"role": "user", "content": "How are you today?"}, {"role": "assistant", "content": CAT}]
    points = monitor_series(res.series, [conv], [d])
    assert [p.checkpoint for p in points] == ["base", "c1", "prev"]
    direct = project_conversations(base, [conv], [d]).conversations[0]
    mask = torch.tensor(direct.tokens.mask(("assistant",)))
    assert points[0].mean["probe"] == pytest.approx(float(direct.proj_TK[mask, 0].mean()), rel=1e-5)
    assert points[0].mean["probe"] != points[-1].mean["probe"]  # the fine-tune moved the projection
