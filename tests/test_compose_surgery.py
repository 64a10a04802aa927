"""LoRA surgery: a new adapter whose residual writes lose the directions; the source adapter is never changed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from crosscoder.errors import ConfigError, ModelError
from crosscoder.io import sha256_file
from crosscoder.models.hf import load_hf
from crosscoder.personas.compose.directions import DirectionMismatchError, PersonaDirection, Provenance
from crosscoder.personas.compose.surgery import (
    ADAPTER_META,
    EDIT_MANIFEST,
    SurgeryConfig,
    adapter_model_hash,
    base_weight_loader,
    file_hashes,
    lora_surgery,
)

ADAPTER_SCOPE = SurgeryConfig(scope="adapter")
MODEL_SCOPE = SurgeryConfig(scope="model")


def _adapter(
    spec, folder: Path, targets: list[str] | str = "all-linear", seed: int = 0, layers: list[int] | None = None
) -> tuple[Path, str]:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    hf = load_hf(spec)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, layers_to_transform=layers)
    model = get_peft_model(hf.model, cfg)
    model.save_pretrained(folder)
    (folder / ADAPTER_META).write_text(json.dumps({"base_hash": hf.content_hash}))
    return folder, hf.content_hash


@pytest.fixture(scope="module")
def adapter(tiny_spec, tmp_path_factory):
    return _adapter(tiny_spec, tmp_path_factory.mktemp("adapter") / "src")


def _direction(base_hash: str, hook: str, seed: int = 1, d: int = 64) -> PersonaDirection:
    gen = torch.Generator().manual_seed(seed)
    return PersonaDirection("u", torch.randn(d, generator=gen), base_hash, "base", hook, Provenance("file"))


def test_remove_projects_residual_writes_only_within_reach(adapter, tmp_path) -> None:
    src, base_hash = adapter
    before = {p.name: sha256_file(p) for p in src.iterdir()}
    u = _direction(base_hash, "blocks.1.hook_resid_post")
    res = lora_surgery(src, [u], tmp_path / "out", base_hash=base_hash, config=ADAPTER_SCOPE)
    assert {p.name: sha256_file(p) for p in src.iterdir()} == before  # the source is untouched
    old, new = (
        load_file(str(src / "adapter_model.safetensors")),
        load_file(str(tmp_path / "out" / "adapter_model.safetensors")),
    )
    unit = u.unit()
    for key, b in new.items():
        writer = ".lora_B." in key and ("o_proj" in key or "down_proj" in key)
        layer = int(key.split("layers.")[1].split(".")[0])
        if writer and layer <= 1:
            assert float((unit @ b).abs().max()) < 1e-5, key  # no write along u left
            # the orthogonal part of the write is exactly kept
            assert torch.allclose(b, old[key] - torch.outer(unit, unit @ old[key]), atol=1e-6)
        else:
            assert torch.equal(b, old[key]), key  # everything else is copied bit for bit
    assert sorted(res.edited) == sorted(k for k in new if ".lora_B." in k and ("o_proj" in k or "down_proj" in k)
                                        and int(k.split("layers.")[1].split(".")[0]) <= 1)  # fmt: skip
    assert (
        "layers.0.self_attn.q_proj" in res.unedited_modules and "layers.2.self_attn.q_proj" not in res.unedited_modules
    )
    man = json.loads((tmp_path / "out" / EDIT_MANIFEST).read_text())
    assert man["source_hashes"] == file_hashes(src) and man["directions"][0]["name"] == "u"
    assert 0 < res.removed_fraction < 1


def test_scale_and_all_layers(adapter, tmp_path) -> None:
    src, base_hash = adapter
    u = _direction(base_hash, "blocks.0.hook_resid_post")
    cfg = SurgeryConfig(mode="scale", factor=3.0, layers="all", scope="adapter")
    lora_surgery(src, [u], tmp_path / "x3", base_hash=base_hash, config=cfg)
    old, new = (
        load_file(str(src / "adapter_model.safetensors")),
        load_file(str(tmp_path / "x3" / "adapter_model.safetensors")),
    )
    unit = u.unit()
    key = "base_model.model.model.layers.3.mlp.down_proj.lora_B.weight"
    assert torch.allclose(unit @ new[key], 3.0 * (unit @ old[key]), atol=1e-5)


def test_new_adapter_loads_with_peft_and_changes_the_model(adapter, tiny_spec, tmp_path) -> None:
    from peft import PeftModel

    src, base_hash = adapter
    u = _direction(base_hash, "blocks.3.hook_resid_post")
    lora_surgery(src, [u], tmp_path / "edited", base_hash=base_hash, config=ADAPTER_SCOPE)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        peft_model = PeftModel.from_pretrained(load_hf(tiny_spec).model, str(tmp_path / "edited")).eval()
        edited = peft_model(ids).logits
        original = load_hf(dataclasses.replace(tiny_spec, adapter=str(src))).model(ids).logits
        via_spec = load_hf(dataclasses.replace(tiny_spec, adapter=str(tmp_path / "edited"))).model(ids).logits
    assert torch.allclose(edited, via_spec, atol=1e-5)
    assert not torch.allclose(edited, original, atol=1e-4)


def test_directions_of_the_fine_tune_are_accepted_and_others_refused(adapter, tmp_path) -> None:
    src, base_hash = adapter
    ft = _direction(adapter_model_hash(src, base_hash), "blocks.1.hook_resid_post")
    lora_surgery(src, [ft], tmp_path / "ok", base_hash=base_hash, config=ADAPTER_SCOPE)
    alien = _direction("a" * 64, "blocks.1.hook_resid_post")
    with pytest.raises(DirectionMismatchError, match="'u'"):
        lora_surgery(src, [alien], tmp_path / "no", base_hash=base_hash)
    wide = _direction(base_hash, "blocks.1.hook_resid_post", d=65)
    with pytest.raises(DirectionMismatchError, match="width 65"):
        lora_surgery(src, [wide], tmp_path / "no2", base_hash=base_hash)
    assert not (tmp_path / "no").exists() and not (tmp_path / "no2").exists()


def test_refusals(adapter, tiny_spec, tmp_path) -> None:
    src, base_hash = adapter
    u = _direction(base_hash, "blocks.1.hook_resid_post")
    qv, _ = _adapter(tiny_spec, tmp_path / "qv", targets=["q_proj", "v_proj"])
    with pytest.raises(ModelError, match="self_attn.q_proj, self_attn.v_proj, none of which writes into the residual"):
        lora_surgery(qv, [u], tmp_path / "o1", base_hash=base_hash)
    late, _ = _adapter(tiny_spec, tmp_path / "late", targets=["o_proj"], layers=[3])
    with pytest.raises(ModelError, match="blocks 3..3, after blocks.1.hook_resid_post"):
        lora_surgery(late, [u], tmp_path / "o4", base_hash=base_hash)
    with pytest.raises(ConfigError, match="already exists"):
        lora_surgery(src, [u], src.parent, base_hash=base_hash)
    with pytest.raises(ConfigError, match="inside it"):
        lora_surgery(src, [u], src / "nested", base_hash=base_hash)
    with pytest.raises(ModelError, match="trained on base"):
        lora_surgery(src, [_direction("b" * 64, "blocks.1.hook_resid_post")], tmp_path / "o2", base_hash="b" * 64)
    with pytest.raises(ModelError, match="do not know|does not know"):
        lora_surgery(src, [u], tmp_path / "o3", base_hash=base_hash, model_type="mamba")


def _writer_outputs(model: torch.nn.Module, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    outs: dict[str, torch.Tensor] = {}
    handles = []
    for name, mod in model.named_modules():
        if name.endswith(("self_attn.o_proj", "mlp.down_proj")) and ".lora_" not in name and "base_layer" not in name:
            handles.append(mod.register_forward_hook(lambda _m, _i, o, name=name: outs.__setitem__(name, o.detach())))
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for h in handles:
            h.remove()
    return outs


def test_model_scope_removes_every_write_along_the_direction(adapter, tiny_spec, tmp_path) -> None:
    from peft import PeftModel

    src, base_hash = adapter
    u = _direction(base_hash, "blocks.2.hook_resid_post")
    weights = base_weight_loader(tiny_spec.source)
    res = lora_surgery(src, [u], tmp_path / "m", base_hash=base_hash, base_weights=weights, config=MODEL_SCOPE)
    assert res.scope == "model" and 0 < res.removed_fraction < 1
    cfg = json.loads((tmp_path / "m" / "adapter_config.json").read_text())
    assert (
        cfg["rank_pattern"]["model.layers.0.self_attn.o_proj"] == 5
        and "model.layers.3.mlp.down_proj" not in cfg["rank_pattern"]
    )
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7]])
    edited = PeftModel.from_pretrained(load_hf(tiny_spec).model, str(tmp_path / "m")).eval()
    outs = _writer_outputs(edited, ids)
    unit = u.unit()
    for name, out in outs.items():
        layer = int(name.split("layers.")[1].split(".")[0])
        along = float((out @ unit).abs().max())
        if layer <= 2:
            assert along < 1e-4, name  # nothing written along u, whatever the other modules did
        else:
            assert along > 1e-3, name  # later blocks are not edited
    # scale x1 changes nothing: the extra ranks cancel exactly
    same = lora_surgery(src, [u], tmp_path / "x1", base_hash=base_hash, base_weights=weights,
                        config=SurgeryConfig(mode="scale", factor=1.0, scope="model"))  # fmt: skip
    assert same.scope == "model"
    with torch.no_grad():
        a = PeftModel.from_pretrained(load_hf(tiny_spec).model, str(tmp_path / "x1")).eval()(ids).logits
        b = load_hf(dataclasses.replace(tiny_spec, adapter=str(src))).model(ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ConfigError, match="base_weights"):
        lora_surgery(src, [u], tmp_path / "nb", base_hash=base_hash, config=MODEL_SCOPE)
