"""Load a `ModelSpec` as a Hugging Face causal LM (the step before TransformerLens): fp32 on CPU, placed on GPUs.

GGUF files (including the embedded default) are dequantised once and cached as a normal HF folder
(safetensors + tokenizer) under ``$CROSSCODER_CACHE/models/<sha256 of the gguf>``, written atomically,
so later loads take about a second instead of half a minute.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError

from crosscoder.errors import ModelError
from crosscoder.io import atomic_dir, atomic_write_text, cache_dir, read_json, sha256_bytes, sha256_file, sha256_json
from crosscoder.models.embedded import embedded_gguf_path
from crosscoder.models.spec import ModelSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel as HFModule
    from transformers import PreTrainedTokenizerBase as Tokenizer

log = logging.getLogger(__name__)

ADAPTER_META = "crosscoder_meta.json"
"""File an organism writes beside its adapter: records the base model's content hash."""


@dataclass
class HFModel:
    """A loaded transformers model with its tokenizer and a content hash of its weights' source."""

    model: HFModule
    tokenizer: Tokenizer
    content_hash: str
    folder: Path | None


def _gguf_to_folder(gguf: Path) -> Path:
    """Dequantise a GGUF to a cached HF folder (safetensors, fp32); returns the folder."""
    if not gguf.is_file():
        raise ModelError(f"GGUF file not found: {gguf}; check the path")
    digest = sha256_file(gguf)
    target = cache_dir("models") / f"gguf-{digest[:20]}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    log.info("converting %s to an fp32 safetensors folder (one time, ~40 s)", gguf.name)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as err:
        raise ModelError(f"reading GGUF needs the gguf package ({err}); run: pip install gguf") from err
    except (ValueError, KeyError, RuntimeError) as err:
        raise ModelError(
            f"transformers cannot load the GGUF {gguf} ({str(err).splitlines()[0]}); "
            "convert it to a Hugging Face folder and pass that folder instead"
        ) from err
    cfg = src.config.to_dict()
    cfg.pop("quantization_config", None)
    model: Any
    if cfg.get("model_type") != "llama":
        # Other architectures: keep transformers' own class, minus the quantisation marker.
        src.config.quantization_config = None
        model = src
        model.config.__dict__.pop("quantization_config", None)
    else:
        cfg["architectures"] = ["LlamaForCausalLM"]
        model = LlamaForCausalLM(LlamaConfig(**cfg))
        model.load_state_dict(src.state_dict())
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "crosscoder_source.json").write_text(json.dumps({"gguf": str(gguf), "sha256": digest}))
    return target


def _folder_hash(folder: Path) -> str:
    """Content hash of a local HF folder's weight files, cached in $CROSSCODER_CACHE/model-hashes (keyed by the
    folder's absolute path, and each file's size and mtime); nothing is written into the user's model folder."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") or p.name == "config.json")
    sig = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    marker = cache_dir("model-hashes") / f"{sha256_bytes(str(folder.resolve()).encode())[:32]}.json"
    if marker.is_file():
        try:
            cached = json.loads(marker.read_text())
            if cached.get("sig") == [list(s) for s in sig]:
                return str(cached["hash"])
        except (json.JSONDecodeError, KeyError):
            pass
    digest = sha256_json([(p.name, sha256_file(p)) for p in files])
    atomic_write_text(marker, json.dumps({"folder": str(folder.resolve()), "sig": sig, "hash": digest}))
    return digest


def check_weight_files(folder: Path) -> None:
    """Refuse, before transformers reads them, safetensors files whose header is unreadable or whose size is not
    the one the header describes (a truncated or corrupted download or copy)."""
    for path in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem:
            raise ModelError(
                f"model folder {folder}: {path.name} is {problem}; copy or download the model again (or re-save it)"
            )


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's framing (header JSON and total size), or None."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or 8 + n > size:
                return f"truncated or not a safetensors file ({size} bytes)"
            header = json.loads(fh.read(n))
    except (OSError, ValueError, UnicodeDecodeError):
        return "corrupted (unreadable safetensors header)"
    if not isinstance(header, dict):
        return "corrupted (unreadable safetensors header)"
    offsets = [v.get("data_offsets", [0, 0]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    end = max((int(o[1]) for o in offsets), default=0)
    if 8 + n + end != size:
        return f"truncated or corrupted ({size} bytes, the header describes {8 + n + end})"
    return None


def resolve_folder(spec: ModelSpec) -> tuple[str, bool]:
    """(path or hub id to give transformers, whether it is local)."""
    kind = spec.resolved_kind()
    if kind == "embedded":
        return str(_gguf_to_folder(embedded_gguf_path(spec.source))), True
    if kind == "gguf":
        return str(_gguf_to_folder(Path(spec.source).expanduser())), True
    if kind == "hf":
        path = Path(spec.source).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise ModelError(
                    f"{path} is not a Hugging Face model folder (no config.json); pass a folder saved with save_pretrained"
                )
            check_weight_files(path)
            return str(path), True
        if spec.source.startswith((".", "/", "~")):
            raise ModelError(f"model folder not found: {spec.source}; check the path")
        return spec.source, False
    raise ModelError(f"model kind {kind!r} has no Hugging Face folder; load it with load_model instead")


def source_hash(spec: ModelSpec, where: str, local: bool) -> str:
    """Content hash of a resolved source: its weight files for a local folder, (hub id, revision) otherwise."""
    return _folder_hash(Path(where)) if local else sha256_json([spec.source, spec.revision])


def adapter_hash(base_hash: str, adapter: str | Path) -> str:
    """Content hash of a base merged with the PEFT adapter in folder `adapter`."""
    files = sorted(p for p in Path(adapter).expanduser().iterdir() if p.suffix == ".safetensors")
    return sha256_json([base_hash, [sha256_file(p) for p in files]])


def check_local_files(spec: ModelSpec) -> None:
    """The checks of a spec's local files that need no loading (folder, config.json, weight files, adapter), so a
    set of models is refused before the first one loads. Hub ids, GGUF files and TransformerLens names pass."""
    if spec.resolved_kind() == "hf" and (
        Path(spec.source).expanduser().exists() or spec.source.startswith((".", "/", "~"))
    ):
        resolve_folder(spec)
    if spec.adapter:
        folder = Path(spec.adapter).expanduser()
        if not (folder / "adapter_config.json").is_file():
            raise ModelError(f"no PEFT adapter at {folder} (adapter_config.json missing); check model.adapter")
        check_weight_files(folder)


def load_hf(spec: ModelSpec, dtype: torch.dtype = torch.float32, device_map: Any = None) -> HFModel:
    """Load `spec` with transformers (eval mode), merging its adapter if any.

    fp32 on the CPU by default; `dtype` and `device_map` (an accelerate map such as "auto", or {"": "cuda:0"} to load
    straight onto one GPU) come from crosscoder.models.placement for GPU runs.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, local = resolve_folder(spec)
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code, "local_files_only": local}
    if not local and spec.revision:
        kwargs["revision"] = spec.revision
    placed = {"device_map": device_map} if device_map is not None else {}
    try:
        tok = AutoTokenizer.from_pretrained(where, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **placed, **kwargs)
    except (OSError, SafetensorError, json.JSONDecodeError) as err:
        hint = "check the hub id and your network" if not local else "the folder is incomplete or corrupt; re-save it"
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ModelError(f"cannot load model {spec.source!r}: {first}; {hint}") from err
    content_hash = source_hash(spec, where, local)
    if spec.adapter:
        model, content_hash = _merge_adapter(model, spec, content_hash)
    model.eval()
    return HFModel(model=model, tokenizer=tok, content_hash=content_hash, folder=Path(where) if local else None)


def _merge_adapter(model: Any, spec: ModelSpec, base_hash: str) -> tuple[Any, str]:
    from peft import PeftModel

    assert spec.adapter is not None
    folder = Path(spec.adapter).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise ModelError(f"no PEFT adapter at {folder} (adapter_config.json missing); check model.adapter")
    check_weight_files(folder)
    meta_path = folder / ADAPTER_META
    if meta_path.is_file():
        meta = read_json(meta_path)
        expected = meta.get("base_hash")
        if expected and expected != base_hash:
            raise ModelError(
                f"adapter {folder} was trained on a base with hash {expected[:12]}, not {spec.source} ({base_hash[:12]}); "
                "set model.source to the adapter's base"
            )
    try:
        merged = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except (RuntimeError, ValueError, KeyError) as err:
        raise ModelError(
            f"adapter {folder} does not fit base {spec.source} ({str(err).splitlines()[0][:160]}); "
            "use the base model the adapter was trained on"
        ) from err
    return merged, adapter_hash(base_hash, folder)
