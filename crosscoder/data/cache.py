"""The on-disk activation cache: safetensors shards plus a JSON manifest, written atomically and resumable.

Layout of a cache folder::

    manifest.json                 models (specs + content hashes), hooks, dtype, d_model, data config, sources,
                                  shard list (rows, sequences, batch range, sha256, norm sums), normalisation stats
    shards/shard_00000.safetensors   x [rows, n_models, n_hooks, d_model], seq, pos, token, role, turn_idx, turn_rem

Every shard ends on a harvest-batch boundary and records its batch range, so a harvest resumes after the last
complete shard and a corrupt shard can be rebuilt alone: ``python -m crosscoder.data.cache repair <folder>``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import random
import shutil
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crosscoder.data.config import DataConfig
from crosscoder.data.harvest import HarvestBatch
from crosscoder.data.manifest import JSON, CacheManifest, ModelRecord, ShardEntry
from crosscoder.data.normalize import NormStats, sample_for_norm
from crosscoder.data.sources import resolve_sources
from crosscoder.errors import DataError, run_cli
from crosscoder.io import SAMPLE_BYTES, atomic_save_safetensors, atomic_write_json, read_json, sha256_file, sha256_json
from crosscoder.models.fingerprint import ModelIdentity

log = logging.getLogger(__name__)

FORMAT = "crosscoder-activations"
VERSION = 1
MANIFEST = "manifest.json"
ROW_FIELDS = ("seq", "pos", "token", "role", "turn_idx", "turn_rem")
META_BYTES_PER_ROW = 8 + 4 + 4 + 1 + 4 + 4
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ST_NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64, "I32": np.int32, "I8": np.int8}


def repair_command(path: Path) -> str:
    return f"python -m crosscoder.data.cache repair {path}"


def identity(models: Sequence[ModelIdentity], cfg: DataConfig) -> dict[str, Any]:
    """Everything that determines a cache's content; a cache whose identity differs is never reused."""
    tok = models[0].tokenizer
    return {
        "format": [FORMAT, VERSION],
        "models": [_model_identity(m) for m in models],
        "hooks": list(cfg.hooks),
        "data": cfg.identity(),
        "sources": [s.describe() for s in resolve_sources(cfg.sources)],
        "tokenizer": sha256_json([sorted(tok.get_vocab().items()), getattr(tok, "chat_template", None)]),
    }


def _model_identity(m: ModelIdentity) -> list[str]:
    """Name, content hash and backend; the weights' dtype too when it is not float32 (bf16 activations differ)."""
    out = [m.name, m.content_hash, getattr(m.spec, "backend", "")]
    return out if m.dtype == "float32" else [*out, m.dtype]


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Name the first part of two identities that differs (for the refusal message)."""
    for key in new:
        if old.get(key) == new[key]:
            continue
        if key == "data" and isinstance(old.get(key), dict):
            fields = [f for f in new[key] if old[key].get(f) != new[key][f]]
            return "data config (" + ", ".join(f"{f}: {old[key].get(f)!r} -> {new[key][f]!r}" for f in fields[:3]) + ")"
        if key == "models":
            return f"model set ({[m[0] for m in old.get(key, [])]} vs {[m[0] for m in new[key]]}, or their weights)"
        return f"{key} ({str(old.get(key))[:60]} vs {str(new[key])[:60]})"
    return "identity"


@contextmanager
def cache_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on a cache folder (a second harvester waits, then finds the finished cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is writing %s; waiting for it", folder)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def new_manifest(models: Sequence[ModelIdentity], cfg: DataConfig, ident: dict[str, Any], path: Path) -> CacheManifest:
    return CacheManifest(
        format=FORMAT,
        version=VERSION,
        key=sha256_json(ident),
        complete=False,
        identity=ident,
        models=[ModelRecord(m.name, asdict(m.spec), m.content_hash, m.d_model, m.n_layers, m.dtype) for m in models],
        hooks=list(cfg.hooks),
        d_model=models[0].d_model,
        dtype=cfg.store_dtype,
        layout="x[row, model, hook, d_model]; rows in (sequence, position) order; pad positions are not stored",
        data_config=asdict(cfg),
        sources=ident["sources"],
        shards=[],
        rebuild=repair_command(path),
    )


def bytes_per_row(n_models: int, n_hooks: int, d_model: int, store_dtype: str) -> int:
    return n_models * n_hooks * d_model * TORCH_DTYPES[store_dtype].itemsize + META_BYTES_PER_ROW


def check_disk(folder: Path, n_rows: int, row_bytes: int, min_free_gb: float) -> int:
    """Print the space the harvest needs and refuse when the disk is too full; returns the estimate in bytes."""
    need = n_rows * row_bytes
    free = shutil.disk_usage(folder).free
    msg = f"activation cache needs ~{need / 1e9:.3f} GB ({n_rows:,} rows x {row_bytes:,} B) in {folder}; {free / 1e9:.1f} GB free"
    print(msg, flush=True)
    log.debug(msg)
    if need + min_free_gb * 1e9 > free:
        raise DataError(
            f"not enough disk for the activation cache: {msg}, and data.min_free_gb={min_free_gb} must stay free; "
            "free space, lower data.n_tokens, use data.store_dtype=float16, or set data.cache_root elsewhere"
        )
    return need


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def shard_tensors(rows: list[HarvestBatch], seq_start: int, store_dtype: str) -> tuple[dict[str, torch.Tensor], int]:
    """Concatenate harvest batches into one shard's tensors (global sequence ids); returns (tensors, n_seqs)."""
    seq_parts, n_seqs = [], 0
    for r in rows:
        seq_parts.append(r.seq_N + seq_start + n_seqs)
        n_seqs += r.n_seqs
    tensors = {
        "x": torch.cat([r.x_NMLD for r in rows]).to(TORCH_DTYPES[store_dtype]),
        "seq": torch.cat(seq_parts),
        "pos": torch.cat([r.pos_N for r in rows]),
        "token": torch.cat([r.token_N for r in rows]),
        "role": torch.cat([r.role_N for r in rows]),
        "turn_idx": torch.cat([r.turn_idx_N for r in rows]),
        "turn_rem": torch.cat([r.turn_rem_N for r in rows]),
    }
    return tensors, n_seqs


def shard_entry(
    tensors: dict[str, torch.Tensor],
    index: int,
    n_seqs: int,
    seq_start: int,
    batch_range: tuple[int, int],
    cfg: DataConfig,
) -> ShardEntry:
    """Manifest entry of a shard: counts, batch range, normalisation sums over its seeded sample, role counts."""
    x = tensors["x"].to(torch.float32)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + index)
    rate = min(1.0, cfg.norm_sample_tokens / cfg.n_tokens)
    stats = NormStats.zeros(x.shape[1], x.shape[2])
    stats.add(x[sample_for_norm(tensors["role"], rate, gen)])
    roles, counts = np.unique(tensors["role"].numpy(), return_counts=True)
    return ShardEntry(
        file=f"shards/{shard_name(index)}",
        n_rows=int(x.shape[0]),
        n_seqs=n_seqs,
        seq_start=seq_start,
        batch_start=batch_range[0],
        batch_end=batch_range[1],
        norm=stats.to_json(),
        role_counts={str(int(r)): int(c) for r, c in zip(roles, counts, strict=True)},
    )


def write_shard(
    folder: Path, index: int, rows: list[HarvestBatch], seq_start: int, batch_range: tuple[int, int], cfg: DataConfig
) -> ShardEntry:
    """Write one shard atomically; return its manifest entry (with file size and sha256)."""
    tensors, n_seqs = shard_tensors(rows, seq_start, cfg.store_dtype)
    entry = shard_entry(tensors, index, n_seqs, seq_start, batch_range, cfg)
    target = folder / entry.file
    # no metadata: safetensors writes it in random order, and shards should be byte-reproducible
    atomic_save_safetensors(target, tensors)
    entry.bytes = target.stat().st_size
    entry.sha256 = sha256_file(target)
    return entry


def verify_shard(folder: Path, entry: ShardEntry) -> str | None:
    """None when the shard file exists with the recorded size and sha256, else what is wrong."""
    path = folder / entry.file
    if not path.is_file():
        return "missing"
    if path.stat().st_size != entry.bytes:
        return f"size {path.stat().st_size} != recorded {entry.bytes}"
    if sha256_file(path) != entry.sha256:
        return "sha256 checksum mismatch"
    return None


def corrupt_error(folder: Path, entry: ShardEntry, problem: str) -> DataError:
    return DataError(
        f"shard {entry.file} of activation cache {folder} is corrupt ({problem}); rebuild it with: {repair_command(folder)}"
    )


def remove_orphans(folder: Path, manifest: CacheManifest) -> None:
    """Delete shard and temp files a crash left behind that the manifest does not list."""
    listed = {Path(e.file).name for e in manifest.shards}
    shard_dir = folder / "shards"
    if shard_dir.is_dir():
        for p in shard_dir.iterdir():
            if p.name not in listed:
                p.unlink()


def read_manifest(folder: Path) -> CacheManifest:
    """The cache's manifest.json as a `CacheManifest` (refused if it is not one, or of another format version)."""
    raw = read_json(folder / MANIFEST)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DataError(f"{folder / MANIFEST} is not a crosscoder activation cache manifest; point to a cache folder")
    if raw.get("version") != VERSION:
        raise DataError(
            f"activation cache {folder} has format version {raw.get('version')}, expected {VERSION}; rebuild it"
        )
    try:
        return CacheManifest.from_json(raw)
    except DataError as err:
        raise DataError(f"{folder / MANIFEST}: {err}") from err


def save_manifest(folder: Path, manifest: CacheManifest) -> None:
    atomic_write_json(folder / MANIFEST, manifest.to_json())


def total_norm(manifest: CacheManifest) -> NormStats:
    shards = manifest.shards
    stats = NormStats.from_json(shards[0].norm)
    for e in shards[1:]:
        stats = stats.merge(NormStats.from_json(e.norm))
    return stats


def finalize(folder: Path, manifest: CacheManifest, seconds: float) -> None:
    """Fill totals and normalisation stats and mark the manifest complete."""
    shards = manifest.shards
    if not shards:
        raise DataError(f"the text sources yielded no sequences for {folder}; check data.sources and data.min_seq_len")
    stats = total_norm(manifest)
    if stats.count == 0:
        raise DataError(
            f"no rows were eligible for normalisation in {folder}; sequences are too short (data.min_seq_len)"
        )
    role_counts: dict[str, int] = {}
    for e in shards:
        for k, v in e.role_counts.items():
            role_counts[k] = role_counts.get(k, 0) + v
    manifest.complete = True
    manifest.n_rows = sum(e.n_rows for e in shards)
    manifest.n_seqs = sum(e.n_seqs for e in shards)
    manifest.role_counts = role_counts
    manifest.norm = stats.summary(manifest.d_model)
    manifest.harvest = {**(manifest.harvest or {}), "seconds_last_run": round(seconds, 2)}
    save_manifest(folder, manifest)


def safetensors_arrays(path: Path) -> dict[str, np.ndarray]:
    """Memory-map every tensor of a safetensors file as a read-only numpy array (no copy)."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = ST_NUMPY[info["dtype"]]
        shape = tuple(info["shape"])
        if end == start:
            out[name] = np.zeros(shape, dtype=dtype)
        else:
            out[name] = np.memmap(path, dtype=dtype, mode="r", offset=8 + n + start, shape=shape)
    return out


def verify_cache(folder: Path, manifest: CacheManifest, sample: bool = False) -> int:
    """Raise a DataError naming the first corrupt shard and the repair command; returns the shards hashed.

    `sample`: every shard's size, but the sha256 of all shards only up to `SAMPLE_BYTES` in total, else of a random
    subset of about that size (analyze.py's default; `verify=full` hashes all)."""
    entries = list(manifest.shards)
    if sample and sum(e.bytes or 0 for e in entries) > SAMPLE_BYTES:
        for entry in entries:
            path = folder / entry.file
            if not path.is_file() or path.stat().st_size != entry.bytes:
                raise corrupt_error(folder, entry, "missing or resized")
        random.shuffle(entries)
        total, chosen = 0, []
        for entry in entries:
            if total >= SAMPLE_BYTES:
                break
            chosen.append(entry)
            total += entry.bytes or 0
        entries = chosen
    for entry in entries:
        problem = verify_shard(folder, entry)
        if problem:
            raise corrupt_error(folder, entry, problem)
    return len(entries)


def repair(folder: Path, device: str = "cpu") -> list[str]:
    """Re-harvest the corrupt or missing shards of a cache (loads the models its manifest records)."""
    from crosscoder.data.api import reharvest_shards
    from crosscoder.models import ModelSpec, load_model
    from crosscoder.models.placement import Placement

    manifest = read_manifest(folder)
    bad = [i for i, e in enumerate(manifest.shards) if verify_shard(folder, e)]
    if not bad:
        return []
    cfg = DataConfig(**manifest.data_config)
    models = []
    for rec in manifest.models:
        dtype = TORCH_DTYPES[rec.dtype]  # re-harvest in the precision the cache was made in
        m = load_model(ModelSpec(**rec.spec), placement=Placement(device, dtype))
        if m.content_hash != rec.content_hash:
            raise DataError(
                f"model {rec.name} no longer matches the cache {folder} (weights changed); delete the cache and harvest again"
            )
        models.append(m)
    reharvest_shards(models, cfg, folder, manifest, bad)
    return [manifest.shards[i].file for i in bad]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m crosscoder.data cache", description="Verify or repair an activation cache."
    )
    ap.add_argument("action", choices=["verify", "repair", "info"])
    ap.add_argument("folder")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    manifest = read_manifest(folder)
    if args.action == "verify":
        verify_cache(folder, manifest)
        print(f"ok: {len(manifest.shards)} shards, {sum(e.n_rows for e in manifest.shards):,} rows verified")
    elif args.action == "repair":
        fixed = repair(folder, args.device)
        print(f"rebuilt {len(fixed)} shard(s): {', '.join(fixed) or 'none needed'}")
    else:
        full = manifest.to_json()
        info = {k: full.get(k) for k in ("complete", "hooks", "d_model", "dtype", "n_rows", "n_seqs", "norm")}
        info["models"] = manifest.model_names
        print(json.dumps(info, indent=2))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_cli(main)


def holds_complete(target: Path, identity: JSON) -> bool:
    """Whether `target` already holds the complete cache `identity` (call under :func:`cache_lock`); another
    cache there is an error."""
    if not (target / MANIFEST).is_file():
        return False
    have = read_manifest(target)
    if have.identity != identity:
        raise DataError(f"{target} holds another activation cache; delete it or set data.cache_root elsewhere")
    return have.complete
