"""Component surgery: a *new* PEFT adapter with the singular components that carry one trait (and not another)
removed, for personas that no residual direction reaches (see :mod:`crosscoder.personas.compose.components`).

Direction surgery (:mod:`crosscoder.personas.compose.surgery`) edits what the adapter writes into the residual
stream; on SFT persona organisms most of the persona is carried by the MLP gate/up updates, whose effect reaches the
residual stream only through the base model's down_proj and the SiLU gate. Component surgery works on every
adapted module alike: each update ``s B A`` is rewritten in its singular basis (exactly, same rank and scale), the
components are scored by first-order attribution on three text sets (the removed trait's conversations, the kept
trait's, and plain answers), and the chosen components' columns of B are zeroed. The new adapter has the source's
config and tensor names and loads anywhere PEFT does; the source folder is hashed before and after and never written.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from crosscoder.errors import DataError, ModelError
from crosscoder.io import (
    atomic_dir,
    atomic_save_safetensors,
    atomic_write_json,
    load_safetensors,
    read_json,
    sha256_json,
)
from crosscoder.personas.compose.components import (
    ComponentConfig,
    describe,
    factor,
    peft_lora_modules,
    select_components,
    to_svd_factors,
)
from crosscoder.personas.compose.likelihood import chat_rows, pad_id_of
from crosscoder.personas.compose.surgery import (
    ADAPTER_CONFIG,
    ADAPTER_META,
    ADAPTER_WEIGHTS,
    EDIT_MANIFEST,
    _check_paths,
    _load_source,
    file_hashes,
)

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]


@dataclass
class ComponentTexts:
    """The three text sets that decide which components go (chats with assistant turns)."""

    removed: list[Conversation]
    """Conversations in the trait to remove (e.g. its SFT set)."""
    kept: list[Conversation]
    """Conversations in the trait to keep."""
    plain: list[Conversation]
    """Plain answers (e.g. the base model's own) whose likelihood must not suffer (capability)."""
    max_len: int = 128
    """Tokens per conversation."""
    labels: dict[str, str] = field(default_factory=dict)
    """Where each set came from (recorded in the manifest)."""


@dataclass
class ComponentSurgeryResult:
    """What a component surgery wrote."""

    out: Path
    source: Path
    removed: list[str]
    """Chosen components, ``<block>.<module>#<index in the singular basis>``, in the order chosen."""
    summary: dict[str, Any]
    n_components: int
    """Singular components in the whole adapter."""
    source_hashes: dict[str, str] = field(default_factory=dict)
    output_hashes: dict[str, str] = field(default_factory=dict)


def plain_answers(base: Any, n: int) -> list[Conversation]:
    """The base model's own greedy answers to the first `n` SFT questions (cached per base), as chats."""
    from crosscoder.personas.screening import base_answers
    from crosscoder.personas.sft_data import read_questions

    prefixes = [[{"role": "user", "content": q}] for q in read_questions()[:n]]
    answers = base_answers(base, prefixes)
    return [[*p, {"role": "assistant", "content": a}] for p, a in zip(prefixes, answers.values(), strict=True)]


def _saved_key(module_name: str, kind: str) -> str:
    """The PEFT file key of a LoRA factor (``...q_proj.lora_A.weight``) from the module's name in the PeftModel."""
    return f"{module_name}.{kind}.weight"


def _edited_tensors(peft_model: Any, source_tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The source's tensors with every LoRA factor replaced by the (edited) one in the PeftModel; the key sets must
    match exactly (an adapter layout this code does not know is refused, not half-written)."""
    new = dict(source_tensors)
    seen = set()
    for name, mod in peft_model.named_modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
            for kind in ("lora_A", "lora_B"):
                key = _saved_key(name, kind)
                if key not in source_tensors:
                    raise ModelError(f"adapter tensor {key} not found in the source file; cannot write the edit")
                new[key] = getattr(mod, kind)["default"].weight.detach().clone().to(source_tensors[key].dtype)
                seen.add(key)
    missing = [k for k in source_tensors if (".lora_A." in k or ".lora_B." in k) and k not in seen]
    if missing:
        raise ModelError(f"adapter has LoRA tensors outside its modules (e.g. {missing[0]}); cannot edit it")
    return new


def component_surgery(
    adapter: str | Path,
    out: str | Path,
    base: Any,
    texts: ComponentTexts,
    config: ComponentConfig | None = None,
) -> ComponentSurgeryResult:
    """Write a new adapter at `out`: `adapter` with the components that carry `texts.removed` but not
    `texts.kept` / `texts.plain` zeroed. `base` is the adapter's base (a LoadedModel or an HFModel: ``.model`` or
    ``.hf``, ``.tokenizer``, ``.content_hash``); its weights are not changed."""
    from peft import PeftModel

    cfg = config or ComponentConfig()
    source, out = Path(adapter), Path(out)
    _check_paths(source, out)
    before = file_hashes(source)
    _, meta = _load_source(source, base.content_hash, ())
    hf = getattr(base, "hf", None) or base.model
    peft_model = PeftModel.from_pretrained(hf, str(source)).eval()
    try:
        for p in peft_model.parameters():
            p.requires_grad_(False)
        mods = peft_lora_modules(peft_model)
        to_svd_factors(mods)
        tok = base.tokenizer
        rows = [chat_rows(tok, convs, texts.max_len) for convs in (texts.removed, texts.kept, texts.plain)]
        chosen = select_components(peft_model, mods, rows[0], rows[1], rows[2], pad_id_of(tok), cfg)
        tensors = _edited_tensors(peft_model, load_safetensors(source / ADAPTER_WEIGHTS))
    finally:
        peft_model.unload()  # the base module gets its plain layers back
    total = sum(int(factor(m, "lora_B").shape[1]) for m in mods.values())
    names = [f"{layer}.{mod}#{i}" for (layer, mod), i in chosen]
    result = ComponentSurgeryResult(out, source, names, describe(chosen), total, before)
    with atomic_dir(out) as tmp:
        atomic_write_json(tmp / ADAPTER_CONFIG, read_json(source / ADAPTER_CONFIG))
        atomic_save_safetensors(tmp / ADAPTER_WEIGHTS, tensors, metadata={"format": "pt"})
        if meta:
            atomic_write_json(tmp / ADAPTER_META, {**meta, "edited_from": str(source)})
        result.output_hashes = file_hashes(tmp)
        atomic_write_json(tmp / EDIT_MANIFEST, _manifest(result, cfg, texts))
    if file_hashes(source) != before:
        raise DataError(f"the source adapter {source} changed during surgery; something else is writing to it")
    log.info("component surgery: %d of %d singular components removed (%s)", len(chosen), total,
             result.summary["by_module"])  # fmt: skip
    return result


def _manifest(result: ComponentSurgeryResult, cfg: ComponentConfig, texts: ComponentTexts) -> dict[str, Any]:
    return {
        "format": "crosscoder.lora_surgery",
        "version": 1,
        "method": "components",
        "source": str(result.source),
        "source_hashes": result.source_hashes,
        "output_hashes": result.output_hashes,
        "config": asdict(cfg),
        "texts": {
            name: {"n": len(convs), "sha256": sha256_json(convs), "from": texts.labels.get(name, "")}
            for name, convs in (("removed", texts.removed), ("kept", texts.kept), ("plain", texts.plain))
        },  # fmt: skip
        "n_components": result.n_components,
        "removed_components": result.removed,
        "summary": result.summary,
        "basis": "each module's update s B A rewritten as B' = U S, A' = V^T (same rank, same scale); the removed "
        "components' columns of B' are zero",
    }
