"""LoRA surgery: write a *new* PEFT adapter whose writes into the residual stream have chosen directions removed or
scaled. The source adapter is only read (its files are hashed before and after, and the run fails if they changed).

The residual writers of a block (Llama: ``self_attn.o_proj`` and ``mlp.down_proj``) output into the residual basis,
so with Q the orthonormal basis of the directions' span and ``P = I + (f - 1) Q^T Q`` (f = 0 removes, f = 2
doubles), two scopes are exact (:mod:`crosscoder.personas.compose.lora_edit`):

- ``adapter`` (default): only the adapter's own update of the writers, ``B' = P B``. The adapter's other modules are
  left as they are and listed in the manifest.
- ``model``: the writer's *whole* output becomes ``P (W + s B A)``, base weight included, held by the new
  adapter with K more ranks on that module. Every write along the directions is gone, including what the adapter's
  q/k/v/gate/up updates cause the base writers to write (on SFT persona organisms most of the persona goes that way:
  zeroing every o_proj/down_proj update of the pirate organism left its keyword rate at 0.8 of 1.0), and what the base
  model itself wrote along them.

**Which writes a direction edits.** A direction at ``blocks.L.hook_resid_post`` lives in the residual stream after
block L, which is the sum of the embeddings and of the writes of blocks 0..L; writes of later blocks never reach it.
So it edits the residual writers of blocks ``l <= L`` (``blocks.L.hook_resid_pre``: ``l < L``). With directions at
several hooks, block l's writers lose the span of every direction whose hook they reach. ``layers="own"`` edits only
the block whose output the hook is (one direction per block for a set made at every block), ``layers="all"`` every
block. LoRA on the token embeddings is projected in adapter scope and left alone in model scope.

**Refused**, with the reason: an adapter none of whose modules write into the residual stream at the directions'
hooks (only q/k/v/gate/up, or writers only after the hook); directions of another model or width; DoRA, trained
biases, fully saved writers (modules_to_save); in model scope, writers with a base bias or adapters with per-module
ranks already.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from crosscoder.errors import ConfigError, DataError, ModelError
from crosscoder.io import (
    atomic_dir,
    atomic_save_safetensors,
    atomic_write_json,
    load_safetensors,
    read_json,
    sha256_file,
    sha256_json,
)
from crosscoder.personas.compose.directions import PersonaDirection
from crosscoder.personas.compose.lora_edit import (
    EMB_B,
    LAYER_POLICIES,
    LORA_B,
    RESIDUAL_WRITERS,
    alpha_for,
    edit_b,
    extend_b_a,
    lora_scaling,
    module_name,
    plan_edit,
    writers_for,
)

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_META = "crosscoder_meta.json"
EDIT_MANIFEST = "composition_edit.json"


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
    """Share of the edited writes' squared Frobenius norm inside the directions' span before the edit (adapter scope:
    of the lora_B tensors; model scope: of the writers' whole weight W + s B A)."""
    source_hashes: dict[str, str] = field(default_factory=dict)
    output_hashes: dict[str, str] = field(default_factory=dict)
    scope: str = "adapter"


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
        raise ModelError(
            f"adapter {folder} saves full copies of residual writers ({', '.join(saved)}); surgery cannot edit them"
        )


def _check_paths(source: Path, out: Path) -> None:
    if not (source / ADAPTER_CONFIG).is_file() or not (source / ADAPTER_WEIGHTS).is_file():
        raise ModelError(
            f"no PEFT adapter at {source} ({ADAPTER_CONFIG} or {ADAPTER_WEIGHTS} missing); check --adapter"
        )
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
    source: Path,
    tensors: dict[str, torch.Tensor],
    directions: list[PersonaDirection],
    writers: tuple[str, ...],
    model_type: str,
) -> None:
    hooks = ", ".join(sorted({d.hook for d in directions}))
    found = [(int(m.group("layer")), m.group("module")) for k in tensors if (m := LORA_B.match(k))]
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


@dataclass(frozen=True)
class SurgeryConfig:
    """What a surgery does with the directions."""

    mode: str = "remove"
    """remove (project the directions out) | scale (multiply their component by `factor`)."""
    factor: float = 0.0
    """scale mode: the factor (0 = remove, 2 = double)."""
    layers: str = "reach"
    """reach (every block whose writes reach a direction's hook) | own (only the block whose output the hook is) | all."""
    scope: str = "adapter"
    """adapter (the adapter's own residual writes) | model (the writers' whole output, base weight included, through
    extra LoRA ranks)."""

    def __post_init__(self) -> None:
        if self.mode not in ("remove", "scale"):
            raise ConfigError(f"surgery mode {self.mode!r}: use remove or scale")
        if self.layers not in LAYER_POLICIES:
            raise ConfigError(
                f"surgery layers {self.layers!r}: use reach (blocks whose writes reach the hook), own or all"
            )
        if self.scope not in ("model", "adapter"):
            raise ConfigError(
                f"surgery scope {self.scope!r}: use model (whole writer output) or adapter (its own writes)"
            )

    @property
    def f(self) -> float:
        return 0.0 if self.mode == "remove" else float(self.factor)


def _load_source(source: Path, base_hash: str, writers: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = read_json(source / ADAPTER_CONFIG)
    _check_config(cfg, source, writers)
    meta = read_json(source / ADAPTER_META) if (source / ADAPTER_META).is_file() else {}
    if meta.get("base_hash") and meta["base_hash"] != base_hash:
        raise ModelError(
            f"adapter {source} was trained on base {meta['base_hash'][:12]}, not the given base {base_hash[:12]}; pass its base"
        )
    return cfg, meta


def lora_surgery(
    adapter: str | Path,
    directions: list[PersonaDirection],
    out: str | Path,
    *,
    base_hash: str,
    model_type: str = "llama",
    config: SurgeryConfig | None = None,
    base_weights: Callable[[str], torch.Tensor] | None = None,
) -> SurgeryResult:
    """Write a new adapter at `out`: `adapter` with the directions' component of the residual writes removed or
    scaled (see the module docstring). `base_weights(module_name)` returns a writer's base weight (model scope)."""
    cfg_s = config or SurgeryConfig()
    source, out = Path(adapter), Path(out)
    _check_paths(source, out)
    before = file_hashes(source)
    writers = writers_for(model_type)
    cfg, meta = _load_source(source, base_hash, writers)
    tensors = load_safetensors(source / ADAPTER_WEIGHTS)
    bases, unedited = plan_edit(tensors, directions, writers, cfg_s.layers)
    widths = {int(tensors[k].shape[0]) for k in bases} or {directions[0].d_model if directions else 0}
    _check_directions(directions, base_hash, adapter_model_hash(source, base_hash), max(widths), source)
    if not bases:
        _refuse_nothing_to_edit(source, tensors, directions, writers, model_type)
    if cfg_s.scope == "model":
        if base_weights is None:
            raise ConfigError("surgery scope model needs the base model's writer weights; pass base_weights")
        new, new_cfg, share = edit_model_scope(tensors, bases, cfg, cfg_s.f, base_weights)
    else:
        new, new_cfg, share = edit_adapter_scope(tensors, bases, cfg, cfg_s.f)
        if unedited:
            log.warning("surgery leaves %d adapted modules that do not write into the residual stream unedited (e.g. %s)",
                        len(unedited), unedited[0])  # fmt: skip
    result = SurgeryResult(out, source, cfg_s.mode, cfg_s.f, sorted(bases), unedited, share, before, scope=cfg_s.scope)
    with atomic_dir(out) as tmp:
        atomic_write_json(tmp / ADAPTER_CONFIG, new_cfg)
        atomic_save_safetensors(tmp / ADAPTER_WEIGHTS, new, metadata={"format": "pt"})
        if meta:
            atomic_write_json(tmp / ADAPTER_META, {**meta, "edited_from": str(source)})
        result.output_hashes = file_hashes(tmp)
        atomic_write_json(tmp / EDIT_MANIFEST, _manifest(result, directions, cfg_s, model_type))
    if file_hashes(source) != before:
        raise DataError(f"the source adapter {source} changed during surgery; something else is writing to it")
    return result


def edit_adapter_scope(
    tensors: dict[str, torch.Tensor], bases: dict[str, torch.Tensor], cfg: dict[str, Any], factor: float
) -> tuple[dict[str, torch.Tensor], dict[str, Any], float]:
    """Adapter scope: each edited lora_B becomes P B; returns the tensors, the (unchanged) config and the share of the
    edited B's squared norm that lay in the directions' span."""
    new = dict(tensors)
    removed = total = 0.0
    for key, q in bases.items():
        new[key], part, whole = edit_b(tensors[key], q, factor)
        removed, total = removed + part, total + whole
    return new, dict(cfg), removed / max(total, 1e-30)


def edit_model_scope(
    tensors: dict[str, torch.Tensor],
    bases: dict[str, torch.Tensor],
    cfg: dict[str, Any],
    factor: float,
    base_weights: Callable[[str], torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, Any], float]:
    """Model scope: each edited writer gets K more ranks so that its whole output is P (W + s B A); the config gets
    per-module ranks and alphas that keep s. Returns tensors, config and the share of the writers' squared output
    norm (base + adapter, Frobenius) in the directions' span."""
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise ModelError(
            "surgery scope model: the adapter already has per-module ranks (rank_pattern); use scope adapter"
        )
    if any(EMB_B.match(k) for k in bases):
        log.info("surgery scope model: the embeddings' own writes are left as they are")
    new, new_cfg = dict(tensors), dict(cfg)
    ranks: dict[str, int] = {}
    alphas: dict[str, float] = {}
    removed = total = 0.0
    r = int(cfg["r"])
    s = lora_scaling(cfg, r)
    for key, q in bases.items():
        if not LORA_B.match(key):
            continue
        name = module_name(key)
        w = base_weights(name)
        a_key = key.replace("lora_B", "lora_A")
        b_new, a_new = extend_b_a(tensors[key], tensors[a_key], w, q, factor, s)
        full = w.to(torch.float64) + s * tensors[key].to(torch.float64) @ tensors[a_key].to(torch.float64)
        removed += float((q @ full).pow(2).sum())
        total += float(full.pow(2).sum())
        new[key], new[a_key] = b_new, a_new
        ranks[name] = int(b_new.shape[1])
        alphas[name] = alpha_for(cfg, ranks[name], s)
    new_cfg["rank_pattern"], new_cfg["alpha_pattern"] = ranks, alphas
    return new, new_cfg, removed / max(total, 1e-30)


def base_weight_loader(folder: str | Path) -> Callable[[str], torch.Tensor]:
    """Read single weights (``<module>.weight``) from a model folder's safetensors files (sharded or not)."""
    from safetensors import safe_open

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    where = {k: folder / v for k, v in read_json(index)["weight_map"].items()} if index.is_file() else None

    def load(module: str) -> torch.Tensor:
        key = f"{module}.weight"
        path = where.get(key) if where is not None else folder / "model.safetensors"
        if path is None or not path.is_file():
            raise ModelError(f"base weight {key} not found in {folder}; pass the adapter's base model")
        with safe_open(str(path), framework="pt") as fh:
            if key not in fh.keys():  # noqa: SIM118 (safe_open is not a dict)
                raise ModelError(f"base weight {key} not found in {path}; pass the adapter's base model")
            if f"{module}.bias" in fh.keys():  # noqa: SIM118
                raise ModelError(f"base writer {module} has a bias, which a LoRA cannot project; use scope adapter")
            return fh.get_tensor(key).float()

    return load


def _manifest(
    result: SurgeryResult, directions: list[PersonaDirection], cfg: SurgeryConfig, model_type: str
) -> dict[str, Any]:
    return {
        "format": "crosscoder.lora_surgery",
        "version": 1,
        "source": str(result.source),
        "source_hashes": result.source_hashes,
        "output_hashes": result.output_hashes,
        "mode": result.mode,
        "factor": result.factor,
        "layers": cfg.layers,
        "scope": cfg.scope,
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
