"""The linear algebra of LoRA surgery: which lora_B tensors a set of directions edits, and how.

Two scopes (see :mod:`crosscoder.personas.compose.surgery` for when each applies):

- ``adapter``: only the adapter's own writes. A residual writer's update ``s B A`` gets ``B' = P B`` with
  ``P = I + (f - 1) Q^T Q`` (f = 0 removes), Q the orthonormal basis of the directions' span.
- ``model``: the writer's whole output, base weight included: ``W + s B' A' = P (W + s B A)``, which LoRA can hold
  exactly with ``K`` more ranks: ``B' = [P B, (f - 1) Q^T]`` and ``A' = [A; Q W / s]``. Every input to the writer
  (including what the adapter's q/k/v/gate/up changes made of it) then writes nothing (or f times as much) along
  the directions.
"""

from __future__ import annotations

import re

import torch

from crosscoder.errors import ModelError
from crosscoder.models.residual import parse_resid_hook
from crosscoder.personas.compose.directions import PersonaDirection
from crosscoder.personas.compose.ops import orthonormal_basis

RESIDUAL_WRITERS: dict[str, tuple[str, ...]] = {
    "llama": ("self_attn.o_proj", "mlp.down_proj"),
    "mistral": ("self_attn.o_proj", "mlp.down_proj"),
    "qwen2": ("self_attn.o_proj", "mlp.down_proj"),
    "qwen3": ("self_attn.o_proj", "mlp.down_proj"),
    "gemma": ("self_attn.o_proj", "mlp.down_proj"),
    "olmo": ("self_attn.o_proj", "mlp.down_proj"),
    "gpt2": ("attn.c_proj", "mlp.c_proj"),
    "gpt_neox": ("attention.dense", "mlp.dense_4h_to_h"),
}
"""Per architecture (config ``model_type``), the module names inside a block whose output is the residual stream."""
EMBEDDINGS = ("embed_tokens", "wte", "embed_in")
LORA_B = re.compile(r"^(?P<prefix>.*?)(?:\.layers|\.h)\.(?P<layer>\d+)\.(?P<module>.+)\.lora_B(?:\.weight)?$")
EMB_B = re.compile(r"^(?P<prefix>.*)\.(?P<module>" + "|".join(EMBEDDINGS) + r")\.lora_embedding_B(?:\.weight)?$")


def writers_for(model_type: str) -> tuple[str, ...]:
    if model_type not in RESIDUAL_WRITERS:
        known = ", ".join(sorted(RESIDUAL_WRITERS))
        raise ModelError(
            f"surgery does not know which modules write into the residual stream of {model_type!r} models (known: {known})"
        )
    return RESIDUAL_WRITERS[model_type]


LAYER_POLICIES = ("reach", "own", "all")
"""Which blocks' writers a direction at a hook edits: every block whose writes reach the hook (reach), only the block
whose output the hook is (own; embeddings for a layer-0 resid_pre), or every block (all)."""


def reach_of(directions: list[PersonaDirection], layers: str) -> dict[int, tuple[int, int]]:
    """For each direction, the first and last block (inclusive; -1 = the embeddings) whose writers it edits."""
    out: dict[int, tuple[int, int]] = {}
    for i, d in enumerate(directions):
        layer, kind = parse_resid_hook(d.hook)
        last = layer if kind == "post" else layer - 1
        out[i] = {"reach": (-1, last), "own": (last, last), "all": (-1, 10**9)}[layers]
    return out


def basis_for(layer: int, directions: list[PersonaDirection], reach: dict[int, tuple[int, int]]) -> torch.Tensor | None:
    """The orthonormal basis of the directions that edit block `layer` (-1: the embeddings), None when none does."""
    idx = [i for i, (first, last) in reach.items() if first <= layer <= last]
    if not idx:
        return None
    return orthonormal_basis(torch.stack([directions[i].vector_D for i in idx]).to(torch.float64))


def plan_edit(
    tensors: dict[str, torch.Tensor], directions: list[PersonaDirection], writers: tuple[str, ...], layers: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Per lora_B key of a residual writer within reach, its projector basis Q; and the non-writer modules in reach."""
    reach = reach_of(directions, layers)
    bases: dict[str, torch.Tensor] = {}
    unedited: set[str] = set()
    for key in tensors:
        m = LORA_B.match(key)
        if m is not None:
            layer = int(m.group("layer"))
            q = basis_for(layer, directions, reach)
            if q is None:
                continue
            if m.group("module") in writers:
                bases[key] = q
            else:
                unedited.add(f"layers.{layer}.{m.group('module')}")
        elif EMB_B.match(key) is not None:
            q = basis_for(-1, directions, reach)
            if q is not None:
                bases[key] = q
    return bases, sorted(unedited, key=lambda s: (int(s.split(".")[1]), s))


def edit_b(b: torch.Tensor, q_KD: torch.Tensor, factor: float) -> tuple[torch.Tensor, float, float]:
    b64 = b.to(torch.float64)
    comp = q_KD.T @ (q_KD @ b64)
    return (b64 + (factor - 1.0) * comp).to(b.dtype), float(comp.pow(2).sum()), float(b64.pow(2).sum())


def module_name(lora_b_key: str) -> str:
    """The base model's module name of a lora_B key (``base_model.model.`` and the LoRA suffix dropped)."""
    name = re.sub(r"\.lora_B(?:\.weight)?$", "", lora_b_key)
    return name.removeprefix("base_model.model.")


def lora_scaling(cfg: dict[str, object], rank: int) -> float:
    """The LoRA update's scale s for a module of `rank` (alpha / r, or alpha / sqrt(r) with rsLoRA)."""
    alpha = float(cfg.get("lora_alpha", rank))  # type: ignore[arg-type]
    return alpha / (rank**0.5 if cfg.get("use_rslora") else rank)


def alpha_for(cfg: dict[str, object], rank: int, scale: float) -> float:
    """The lora_alpha that gives `scale` at `rank`."""
    return scale * (rank**0.5 if cfg.get("use_rslora") else rank)


def extend_b_a(
    b_DR: torch.Tensor, a_RI: torch.Tensor, w_DI: torch.Tensor, q_KD: torch.Tensor, factor: float, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model scope: (B', A') with ``W + s B' A' = P (W + s B A)``, ``P = I + (f - 1) Q^T Q`` (K more ranks)."""
    b, a, w, q = (t.to(torch.float64) for t in (b_DR, a_RI, w_DI, q_KD))
    p_b = b + (factor - 1.0) * q.T @ (q @ b)
    b_new = torch.cat([p_b, (factor - 1.0) * q.T], dim=1)
    a_new = torch.cat([a, q @ w / scale], dim=0)
    return b_new.to(b_DR.dtype), a_new.to(a_RI.dtype)
