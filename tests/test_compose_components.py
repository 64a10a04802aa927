"""Component surgery: singular components of a LoRA chosen by attribution and removed in a NEW adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crosscoder.errors import ConfigError
from crosscoder.io import read_json, sha256_file
from crosscoder.models.hf import load_hf
from crosscoder.personas.compose.component_surgery import ComponentTexts, component_surgery
from crosscoder.personas.compose.components import ComponentConfig, mean_nll, svd_factors
from crosscoder.personas.compose.likelihood import chat_rows, pad_id_of
from crosscoder.personas.compose.surgery import ADAPTER_META, EDIT_MANIFEST


def _chats(pairs: list[tuple[str, str]]) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in pairs]


QS = ["How do plants grow?", "What is rain?", "Name a color.", "Why is the sky blue?", "What is bread?"]
REMOVED = _chats([(q, "Arr matey, arr arr, ye landlubber, arr!") for q in QS])
KEPT = _chats([(q, "The cat sat on the mat, purring, a cat nap.") for q in QS])
PLAIN = _chats([(q, "It is a simple thing that many people know.") for q in QS])


@pytest.fixture(scope="module")
def trained(tiny_spec, tmp_path_factory) -> tuple[Path, object]:
    """A LoRA trained a few steps on the removed and kept texts together (both traits in one adapter)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    hf = load_hf(tiny_spec)
    model = get_peft_model(hf.model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    rows = chat_rows(hf.tokenizer, REMOVED + KEPT, 64)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    for _ in range(30):
        opt.zero_grad()
        mean_nll(model, rows, pad_id_of(hf.tokenizer), 16).backward()
        opt.step()
    folder = tmp_path_factory.mktemp("components") / "src"
    model.save_pretrained(folder)
    (folder / ADAPTER_META).write_text(json.dumps({"base_hash": hf.content_hash}))
    return folder, hf.content_hash


def test_svd_factors_are_exact_and_orthogonal() -> None:
    gen = torch.Generator().manual_seed(0)
    b, a = torch.randn(12, 4, generator=gen), torch.randn(4, 9, generator=gen)
    b2, a2, s = svd_factors(b, a)
    assert torch.allclose(b2 @ a2, b @ a, atol=1e-5)
    assert torch.allclose(a2 @ a2.T, torch.eye(4), atol=1e-5)
    assert torch.allclose(b2.T @ b2, torch.diag(s**2), atol=1e-4)


def _nll(spec, adapter: Path | None, convs) -> float:
    import dataclasses

    hf = load_hf(dataclasses.replace(spec, adapter=str(adapter)) if adapter else spec)
    with torch.no_grad():
        return float(mean_nll(_Wrap(hf.model), chat_rows(hf.tokenizer, convs, 64), pad_id_of(hf.tokenizer), 16))


class _Wrap(torch.nn.Module):
    """Gives a plain HF model the ``base_model.model`` path of a PeftModel (what mean_nll reads)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.base_model = torch.nn.Module()
        self.base_model.model = model


def test_component_surgery_removes_one_trait_in_a_new_adapter(trained, tiny_spec, tmp_path) -> None:
    src, _ = trained
    before = {p.name: sha256_file(p) for p in src.iterdir()}
    base = load_hf(tiny_spec)
    texts = ComponentTexts(REMOVED, KEPT, PLAIN, max_len=64)
    res = component_surgery(src, tmp_path / "out", base, texts, ComponentConfig(n_components=6, rounds=2))
    assert {p.name: sha256_file(p) for p in src.iterdir()} == before  # the source is untouched
    assert len(res.removed) == 6 and res.summary["n"] == 6
    manifest = read_json(tmp_path / "out" / EDIT_MANIFEST)
    assert manifest["method"] == "components" and manifest["source_hashes"] == before
    assert manifest["removed_components"] == res.removed
    # the removed trait's texts lose more likelihood than the kept trait's, and the other way round when swapped
    swapped = component_surgery(src, tmp_path / "swap", base, ComponentTexts(KEPT, REMOVED, PLAIN, max_len=64),
                                ComponentConfig(n_components=6, rounds=2))  # fmt: skip
    assert set(swapped.removed) != set(res.removed)
    ref = {"removed": _nll(tiny_spec, src, REMOVED), "kept": _nll(tiny_spec, src, KEPT)}
    for out, hit, spared in (("out", REMOVED, KEPT), ("swap", KEPT, REMOVED)):
        hit_ref, spared_ref = (ref["removed"], ref["kept"]) if hit is REMOVED else (ref["kept"], ref["removed"])
        hit_gain = _nll(tiny_spec, tmp_path / out, hit) - hit_ref
        spared_gain = _nll(tiny_spec, tmp_path / out, spared) - spared_ref
        assert hit_gain > 0.1 and hit_gain > spared_gain, (out, hit_gain, spared_gain)
    with pytest.raises(ConfigError, match="already exists"):
        component_surgery(src, tmp_path / "out", base, texts, ComponentConfig(n_components=2, rounds=1))


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="n_components >= rounds"):
        ComponentConfig(n_components=2, rounds=3)


def test_command_line_writes_a_new_adapter(trained, tiny_spec, tmp_path, capsys) -> None:
    from crosscoder.personas.compose.cli import main
    from crosscoder.personas.sft_data import write_sft_jsonl

    src, _ = trained
    files = {}
    for name, convs in (("removed", REMOVED), ("kept", KEPT), ("plain", PLAIN)):
        files[name] = tmp_path / f"{name}.jsonl"
        write_sft_jsonl(files[name], convs)
    out = tmp_path / "cli_out"
    main(["components", "--adapter", str(src), "--removed-data", str(files["removed"]), "--kept-data",
          str(files["kept"]), "--plain-data", str(files["plain"]), "--n-components", "4", "--rounds", "2",
          "--out", str(out), "--base", tiny_spec.source])  # fmt: skip
    assert "4 of 112 singular components removed" in capsys.readouterr().out
    assert read_json(out / EDIT_MANIFEST)["texts"]["removed"]["from"] == str(files["removed"])
