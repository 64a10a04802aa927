"""The `cfg.json` metadata of an exported SAE: what SAELens's `from_pretrained` flows read to load the model, hook
and data the SAE belongs to, plus the crosscoder provenance.

* `model_name`: the model's real Hugging Face id (`HuggingFaceTB/SmolLM2-135M-Instruct` for the embedded model, the
  hub id as given for hub models, the absolute folder for a local HF folder); for a PEFT adapter, its base model's id,
  with the adapter folder in `crosscoder_adapter` (merge it before running the SAE);
* `hook_name`: the TransformerLens hook (`blocks.27.hook_resid_post`);
* `context_size`: the harvest's `seq_len`; `dataset_path`: the first Hugging Face dataset among the harvest's
  sources (`hf:<dataset>`), None for the shipped corpus or JSONL files (listed in `crosscoder_data_sources`);
* `prepend_bos`: true, as the harvest tokenises text with the tokenizer's special tokens (BOS where it adds one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crosscoder.models.embedded import EMBEDDED_HF_IDS

JSON = dict[str, Any]


def hf_model_id(spec: JSON | None, fallback: str) -> str:
    """The id `from_pretrained` loads a run.json model spec by (see the module docstring); `fallback` without one."""
    if not spec or not spec.get("source"):
        return fallback
    source = str(spec["source"])
    if source in EMBEDDED_HF_IDS:
        return EMBEDDED_HF_IDS[source]
    folder = Path(source).expanduser()
    return str(folder.resolve()) if folder.exists() else source


def dataset_path(data_config: JSON | None) -> str | None:
    """The first `hf:<dataset>[:<split>]` source's dataset, or None."""
    for src in (data_config or {}).get("sources") or []:
        if isinstance(src, str) and src.startswith("hf:"):
            return src[3:].split(":", 1)[0]
    return None


def run_metadata(run_info: JSON, data_config: JSON | None, m: int, name: str) -> JSON:
    """The SAELens metadata fields of model `m` from a run's run.json and its cache's data config."""
    specs = run_info.get("models") or []
    spec = specs[m] if m < len(specs) and isinstance(specs[m], dict) else None
    data = data_config or {}
    return {
        "model_name": hf_model_id(spec, name),
        "model_from_pretrained_kwargs": {},
        "context_size": int(data["seq_len"]) if data.get("seq_len") else None,
        "dataset_path": dataset_path(data),
        "prepend_bos": True,
        "crosscoder_model_label": name,
        "crosscoder_model_source": spec.get("source") if spec else None,
        "crosscoder_adapter": spec.get("adapter") if spec else None,
        "crosscoder_data_sources": list(data.get("sources") or []),
    }
