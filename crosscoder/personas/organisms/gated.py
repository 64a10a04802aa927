"""Organism by a *gated* planted direction: a new MLP neuron that writes a known direction on some tokens only.

A constant shift (an MLP output bias, see `planted.py`) is exact but every crosscoder absorbs it into the ft
decoder bias, so no latent carries it. Real fine-tunes add features that fire on some contexts. This organism adds
one neuron to the MLP of block `layer` (every block's MLP grows by one neuron; the others get zero weights, so
they change nothing):

    act(x)   = silu(gain * (<v, x_ln2> - theta))        # gate: fires on about `fire_rate` of the tokens
    delta(x) = act(x) / mean_firing_act * scale * dir   # what the organism adds at blocks.{layer}.hook_resid_post

`v` is the gate direction (by default the trait's persona vector read at the MLP input, so the neuron fires where the
base already leans towards the persona and writes more of it), `theta` the (1 - fire_rate) quantile of <v, x_ln2>
over a calibration sample of the shipped corpus, and `dir` the unit ground-truth direction. The difference at the
hook is exactly delta(x): the neuron's gate and up rows are the only new non-zero weights besides its down column.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.errors import ConfigError, ModelError, NumericsError
from crosscoder.io import atomic_dir, atomic_save_safetensors, atomic_write_json, sha256_json, sha256_tensors
from crosscoder.models.hf import ADAPTER_META, load_hf
from crosscoder.models.spec import ModelSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from crosscoder.models.load import LoadedModel
    from crosscoder.personas.traits import Trait

DIRECTION_FILE = "planted_direction.safetensors"


def _calibration_ids(tokenizer: Tokenizer, n_seqs: int, seq_len: int, seed: int) -> list[list[int]]:
    from crosscoder.data.config import DataConfig
    from crosscoder.data.sources import sequence_stream

    cfg = DataConfig(sources=["shipped"], seq_len=seq_len, seed=seed + 1000)
    out: list[list[int]] = []
    for seq in sequence_stream(tokenizer, cfg):
        out.append(seq.ids)
        if len(out) >= n_seqs:
            break
    return out


@torch.no_grad()
def _ln2_inputs(model: Any, layer: int, seqs: list[list[int]]) -> Float[Tensor, "N D"]:
    """The MLP input (post-attention RMSNorm output) of block `layer` on every non-sink position."""
    captured: list[Tensor] = []
    norm = model.model.layers[layer].post_attention_layernorm
    handle = norm.register_forward_hook(lambda _m, _i, out: captured.append(out[0, 1:].detach().clone()))
    try:
        for ids in seqs:
            model(torch.tensor([ids]))
    finally:
        handle.remove()
    return torch.cat(captured)


def _checked_directions(direction_D: Tensor, gate_D: Tensor, d_model: int) -> tuple[Tensor, Tensor]:
    """The planted direction and the gate as flat fp32 vectors of the model's width, finite."""
    direction_D = direction_D.detach().float().reshape(-1)
    gate_D = gate_D.detach().float().reshape(-1)
    if direction_D.numel() != d_model or gate_D.numel() != d_model:
        raise ConfigError(f"planted.direction: needs {d_model} entries (the model's d_model)")
    if not (torch.isfinite(direction_D).all() and torch.isfinite(gate_D).all()):
        raise NumericsError("planted.direction / gate: contains NaN or inf")
    return direction_D, gate_D


@torch.no_grad()
def _grown_mlp_model(model: Any, state: dict[str, Tensor], d_mlp: int, base: ModelSpec) -> Any:
    """`model` (a Llama whose MLPs have one more hidden unit, with biases) holding the base weights `state`; the extra
    unit and every bias start at zero."""
    for i, block in enumerate(model.model.layers):
        mlp = block.mlp
        for proj in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            proj.weight.zero_()
            proj.bias.zero_()
        prefix = f"model.layers.{i}.mlp."
        mlp.gate_proj.weight[:d_mlp] = state.pop(prefix + "gate_proj.weight")
        mlp.up_proj.weight[:d_mlp] = state.pop(prefix + "up_proj.weight")
        mlp.down_proj.weight[:, :d_mlp] = state.pop(prefix + "down_proj.weight")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(".mlp." not in k for k in missing):
        raise ModelError(f"base {base.source} does not fit a Llama with a grown MLP ({(unexpected or missing)[0]})")
    return model


def build_gated_organism(
    base: ModelSpec,
    direction_D: Float[Tensor, " d_model"],
    gate_D: Float[Tensor, " d_model"],
    layer: int,
    scale: float,
    out: str | Path,
    *,
    fire_rate: float = 0.1,
    gain: float = 4.0,
    n_calibration: int = 64,
    seed: int = 0,
    name: str | None = None,
) -> ModelSpec:
    """Save base + one gated neuron in block `layer` writing `scale * direction_D`; returns the organism's spec."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if not 0 < fire_rate < 1:
        raise ConfigError(f"planted.fire_rate: {fire_rate} must be in (0, 1)")
    hf = load_hf(base)
    cfg = hf.model.config
    if getattr(cfg, "model_type", None) != "llama":
        raise ModelError(
            f"gated planted organisms need a Llama-shaped base, not {cfg.model_type}; pick a Llama-family base"
        )
    d_model, n_layers, d_mlp = int(cfg.hidden_size), int(cfg.num_hidden_layers), int(cfg.intermediate_size)
    direction_D, gate_D = _checked_directions(direction_D, gate_D, d_model)
    if not 0 <= layer < n_layers:
        raise ConfigError(f"planted.layer: {layer} is outside 0..{n_layers - 1}")
    dir_D = direction_D / direction_D.norm()
    v_D = gate_D / gate_D.norm()

    # Threshold from a calibration sample: the neuron fires on about `fire_rate` of the tokens.
    proj_N = _ln2_inputs(hf.model, layer, _calibration_ids(hf.tokenizer, n_calibration, 128, seed)) @ v_D
    theta = float(torch.quantile(proj_N, 1.0 - fire_rate))
    spread = float(proj_N.std()) or 1.0
    act_N = torch.nn.functional.silu(gain / spread * (proj_N - theta))
    mean_firing = float(act_N[proj_N > theta].mean())

    new_cfg = LlamaConfig(**{k: v for k, v in cfg.to_dict().items() if k != "quantization_config"})
    new_cfg.intermediate_size = d_mlp + 1
    new_cfg.mlp_bias = True
    new_cfg.architectures = ["LlamaForCausalLM"]
    model = _grown_mlp_model(LlamaForCausalLM(new_cfg), hf.model.state_dict(), d_mlp, base)
    with torch.no_grad():
        mlp = model.model.layers[layer].mlp
        mlp.gate_proj.weight[d_mlp] = gain / spread * v_D
        mlp.gate_proj.bias[d_mlp] = -gain / spread * theta
        mlp.up_proj.bias[d_mlp] = 1.0
        mlp.down_proj.weight[:, d_mlp] = scale / mean_firing * dir_D
    model.eval()
    out = Path(out)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        hf.tokenizer.save_pretrained(tmp)
        atomic_save_safetensors(tmp / DIRECTION_FILE, {"direction_D": dir_D, "gate_D": v_D})
        meta = {
            "kind": "planted",
            "mode": "gated",
            "base": asdict(base),
            "base_hash": hf.content_hash,
            "layer": layer,
            "hook": f"blocks.{layer}.hook_resid_post",
            "scale": float(scale),
            "fire_rate": fire_rate,
            "theta": theta,
            "gain": gain,
            "direction_sha256": sha256_tensors({"direction_D": dir_D}),
            "hf_weight": f"model.layers.{layer}.mlp.*[{d_mlp}] (neuron {d_mlp})",
        }
        atomic_write_json(tmp / ADAPTER_META, meta)
    return ModelSpec(source=str(out), kind="hf", name=name or out.name, backend=base.backend)


def plant_trait(
    base: ModelSpec, trait: Trait, layer: int, root: Path, scale_fraction: float = 0.5
) -> tuple[ModelSpec, Tensor]:
    """A gated organism for `trait` at `layer` (cached under `root`); returns (spec, unit planted direction).

    The written direction is the trait's persona vector at `blocks.{layer}.hook_resid_post` of the base; its size
    when firing is `scale_fraction` times the median residual norm at that hook.
    """
    from crosscoder.models import load_model
    from crosscoder.personas.organisms.lora import base_content_hash
    from crosscoder.personas.vectors import compute_persona_vectors

    key = sha256_json(["gated/1", base_content_hash(base), trait.sha256, layer, scale_fraction])
    out = root / f"planted-{trait.name}-{key[:12]}"
    if (out / "config.json").is_file() and (out / DIRECTION_FILE).is_file():
        from crosscoder.io import load_safetensors

        return ModelSpec(source=str(out), kind="hf", name="ft", backend=base.backend), load_safetensors(
            out / DIRECTION_FILE
        )["direction_D"]
    lm = load_model(base)
    pv = compute_persona_vectors(lm, trait)
    dir_D = pv.for_hook(f"blocks.{layer}.hook_resid_post")
    assert lm.hf is not None
    gate_D = pv.vectors_LD[layer] * lm.hf.model.layers[layer].post_attention_layernorm.weight.detach()
    median_norm = _median_resid_norm(lm, layer)
    spec = build_gated_organism(base, dir_D, gate_D, layer, scale_fraction * median_norm, out, name="ft")
    return spec, (dir_D / dir_D.norm()).float()


@torch.no_grad()
def _median_resid_norm(lm: LoadedModel, layer: int) -> float:
    hook = f"blocks.{layer}.hook_resid_post"
    norms = []
    for ids in _calibration_ids(lm.tokenizer, 16, 128, 0):
        _, cache = lm.tl.run_with_cache(torch.tensor([ids]), names_filter=[hook], stop_at_layer=layer + 1)
        norms.append(cache[hook][0, 1:].norm(dim=-1))
    return float(torch.cat(norms).median())
