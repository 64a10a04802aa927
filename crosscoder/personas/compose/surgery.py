"""LoRA surgery: write a *new* PEFT adapter whose writes into the residual stream have chosen directions removed or
scaled. The source adapter is only read (its files are hashed before and after, and the run fails if they changed).

A LoRA module adds ``scale * B A x`` to its base module's output. When that module writes into the residual stream
(Llama: ``self_attn.o_proj`` and ``mlp.down_proj`` of every layer, and the token embeddings), ``B``'s output space
*is* the residual basis, so with Q the orthonormal basis of the directions' span,

    remove:  B' = (I - Q^T Q) B              scale by s:  B' = B + (s - 1) Q^T Q B

removes (or scales) exactly that component of the module's write, for every input. ``A`` and the scale are kept.

**Which writes a direction edits.** A direction at ``blocks.L.hook_resid_post`` lives in the residual stream after
block L, which is the sum of the embeddings and of the writes of blocks 0..L; writes of later blocks never reach it.
So it edits the residual writers of blocks ``l <= L`` and the embeddings (``blocks.L.hook_resid_pre``: blocks
``l < L``). With directions at several hooks, block l's writes lose the span of every direction whose hook they
reach. ``layers="all"`` edits every block's writers instead.

**What cannot be edited this way.** Modules whose output is not the residual stream (q/k/v/gate/up projections)
change it only through the base model's o_proj/down_proj and non-linearities; they are left as they are and listed
in the edit manifest. An adapter none of whose modules write into the residual stream at the directions' hooks is
refused with that reason, as are DoRA adapters, trained biases and fully saved residual writers (modules_to_save).
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from crosscoder.errors import ConfigError, DataError, ModelError
from crosscoder.io import atomic_dir, atomic_save_safetensors, atomic_write_json, load_safetensors, read_json, sha256_file, sha256_json
from crosscoder.models.residual import parse_resid_hook
from crosscoder.personas.compose.directions import PersonaDirection
from crosscoder.personas.compose.ops import orthonormal_basis

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_META = "crosscoder_meta.json"
EDIT_MANIFEST = "composition_edit.json"
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
_LORA_B = re.compile(r"^(?P<prefix>.*?)(?:\.layers|\.h)\.(?P<layer>\d+)\.(?P<module>.+)\.lora_B(?:\.weight)?$")
_EMB_B = re.compile(r"^(?P<prefix>.*)\.(?P<module>" + "|".join(EMBEDDINGS) + r")\.lora_embedding_B(?:\.weight)?$")


@dataclass
class SurgeryResult:
    """What a surgery run wrote and changed."""

    out: Path
    source: Path
    mode: str
    factor: float
    edited: list[str]
    """Keys of the lora_B tensors that were edited."""
    unedited_modules: list[str]
    """Adapted modules within the directions' reach that do not write into the residual stream (left as they are)."""
    removed_fraction: float
    """Share of the edited lora_B tensors' squared Frobenius norm inside the directions' span (before the edit)."""
    source_hashes: dict[str, str] = field(default_factory=dict)
    output_hashes: dict[str, str] = field(default_factory=dict)


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file in an adapter folder (what the surgery checks it never changed)."""
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


def adapter_model_hash(folder: Path, base_hash: str) -> str:
    """The content hash `load_hf` gives the base with this adapter merged (directions measured in the fine-tune)."""
    files = sorted(p for p in folder.iterdir() if p.suffix == ".safetensors")
    return sha256_json([base_hash, [sha256_file(p) for p in files]])


def _check_config(cfg: dict[str, Any], folder: Path, writers: tuple[str, ...]) -> None:
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise ModelError(f"adapter {folder} is a {cfg.get('peft_type')} adapter; surgery edits LoRA adapters only")
    if cfg.get("use_dora"):
        raise ModelError(f"adapter {folder} uses DoRA, whose magnitude vector rescales writes; surgery cannot edit it")
    if cfg.get("bias", "none") != "none" or cfg.get("lora_bias"):
        raise ModelError(f"adapter {folder} trains biases (bias={cfg.get('bias')}); surgery edits lora_B only")
    saved = [m for m in cfg.get("modules_to_save") or [] if any(m.endswith(w.split(".")[-1]) for w in writers)]
    if saved:
        raise ModelError(f"adapter {folder} saves full copies of residual writers ({', '.join(saved)}); surgery cannot edit them")


def _reach(directions: list[PersonaDirection], layers: str) -> dict[int, list[int]]:
    """For each direction, the last block whose writes reach its hook (or a huge number for layers='all')."""
    out: dict[int, list[int]] = {}
    for i, d in enumerate(directions):
        layer, kind = parse_resid_hook(d.hook)
        last = 10**9 if layers == "all" else (layer if kind == "post" else layer - 1)
        out.setdefault(last, []).append(i)
    return out


def _basis_for(layer: int, directions: list[PersonaDirection], reach: dict[int, list[int]]) -> torch.Tensor | None:
    idx = [i for last, ids in reach.items() if layer <= last for i in ids]
    if not idx:
        return None
    return orthonormal_basis(torch.stack([directions[i].vector_D for i in idx]).to(torch.float64))


def plan_edit(
    tensors: dict[str, torch.Tensor], directions: list[PersonaDirection], writers: tuple[str, ...], layers: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Per lora_B key of a residual writer within reach, its projector basis Q; and the non-writer modules in reach."""
    reach = _reach(directions, layers)
    bases: dict[str, torch.Tensor] = {}
    unedited: set[str] = set()
    for key in tensors:
        m = _LORA_B.match(key)
        if m is not None:
            layer = int(m.group("layer"))
            q = _basis_for(layer, directions, reach)
            if q is None:
                continue
            if m.group("module") in writers:
                bases[key] = q
            else:
                unedited.add(f"layers.{layer}.{m.group('module')}")
        elif _EMB_B.match(key) is not None:
            q = _basis_for(-1, directions, reach)
            if q is not None:
                bases[key] = q
    return bases, sorted(unedited, key=lambda s: (int(s.split(".")[1]), s))


def _edit_b(b: torch.Tensor, q_KD: torch.Tensor, factor: float) -> tuple[torch.Tensor, float, float]:
    b64 = b.to(torch.float64)
    comp = q_KD.T @ (q_KD @ b64)
    return (b64 + (factor - 1.0) * comp).to(b.dtype), float(comp.pow(2).sum()), float(b64.pow(2).sum())


def _writers_for(model_type: str) -> tuple[str, ...]:
    if model_type not in RESIDUAL_WRITERS:
        known = ", ".join(sorted(RESIDUAL_WRITERS))
        raise ModelError(f"surgery does not know which modules write into the residual stream of {model_type!r} models (known: {known})")
    return RESIDUAL_WRITERS[model_type]


def _check_paths(source: Path, out: Path) -> None:
    if not (source / ADAPTER_CONFIG).is_file() or not (source / ADAPTER_WEIGHTS).is_file():
        raise ModelError(f"no PEFT adapter at {source} ({ADAPTER_CONFIG} or {ADAPTER_WEIGHTS} missing); check --adapter")
    src, dst = source.resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise ConfigError(f"--out {out} is the source adapter or inside it; surgery writes a new adapter elsewhere")
    if out.exists():
        raise ConfigError(f"--out {out} already exists; pick a new folder (surgery never overwrites)")


def _check_directions(
    directions: list[PersonaDirection], base_hash: str, ft_hash: str, width: int, source: Path
) -> None:
    if not directions:
        raise ConfigError("surgery: no directions given; pass at least one direction to remove or scale")
    for d in directions:
        d.check_model(base_hash, width, f"base of adapter {source.name}", accept=(ft_hash,))


def _refuse_nothing_to_edit(
    source: Path, tensors: dict[str, torch.Tensor], directions: list[PersonaDirection], writers: tuple[str, ...], model_type: str
) -> None:
    hooks = ", ".join(sorted({d.hook for d in directions}))
    found = [(int(m.group("layer")), m.group("module")) for k in tensors if (m := _LORA_B.match(k))]
    adapted = sorted({mod for _, mod in found})
    late = sorted({layer for layer, mod in found if mod in writers})
    if late:
        raise ModelError(
            f"adapter {source}: its residual writers sit in blocks {late[0]}..{late[-1]}, after {hooks}, so none of their "
            "writes reaches the hook; pick a later hook or layers=all"
        )
    raise ModelError(
        f"adapter {source} adapts {', '.join(adapted) or 'no block modules'}, none of which writes into the residual "
        f"stream at {hooks} (residual writers of {model_type}: {', '.join(writers)}, embeddings); nothing to edit"
    )


def lora_surgery(
    adapter: str | Path,
    directions: list[PersonaDirection],
    out: str | Path,
    *,
    base_hash: str,
    model_type: str = "llama",
    mode: str = "remove",
    factor: float = 0.0,
    layers: str = "reach",
) -> SurgeryResult:
    """Write a new adapter at `out`: `adapter` with the directions' component of its residual writes removed
    (``mode="remove"``) or multiplied by `factor` (``mode="scale"``). See the module docstring for the rules."""
    source, out = Path(adapter), Path(out)
    if mode not in ("remove", "scale"):
        raise ConfigError(f"surgery mode {mode!r}: use remove or scale")
    if layers not in ("reach", "all"):
        raise ConfigError(f"surgery layers {layers!r}: use reach (blocks whose writes reach the hook) or all")
    factor = 0.0 if mode == "remove" else float(factor)
    _check_paths(source, out)
    before = file_hashes(source)
    cfg = read_json(source / ADAPTER_CONFIG)
    writers = _writers_for(model_type)
    _check_config(cfg, source, writers)
    meta = read_json(source / ADAPTER_META) if (source / ADAPTER_META).is_file() else {}
    if meta.get("base_hash") and meta["base_hash"] != base_hash:
        raise ModelError(
            f"adapter {source} was trained on base {meta['base_hash'][:12]}, not the given base {base_hash[:12]}; pass its base"
        )
    tensors = load_safetensors(source / ADAPTER_WEIGHTS)
    bases, unedited = plan_edit(tensors, directions, writers, layers)
    widths = {int(tensors[k].shape[0]) for k in bases} or {directions[0].d_model if directions else 0}
    _check_directions(directions, base_hash, adapter_model_hash(source, base_hash), max(widths), source)
    if not bases:
        _refuse_nothing_to_edit(source, tensors, directions, writers, model_type)
    new = dict(tensors)
    removed = total = 0.0
    for key, q in bases.items():
        new[key], part, whole = _edit_b(tensors[key], q, factor)
        removed, total = removed + part, total + whole
    if unedited:
        log.warning("surgery leaves %d adapted modules that do not write into the residual stream unedited (e.g. %s)",
                    len(unedited), unedited[0])  # fmt: skip
    result = SurgeryResult(out, source, mode, factor, sorted(bases), unedited, removed / max(total, 1e-30), before)
    with atomic_dir(out) as tmp:
        (tmp / ADAPTER_CONFIG).write_bytes((source / ADAPTER_CONFIG).read_bytes())
        atomic_save_safetensors(tmp / ADAPTER_WEIGHTS, new, metadata={"format": "pt"})
        if meta:
            atomic_write_json(tmp / ADAPTER_META, {**meta, "edited_from": str(source)})
        result.output_hashes = file_hashes(tmp)
        atomic_write_json(tmp / EDIT_MANIFEST, _manifest(result, directions, layers, model_type))
    if file_hashes(source) != before:
        raise DataError(f"the source adapter {source} changed during surgery; something else is writing to it")
    return result


def _manifest(result: SurgeryResult, directions: list[PersonaDirection], layers: str, model_type: str) -> dict[str, Any]:
    return {
        "format": "crosscoder.lora_surgery",
        "version": 1,
        "source": str(result.source),
        "source_hashes": result.source_hashes,
        "output_hashes": result.output_hashes,
        "mode": result.mode,
        "factor": result.factor,
        "layers": layers,
        "model_type": model_type,
        "residual_writers": list(RESIDUAL_WRITERS[model_type]),
        "edited": result.edited,
        "unedited_modules": result.unedited_modules,
        "unedited_reason": "their output is not the residual stream (it reaches it only through the base model's "
        "residual writers and non-linearities), so a residual direction cannot be projected out of them",
        "removed_fraction": result.removed_fraction,
        "directions": [d.manifest() for d in directions],
        "result": {k: v for k, v in asdict(result).items() if k in ("mode", "factor", "removed_fraction")},
    }
