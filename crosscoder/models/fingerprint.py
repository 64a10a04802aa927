"""What identifies a model for the activation cache, read without loading its weights.

A cache's identity is the models' names, content hashes and backends, and the tokenizer (crosscoder.data.cache).
`fingerprint` computes them from the files alone (the weight files' hashes, which are cached beside them, the config
and the tokenizer), so a job whose activation cache exists opens it without loading any language model; the
values equal those of a loaded model (`LoadedModel`) by construction, since both use the same hash functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from crosscoder.models.hf import adapter_hash, resolve_folder, source_hash
from crosscoder.models.spec import ModelSpec


class ModelIdentity(Protocol):
    """The attributes of a model the activation cache records (a LoadedModel or a ModelFingerprint)."""

    spec: ModelSpec
    name: str
    content_hash: str
    tokenizer: Any
    d_model: int
    n_layers: int
    dtype: str


@dataclass
class ModelFingerprint:
    """A model's cache identity, read from its files."""

    spec: ModelSpec
    """The concrete spec (an organism resolved to its base + adapter or folder)."""
    name: str
    content_hash: str
    tokenizer: Any
    d_model: int
    n_layers: int
    dtype: str = "float32"
    """The dtype the models would be loaded in (crosscoder.models.placement)."""


def fingerprint(spec: ModelSpec, dtype: str = "float32") -> ModelFingerprint | None:
    """The cache identity of `spec` without loading weights; None where only loading can tell (TransformerLens
    official names, hub ids not in the local Hugging Face cache)."""
    from transformers import AutoConfig, AutoTokenizer

    if spec.resolved_kind() == "organism":
        raise ValueError(f"fingerprint: resolve the organism reference {spec.source!r} first (crosscoder.pipeline)")
    if spec.resolved_kind() == "tl":
        return None
    where, local = resolve_folder(spec)
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code, "local_files_only": True}
    if not local and spec.revision:
        kwargs["revision"] = spec.revision
    try:
        cfg = AutoConfig.from_pretrained(where, **kwargs)
        tok = AutoTokenizer.from_pretrained(where, **kwargs)
    except (OSError, ValueError):
        return None
    text = getattr(cfg, "text_config", None) or cfg
    content_hash = source_hash(spec, where, local)
    if spec.adapter:
        content_hash = adapter_hash(content_hash, spec.adapter)
    return ModelFingerprint(
        spec, spec.label, content_hash, tok, int(text.hidden_size), int(text.num_hidden_layers), dtype
    )


def fingerprints(specs: list[ModelSpec], dtype: str = "float32") -> list[ModelFingerprint] | None:
    """Fingerprints of every spec, or None when any one of them needs loading."""
    out = []
    for spec in specs:
        fp = fingerprint(spec, dtype)
        if fp is None:
            return None
        out.append(fp)
    return out
