"""Load a `ModelSpec` as a TransformerLens model.

Two backends, both exposing TransformerLens hook names (``blocks.{l}.hook_resid_post`` etc.):

- ``bridge`` (default): TL's `TransformerBridge` wrapping the HF model itself. Works for any architecture
  transformers loads, and its residual stream equals HF ``hidden_states`` exactly (eager attention).
- ``hooked``: a `HookedTransformer` built from the HF weights without LN folding or centring, so the residual basis
  is the HF one (about 25% faster on this CPU, max abs difference ~1e-2 on SmolLM2's 25,000-norm sink position).
  Llama-shaped models only; MLP output biases (planted organisms) are carried over.

Official TransformerLens names (kind ``tl``) go through ``HookedTransformer.from_pretrained_no_processing`` (hub).

Placement (device, dtype, a multi-GPU device map) comes from `crosscoder.models.placement`: fp32 on the CPU by
default; the HF weights are loaded straight onto the GPU(s) and the bridge uses them where they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from crosscoder.errors import ModelError
from crosscoder.io import sha256_json
from crosscoder.models.hf import HFModel, load_hf
from crosscoder.models.placement import Placement
from crosscoder.models.spec import ModelSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel as HFModule
    from transformers import PreTrainedTokenizerBase as Tokenizer

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready for hooking: the TL model, its tokenizer and a content hash."""

    spec: ModelSpec
    name: str
    tl: Any
    """A transformer_lens HookedTransformer or TransformerBridge (hook names blocks.{l}.hook_resid_post...)."""
    tokenizer: Tokenizer
    content_hash: str
    d_model: int
    n_layers: int
    hf: HFModule | None = None
    dtype: str = "float32"
    """The weights' dtype (float32 | bfloat16 | float16); part of the activation cache's identity when not float32."""

    def hook_names(self) -> list[str]:
        """Every hook point name the TL model exposes."""
        return sorted(self.tl.hook_dict.keys())

    def check_hooks(self, hooks: list[str]) -> None:
        """Refuse hook names the model does not have, listing the residual-stream ones."""
        have = set(self.tl.hook_dict.keys())
        missing = [h for h in hooks if h not in have]
        if missing:
            resid = [f"blocks.{{0..{self.n_layers - 1}}}.hook_resid_pre|mid|post"]
            raise ModelError(
                f"hook {missing[0]!r} is not in model {self.name}; valid residual hooks: {resid[0]} (all: LoadedModel.hook_names())"
            )


def _strip_quantization(hf_model: HFModule) -> None:
    cfg = hf_model.config
    if getattr(cfg, "quantization_config", None) is not None:
        cfg.quantization_config = None
    cfg.__dict__.pop("quantization_config", None)


def _to_bridge(hf: HFModel, name: str, placement: Placement) -> Any:
    from transformer_lens.model_bridge import TransformerBridge

    _strip_quantization(hf.model)
    try:  # the HF model is already placed (load_hf); the bridge wraps it where it is
        bridge = TransformerBridge.boot_transformers(
            name, hf_model=hf.model, tokenizer=hf.tokenizer, dtype=placement.dtype
        )
    except (ValueError, NotImplementedError, KeyError) as err:
        arch = getattr(hf.model.config, "architectures", None) or type(hf.model).__name__
        raise ModelError(
            f"TransformerLens has no bridge for architecture {arch} ({str(err).splitlines()[0][:120]}); "
            "use a supported architecture or model.backend=hooked for Llama-shaped models"
        ) from err
    bridge.eval()
    return bridge


def _rope_theta(cfg: Any) -> float:
    params = getattr(cfg, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))


def _to_hooked(hf: HFModel, placement: Placement) -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights

    c = hf.model.config
    if getattr(c, "model_type", None) != "llama":
        raise ModelError(
            f"backend=hooked supports Llama-shaped models only, not {c.model_type}; use model.backend=bridge"
        )
    if placement.device_map:
        raise ModelError("backend=hooked runs on one device; use model.backend=bridge with models.device_map")
    device = placement.device
    d_head = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    cfg = HookedTransformerConfig(
        d_model=c.hidden_size,
        d_head=d_head,
        n_heads=c.num_attention_heads,
        d_mlp=c.intermediate_size,
        n_layers=c.num_hidden_layers,
        n_ctx=min(int(getattr(c, "max_position_embeddings", 2048)), 8192),
        eps=c.rms_norm_eps,
        d_vocab=c.vocab_size,
        act_fn="silu",
        n_key_value_heads=c.num_key_value_heads,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_adjacent_pairs=False,
        rotary_dim=d_head,
        final_rms=True,
        gated_mlp=True,
        rotary_base=_rope_theta(c),
        original_architecture="LlamaForCausalLM",
        tokenizer_prepends_bos=False,
        default_prepend_bos=False,
        dtype=placement.dtype,
        device=device,
    )
    state = convert_llama_weights(hf.model, cfg)
    for layer, block in enumerate(hf.model.model.layers):
        bias = getattr(block.mlp.down_proj, "bias", None)
        if bias is not None:
            state[f"blocks.{layer}.mlp.b_out"] = bias.detach().clone()
    model = HookedTransformer(cfg, tokenizer=hf.tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    model.eval()
    return model.to(device)


def load_model(
    spec: ModelSpec, device: str = "cpu", backend: str | None = None, placement: Placement | None = None
) -> LoadedModel:
    """Load `spec` as a TransformerLens model: fp32 on `device`, or as `placement` says (dtype, GPU device map)."""
    backend = backend or spec.backend
    placement = placement or Placement(device=device, dtype=torch.float32)
    kind = spec.resolved_kind()
    if kind == "organism":
        raise ModelError(
            f"model source {spec.source!r} names an organism; resolve it first with "
            "crosscoder.pipeline.resolve_model_spec (train.py, analyze.py and the command lines do)"
        )
    if kind == "tl":
        from transformer_lens import HookedTransformer

        try:
            tl = HookedTransformer.from_pretrained_no_processing(
                spec.source, device=placement.device, dtype=placement.dtype
            )
        except OSError as err:
            raise ModelError(
                f"cannot download TransformerLens model {spec.source!r} (no network?); use a local folder or .gguf"
            ) from err
        return LoadedModel(
            spec,
            spec.label,
            tl,
            tl.tokenizer,
            sha256_json(["tl", spec.source]),
            tl.cfg.d_model,
            tl.cfg.n_layers,
            dtype=placement.dtype_name,
        )
    if backend == "hooked":
        hf = load_hf(spec)  # HookedTransformer converts from CPU fp32 weights, then moves to the device
        tl = _to_hooked(hf, placement)
    else:
        hf = load_hf(spec, **placement.hf_kwargs())
        tl = _to_bridge(hf, spec.label, placement)
    log.info("loaded %s (%s)", spec.label, placement.describe())
    return LoadedModel(
        spec=spec,
        name=spec.label,
        tl=tl,
        tokenizer=hf.tokenizer,
        content_hash=hf.content_hash,
        d_model=int(tl.cfg.d_model),
        n_layers=int(tl.cfg.n_layers),
        hf=hf.model,
        dtype=placement.dtype_name,
    )
