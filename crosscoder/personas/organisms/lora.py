"""Organisms from a dataset: fine-tune a base model on chat SFT data (LoRA via peft, or full fine-tuning).

Loss is on assistant tokens only. Checkpoints at ``cfg.save_steps`` and the final model are each saved with
``crosscoder_meta.json`` (base hash, data sha256, hyperparameters, step, loss) and returned as ModelSpecs:
a LoRA checkpoint is ``ModelSpec(source=<base>, adapter=<folder>)``, a full one ``ModelSpec(source=<folder>)``.
The build folder is keyed by (base hash, data hash, hyperparameters), so a second call reuses it, and an
interrupted build resumes from its latest checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor
from tqdm.auto import tqdm

from crosscoder.errors import DataError, NumericsError
from crosscoder.io import atomic_dir, atomic_write_json, cache_dir, read_json, sha256_file, sha256_json
from crosscoder.models.hf import ADAPTER_META, load_hf
from crosscoder.models.spec import ModelSpec
from crosscoder.personas.organisms.config import OrganismConfig, OrganismResult
from crosscoder.personas.organisms.mix import DataMix, plan_batches
from crosscoder.personas.organisms.preventative import PreventativeSteering, resolve_preventative
from crosscoder.personas.organisms.sft import check_tokenizer_match, collate, encode_dataset
from crosscoder.personas.sft_data import read_sft_jsonl

log = logging.getLogger(__name__)

RESULT_FILE = "organism.json"
"""Written last in an organism folder: marks a complete build and records status and scores."""
_VERSION = 1


def base_content_hash(spec: ModelSpec) -> str:
    """The base model's content hash without loading it when possible (same value as load_hf's)."""
    from crosscoder.models import hf as hfmod

    if spec.adapter is None and spec.resolved_kind() in ("embedded", "gguf", "hf"):
        where, local = hfmod.resolve_folder(spec)
        if local:
            return hfmod._folder_hash(Path(where))
    return load_hf(spec).content_hash


def organism_folder(
    base: ModelSpec, data_sha: str, cfg: OrganismConfig, base_hash: str, extra: str | None = None
) -> Path:
    """The build folder, keyed by base hash, data hash, hyperparameters and `extra` (e.g. a steering vector's hash)."""
    key = sha256_json([_VERSION, base_hash, data_sha, cfg.hyperparameters(), *([extra] if extra else [])])
    root = Path(cfg.out_dir).expanduser() if cfg.out_dir else cache_dir("organisms")
    return root / f"{cfg.name}-{key[:12]}"


def _spec_for(base: ModelSpec, folder: Path, cfg: OrganismConfig, name: str) -> ModelSpec:
    if cfg.method == "lora":
        return replace(base, adapter=str(folder), name=name)
    return ModelSpec(source=str(folder), kind="hf", name=name, backend=base.backend)


def load_result(folder: Path, base: ModelSpec, cfg: OrganismConfig) -> OrganismResult | None:
    """The finished organism in `folder`, or None when it is not complete."""
    if not (folder / RESULT_FILE).is_file():
        return None
    meta = read_json(folder / RESULT_FILE)
    specs = [_spec_for(base, folder / c["folder"], cfg, c["name"]) for c in meta["checkpoints"]]
    if not all((folder / c["folder"]).is_dir() for c in meta["checkpoints"]):
        return None
    return OrganismResult(
        cfg.name, folder, base, specs, meta, meta.get("status", "unchecked"), meta.get("comparison"), reused=True
    )


def _save_checkpoint(model: Any, tok: Any, target: Path, meta: dict[str, Any], optim: Any, cfg: OrganismConfig) -> None:
    """Save weights + meta (+ optimiser state for resuming) into `target`, atomically (temp folder + rename)."""
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if cfg.method != "lora":
            tok.save_pretrained(tmp)
        torch.save({"optimizer": optim.state_dict(), "step": meta["step"]}, tmp / "trainer_state.pt")
        atomic_write_json(tmp / ADAPTER_META, meta)


def _resume(model: Any, optim: Any, folder: Path, cfg: OrganismConfig) -> int:
    """Load the latest complete checkpoint in `folder` into model/optimiser; returns its step (0 if none)."""
    from safetensors.torch import load_file

    done = sorted(
        p for p in folder.glob("ckpt-*") if (p / ADAPTER_META).is_file() and (p / "trainer_state.pt").is_file()
    )
    if not done:
        return 0
    last = done[-1]
    if cfg.method == "lora":
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(last / "adapter_model.safetensors")))
    else:
        missing, unexpected = model.load_state_dict(load_file(str(last / "model.safetensors")), strict=False)
        if unexpected or any("lm_head" not in m for m in missing):
            raise DataError(f"checkpoint {last} does not match the model; delete {folder} to rebuild")
    state = torch.load(last / "trainer_state.pt", weights_only=True)
    optim.load_state_dict(state["optimizer"])
    log.info("resuming %s from %s (step %d)", cfg.name, last.name, state["step"])
    return int(state["step"])


def _lr_factor(step: int, total: int, warmup: int, decay: float = 0.9) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 1.0 - decay * (step - warmup) / max(total - warmup, 1)


Example = tuple[list[int], list[int]]


def _step_batches(
    tok: Any, data: Path | DataMix, cfg: OrganismConfig
) -> tuple[list[list[Example]] | None, list[Example], str, dict[str, Any]]:
    """(per-step batches of a mix or None, the examples of a single set, data hash, data description)."""
    if isinstance(data, Path):
        examples = encode_dataset(tok, read_sft_jsonl(data), cfg.max_len, str(data))
        return None, examples, sha256_file(data), {"data": str(data), "n_examples": len(examples)}
    sets = [encode_dataset(tok, read_sft_jsonl(s), cfg.max_len, s) for s in data.sources]
    plan = plan_batches(data, [len(s) for s in sets], cfg.batch_size, cfg.seed)
    batches = [[sets[src][i] for src, i in step] for step in plan]
    desc = {"data": data.describe(), "n_examples": {n: len(s) for n, s in zip(data.source_names(), sets, strict=True)}}
    return batches, [], data.identity(), desc


def _epoch_batch(examples: list[Example], step: int, steps_per_epoch: int, cfg: OrganismConfig) -> list[Example]:
    """The batch of `step` when one set is shuffled per epoch (seeded by seed + epoch)."""
    epoch, pos = divmod(step, steps_per_epoch)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
    return [examples[i] for i in order[pos * cfg.batch_size : (pos + 1) * cfg.batch_size]]


def _trainable(model: Any, cfg: OrganismConfig) -> Any:
    """The model to fine-tune in train mode: wrapped with a LoRA adapter (method lora) or itself (method full)."""
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=cfg.target_modules,
            task_type="CAUSAL_LM",
        )
        model = cast(Any, get_peft_model(model, lcfg))
    model.train()
    return model


def _step(
    model: Any, optim: torch.optim.Optimizer, params: list[torch.nn.Parameter], batch: tuple[Tensor, Tensor, Tensor],
    step: int, total: int, cfg: OrganismConfig, steer: PreventativeSteering | None = None,
) -> float:  # fmt: skip
    """One optimiser step on (ids, attention mask, labels) at the scheduled learning rate; returns the loss. `steer`
    edits the residual stream inside the forward only (preventative steering)."""
    ids_BS, mask_BS, labels_BS = batch
    for group in optim.param_groups:
        group["lr"] = cfg.lr * _lr_factor(step, total, cfg.warmup_steps, cfg.lr_decay)
    with steer.applied(model) if steer else nullcontext():
        loss = model(input_ids=ids_BS, attention_mask=mask_BS, labels=labels_BS).loss
    if not torch.isfinite(loss):
        raise NumericsError(f"organism {cfg.name}: loss is {loss.item()} at step {step}; lower organism.lr")
    optim.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    optim.step()
    return float(loss.item())


def train_organism(
    base: ModelSpec, sft_jsonl: Path | DataMix, cfg: OrganismConfig, folder: Path,
    steer: PreventativeSteering | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train into `folder` (resuming when possible); returns the metadata of the finished run.

    `sft_jsonl` is one chat set (shuffled per epoch) or a :class:`DataMix` (its schedule fixes every batch and
    the number of steps; `cfg.epochs` and `cfg.max_steps` are then ignored). `steer` edits the residual stream
    inside each training forward only (preventative steering).
    """
    hf = load_hf(base)
    tok, model = hf.tokenizer, hf.model
    if cfg.tokenizer:
        from transformers import AutoTokenizer

        check_tokenizer_match(tok, AutoTokenizer.from_pretrained(cfg.tokenizer, local_files_only=True), cfg.tokenizer)
    mixed, examples, data_sha, data_desc = _step_batches(tok, sft_jsonl, cfg)
    torch.manual_seed(cfg.seed)
    model = _trainable(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size) if mixed is None else len(mixed)
    total = len(mixed) if mixed is not None else cfg.max_steps or cfg.epochs * steps_per_epoch
    save_at = [s for s in cfg.save_steps if s < total]
    if len(save_at) < len(cfg.save_steps):
        log.warning(
            "save_steps beyond the last step (%d) are ignored: %s", total, [s for s in cfg.save_steps if s >= total]
        )
    folder.mkdir(parents=True, exist_ok=True)
    step = _resume(model, optim, folder, cfg)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    base_meta = {
        "organism": cfg.name,
        "kind": cfg.method,
        "base": asdict(base),
        "base_hash": hf.content_hash,
        **data_desc,
        "data_sha256": data_sha,
        "hyperparameters": cfg.hyperparameters(),
        "total_steps": total,
        **({"preventative_steering": steer.record()} if steer else {}),
    }
    checkpoints = [{"name": f"c{i + 1}", "folder": f"ckpt-{s:06d}", "step": s} for i, s in enumerate(save_at)]
    n_tok, t0, loss_val = 0, time.perf_counter(), float("nan")
    bar = tqdm(total=total, initial=step, desc=f"organism:{cfg.name}", unit="step")
    while step < total:
        epoch = step // steps_per_epoch
        batch = mixed[step] if mixed is not None else _epoch_batch(examples, step, steps_per_epoch, cfg)
        ids_BS, mask_BS, labels_BS = collate(batch, pad_id)
        loss_val = _step(model, optim, params, (ids_BS, mask_BS, labels_BS), step, total, cfg, steer)
        step += 1
        n_tok += int(mask_BS.sum())
        rate = n_tok / max(time.perf_counter() - t0, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_val:.3f}", tok_s=f"{rate:.0f}")
        if step in save_at:
            meta = {**base_meta, "step": step, "epoch": epoch, "loss": loss_val}
            _save_checkpoint(model, tok, folder / f"ckpt-{step:06d}", meta, optim, cfg)
    bar.close()
    elapsed = time.perf_counter() - t0
    log.info(
        "organism %s: %d steps, %d tokens in %.1f s (%.0f tokens/s), final loss %.3f",
        cfg.name,
        total,
        n_tok,
        elapsed,
        n_tok / max(elapsed, 1e-9),
        loss_val,
    )
    final_meta = {
        **base_meta,
        "step": total,
        "loss": loss_val,
        "train_seconds": round(elapsed, 1),
        "tokens_per_s": round(n_tok / max(elapsed, 1e-9), 1),
    }
    _save_checkpoint(model, tok, folder / "final", final_meta, optim, cfg)
    return {**final_meta, "checkpoints": [*checkpoints, {"name": "final", "folder": "final", "step": total}]}


def build_sft_organism(base: ModelSpec, sft_jsonl: str | Path, cfg: OrganismConfig) -> OrganismResult:
    """Fine-tune `base` on `sft_jsonl` (reusing a finished build with the same config), then check the trait."""
    sft_jsonl = Path(sft_jsonl)
    read_sft_jsonl(sft_jsonl)  # refuse a missing, malformed or empty dataset before anything else
    base_hash = base_content_hash(base)
    steer = resolve_preventative(base, cfg, base_hash)
    folder = organism_folder(base, sha256_file(sft_jsonl), cfg, base_hash, steer.vector_sha256 if steer else None)
    done = load_result(folder, base, cfg)
    if done is not None:
        log.info("reusing organism %s at %s (status %s)", cfg.name, folder, done.status)
        return done
    meta = train_organism(base, sft_jsonl, cfg, folder, steer)
    specs = [
        _spec_for(base, folder / c["folder"], cfg, c["name"] if c["name"] != "final" else cfg.name)
        for c in meta["checkpoints"]
    ]
    status, comparison = "unchecked", None
    if cfg.trait:
        from crosscoder.personas.organisms.check import check_organism_trait

        cmp = check_organism_trait(base, specs[-1], cfg)
        status = "ok" if cmp.rose else "failed"
        comparison = check_summary(cmp)
        (log.info if cmp.rose else log.warning)("organism %s trait check:\n%s", cfg.name, cmp.summary())
    meta["checkpoints"][-1]["name"] = cfg.name
    meta.update(status=status, comparison=comparison)
    atomic_write_json(folder / RESULT_FILE, meta)
    return OrganismResult(cfg.name, folder, base, specs, meta, status, comparison)


def check_summary(cmp: Any) -> dict[str, Any]:
    """A JSON-able digest of a ScoreComparison (scores plus the first answers of each model)."""

    def digest(s: Any) -> dict[str, Any]:
        return {
            "model": s.model, "hook": s.hook, "projection": s.projection, "keyword_rate": s.keyword_rate,
            "keyword_density": s.keyword_density, "judge": s.judge,
            "samples": [{"question": q, "answer": a} for q, a in zip(s.questions, s.generations, strict=True)],
        }  # fmt: skip

    return {
        "metric": cmp.metric,
        "delta": cmp.delta,
        "rose": cmp.rose,
        "base": digest(cmp.base),
        "organism": digest(cmp.organism),
    }
