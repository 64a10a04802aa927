"""A model's size without its weights: parameter counts by part, from its config (for plans and memory checks).

The config comes from a local folder, the local Hugging Face cache, or, for a few public models a cluster user
diffs, from the published shapes below (so a plan for google/gemma-2-2b works on a machine that never downloaded
it). The parameters are counted by building the model on PyTorch's meta device: exact, and no memory is allocated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from crosscoder.errors import ModelError
from crosscoder.models.hf import resolve_folder
from crosscoder.models.spec import ModelSpec

# Published shapes (the models' config.json on the Hugging Face hub); instruct / -it variants share them.
KNOWN_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "google/gemma-2-2b": (
        "gemma2",
        {"hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8,
         "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 256000},
    ),
    "google/gemma-2-9b": (
        "gemma2",
        {"hidden_size": 3584, "intermediate_size": 14336, "num_hidden_layers": 42, "num_attention_heads": 16,
         "num_key_value_heads": 8, "head_dim": 256, "vocab_size": 256000},
    ),
    "meta-llama/Llama-3.2-1B": (
        "llama",
        {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
         "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True},
    ),
    "meta-llama/Llama-3.1-8B": (
        "llama",
        {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
         "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False},
    ),
}  # fmt: skip
_VARIANT_RE = re.compile(r"(-it|-Instruct)$")


@dataclass(frozen=True)
class ModelShape:
    """Parameter counts and widths of one causal LM."""

    source: str
    n_params: int
    """All parameters (tied embeddings counted once)."""
    n_embed: int
    """Input embedding parameters (a lookup: no FLOPs)."""
    n_unembed: int
    """Output projection parameters when not tied to the embedding (0 when tied)."""
    n_block: int
    """Parameters of one transformer block."""
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    head_dim: int
    vocab: int

    def weight_bytes(self, dtype: torch.dtype) -> int:
        return self.n_params * dtype.itemsize

    def forward_flops_per_token(self, n_blocks: int, seq_len: int, unembed: bool) -> float:
        """Forward FLOPs per token through `n_blocks` blocks: 2 per weight (the usual 2 * params * tokens), plus the
        attention scores and mixing (4 * seq_len * heads * head_dim per block; eager attention computes the full
        square), plus the unembedding when the forward runs to the logits."""
        weights = n_blocks * self.n_block + (self.n_unembed or self.n_embed if unembed else 0)
        return 2.0 * weights + 4.0 * seq_len * self.n_heads * self.head_dim * n_blocks


def known_config(source: str) -> Any | None:
    """The published config of a known public model id (instruct variants included), or None."""
    from transformers import AutoConfig

    key = _VARIANT_RE.sub("", source)
    if key not in KNOWN_CONFIGS:
        return None
    model_type, values = KNOWN_CONFIGS[key]
    return AutoConfig.for_model(model_type, **values)


def hf_config(spec: ModelSpec) -> Any | None:
    """The transformers config of `spec` from local files or the published table; None when neither has it."""
    from transformers import AutoConfig

    kind = spec.resolved_kind()
    if kind in ("hf", "embedded", "gguf"):
        try:
            where, _ = resolve_folder(spec)
            return AutoConfig.from_pretrained(where, local_files_only=True, trust_remote_code=spec.trust_remote_code)
        except (OSError, ValueError, ModelError):
            pass
    return known_config(spec.source)


def shape_of_config(source: str, cfg: Any) -> ModelShape:
    """Count `cfg`'s parameters by building the model on the meta device (no memory allocated)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    emb = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    tied = out is None or out.weight is emb
    n_params = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
    layers = model.model.layers if hasattr(model, "model") and hasattr(model.model, "layers") else None
    if layers is None:
        raise ModelError(f"cannot find the transformer blocks of {source} ({type(model).__name__}) to size it")
    text = getattr(cfg, "text_config", None) or cfg
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return ModelShape(
        source=source,
        n_params=n_params,
        n_embed=emb.numel(),
        n_unembed=0 if tied else out.weight.numel(),
        n_block=sum(p.numel() for p in layers[0].parameters()),
        n_layers=int(text.num_hidden_layers),
        d_model=int(text.hidden_size),
        d_mlp=int(getattr(text, "intermediate_size", 4 * text.hidden_size)),
        n_heads=int(text.num_attention_heads),
        head_dim=int(head_dim),
        vocab=int(text.vocab_size),
    )


def model_shape(spec: ModelSpec) -> ModelShape | None:
    """The shape of `spec` (an adapter does not change it), or None when no config is at hand."""
    cfg = hf_config(spec)
    return None if cfg is None else shape_of_config(spec.source, cfg)
