"""`prepare_activations` (harvest or reuse a cache) and `ActivationSet` (the loader and row access over a cache)."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from crosscoder.data import cache as C
from crosscoder.data.config import DataConfig
from crosscoder.data.harvest import HarvestBatch, check_models, harvest_batch, pad_token_id
from crosscoder.data.loader import BatchIterator, EpochPlan, ShardedRows
from crosscoder.data.manifest import CacheManifest
from crosscoder.data.masks import row_weights, train_mask
from crosscoder.data.sources import batch_stream
from crosscoder.errors import DataError
from crosscoder.io import cache_dir, sha256_json
from crosscoder.models.fingerprint import ModelIdentity
from crosscoder.models.load import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class RowBatch:
    """Stored rows in order, with their provenance and masks."""

    x_BMLD: Float[Tensor, "batch n_models n_hooks d_model"]
    seq_B: Int[Tensor, " batch"]
    pos_B: Int[Tensor, " batch"]
    role_B: Int[Tensor, " batch"]
    """`Role` codes (crosscoder.data.masks.Role)."""
    train_mask_B: Tensor
    """True for rows the loader trains on (sink / template exclusions applied)."""
    token_B: Int[Tensor, " batch"]
    turn_idx_B: Int[Tensor, " batch"]
    """Index within the chat turn's content (0 = first token of the turn); -1 outside chat content."""
    turn_rem_B: Int[Tensor, " batch"]
    """Content tokens left in the turn (0 = last token of the turn); -1 outside chat content."""


class ActivationSet:
    """Paired activations of a model set at some hooks: shuffled training batches and in-order row access."""

    def __init__(self, rows: ShardedRows, manifest: CacheManifest, path: Path | None, data: DataConfig):
        self.rows = rows
        self.manifest = manifest
        self.path = path
        self.data = data
        self.hooks: list[str] = list(manifest.hooks)
        self.model_names: list[str] = manifest.model_names
        self.d_model: int = int(manifest.d_model)
        self.n_rows: int = rows.n_rows
        self.scale_ML: Float[Tensor, "n_models n_hooks"] = torch.tensor(manifest.scale_ML, dtype=torch.float32)
        self._role = rows.column("role")
        self.train_mask = train_mask(self._role, data.exclude_first_position, data.exclude_template)
        self.train_rows = np.flatnonzero(self.train_mask)
        self.n_train_rows = int(self.train_rows.size)
        if self.n_train_rows == 0:
            raise DataError(
                f"activation set {path or '(in memory)'} has no training rows after masking; check data.exclude_* options"
            )
        self._seq_starts = np.array([e.seq_start for e in manifest.shards], dtype=np.int64)

    # ---------------------------------------------------------------- training batches
    def batches(
        self, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world_size: int = 1
    ) -> BatchIterator:
        """Endless shuffled raw fp32 ``x_BMLD`` batches over the training rows.

        Each epoch is a seeded permutation (every training row exactly once, or per its sampling weight); epochs run
        back to back so every batch is full. ``start_step`` resumes at the exact row; ``rank`` / ``world_size`` give
        each process a disjoint slice of every global batch of ``batch_size * world_size`` rows.
        """
        weights = None
        if self.data.assistant_weight != 1.0 or self.data.boundary_weight != 1.0:
            w = row_weights(
                self._role,
                self.rows.column("turn_idx"),
                self.rows.column("turn_rem"),
                self.data.assistant_weight,
                self.data.boundary_weight,
            )
            weights = w[self.train_rows]
        plan = EpochPlan(self.train_rows, weights, seed)
        return BatchIterator(self.rows, plan, batch_size, start_step, rank, world_size)

    # ---------------------------------------------------------------- in-order access
    def iter_rows(self, batch_size: int) -> Iterator[RowBatch]:
        """Every stored row in (sequence, position) order, with masks; the last batch may be smaller."""
        for k, shard in enumerate(self.rows.shards):
            base = int(self.rows.starts[k])
            n = shard["x"].shape[0]
            for a in range(0, n, batch_size):
                b = min(a + batch_size, n)
                yield RowBatch(
                    x_BMLD=self.rows._to_float(shard["x"][a:b]),
                    seq_B=torch.from_numpy(np.array(shard["seq"][a:b], dtype=np.int64)),
                    pos_B=torch.from_numpy(np.array(shard["pos"][a:b], dtype=np.int64)),
                    role_B=torch.from_numpy(np.array(shard["role"][a:b], dtype=np.int64)),
                    train_mask_B=torch.from_numpy(self.train_mask[base + a : base + b].copy()),
                    token_B=torch.from_numpy(np.array(shard["token"][a:b], dtype=np.int64)),
                    turn_idx_B=torch.from_numpy(np.array(shard["turn_idx"][a:b], dtype=np.int64)),
                    turn_rem_B=torch.from_numpy(np.array(shard["turn_rem"][a:b], dtype=np.int64)),
                )

    def _sequence_slice(self, seq: int) -> tuple[dict[str, np.ndarray], slice]:
        n_seqs = int(self.manifest.shards[-1].seq_start + self.manifest.shards[-1].n_seqs)
        if not 0 <= seq < n_seqs:
            raise IndexError(f"sequence {seq} out of range 0..{n_seqs - 1}")
        k = int(np.searchsorted(self._seq_starts, seq, side="right") - 1)
        col = np.asarray(self.rows.shards[k]["seq"])
        return self.rows.shards[k], slice(
            int(np.searchsorted(col, seq, "left")), int(np.searchsorted(col, seq, "right"))
        )

    def sequence_tokens(self, seq: int) -> list[int]:
        """Token ids of sequence `seq` (decode with the models' tokenizer to see its text)."""
        shard, sl = self._sequence_slice(seq)
        return [int(t) for t in shard["token"][sl]]

    def sequence_roles(self, seq: int) -> list[int]:
        """`Role` codes of sequence `seq`, one per token."""
        shard, sl = self._sequence_slice(seq)
        return [int(r) for r in shard["role"][sl]]

    @property
    def n_seqs(self) -> int:
        return int(sum(e.n_seqs for e in self.manifest.shards))

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | Path, data: DataConfig | None = None, verify: bool = True) -> ActivationSet:
        """Reopen a finished cache (checksums verified); `data` overrides loader options (masks, weights)."""
        folder = Path(path)
        manifest = C.read_manifest(folder)
        if not manifest.complete:
            raise DataError(
                f"activation cache {folder} is incomplete (interrupted harvest); run the harvest again to resume it"
            )
        if verify:
            C.verify_cache(folder, manifest)
        shards = []
        for entry in manifest.shards:
            try:
                arrays = C.safetensors_arrays(folder / entry.file)
            except (OSError, ValueError, KeyError) as err:
                raise C.corrupt_error(folder, entry, f"unreadable: {err}") from err
            if arrays["x"].shape[0] != entry.n_rows:
                raise C.corrupt_error(folder, entry, "row count differs from the manifest")
            shards.append(arrays)
        return cls(ShardedRows(shards, manifest.dtype), manifest, folder, data or DataConfig(**manifest.data_config))


def cache_folder(models: Sequence[ModelIdentity], data: DataConfig) -> tuple[Path, dict[str, Any]]:
    """Where the cache for this model set and config lives, and its identity."""
    ident = C.identity(models, data)
    if data.cache_path:
        return Path(data.cache_path).expanduser(), ident
    root = Path(data.cache_root).expanduser() if data.cache_root else cache_dir("activations")
    return root / sha256_json(ident)[:16], ident


def prepare_activations(models: list[LoadedModel], data: DataConfig) -> ActivationSet:
    """Harvest paired activations of `models` (or reuse / resume the matching cache) and return them."""
    check_models(models, data.hooks)
    if data.on_the_fly:
        return harvest_in_memory(models, data)
    folder, ident = cache_folder(models, data)
    with C.cache_lock(folder):
        manifest_path = folder / C.MANIFEST
        if manifest_path.is_file():
            manifest = C.read_manifest(folder)
            if manifest.identity != ident:
                raise DataError(
                    f"activation cache {folder} was built for a different {C.describe_difference(manifest.identity, ident)}; "
                    "it is never reused: delete the folder or choose another data.cache_path"
                )
            if manifest.complete:
                log.info("reusing activation cache %s", folder)
                return ActivationSet.open(folder, data)
            good = []
            for entry in manifest.shards:
                problem = C.verify_shard(folder, entry)
                if problem:
                    log.warning("dropping shard %s (%s) and everything after it", entry.file, problem)
                    break
                good.append(entry)
            manifest.shards = good
            log.info("resuming harvest in %s after %d complete shard(s)", folder, len(good))
        else:
            stray = [p.name for p in folder.iterdir() if p.name not in (".lock", "shards")]
            if stray:
                raise DataError(
                    f"{folder} is not empty and holds no activation cache ({stray[0]}...); choose an empty or new data.cache_path"
                )
            manifest = C.new_manifest(models, data, ident, folder)
        C.remove_orphans(folder, manifest)
        C.save_manifest(folder, manifest)
        t0 = time.perf_counter()
        _harvest_to_disk(models, data, folder, manifest)
        C.finalize(folder, manifest, time.perf_counter() - t0)
    return ActivationSet.open(folder, data, verify=False)


def _harvest_loop(
    models: list[LoadedModel], data: DataConfig, start_batch: int, seq_start: int, done_rows: int
) -> Iterator[tuple[int, HarvestBatch]]:
    """Yield (batch index, harvested batch) from `start_batch` until n_tokens rows or the sources run out."""
    pad = pad_token_id(models[0].tokenizer)
    batches = itertools.islice(batch_stream(models[0].tokenizer, data), start_batch, None)
    bar = tqdm(total=data.n_tokens, initial=min(done_rows, data.n_tokens), unit="tok", desc="harvest", mininterval=2.0)
    t0, rows = time.perf_counter(), 0
    for i, seqs in enumerate(batches, start=start_batch):
        if done_rows >= data.n_tokens:
            break
        need, lengths = data.n_tokens - done_rows, np.cumsum([len(s.ids) for s in seqs])
        if lengths[-1] > need:  # last batch: keep just enough whole sequences to reach n_tokens
            seqs = seqs[: int(np.searchsorted(lengths, need)) + 1]
        hb = harvest_batch(models, data.hooks, seqs, pad, data.check_finite, seq_offset=seq_start)
        n = int(hb.x_NMLD.shape[0])
        seq_start, done_rows, rows = seq_start + hb.n_seqs, done_rows + n, rows + n
        bar.update(min(n, max(0, data.n_tokens - bar.n)))
        bar.set_postfix(tok_s=f"{rows / (time.perf_counter() - t0):.0f}")
        yield i, hb
    bar.close()
    dt = time.perf_counter() - t0
    if rows:
        log.info("harvested %d tokens x %d models in %.1f s (%.0f tokens/s)", rows, len(models), dt, rows / dt)


def _harvest_to_disk(models: list[LoadedModel], data: DataConfig, folder: Path, manifest: CacheManifest) -> None:
    shards = manifest.shards
    done_rows = sum(e.n_rows for e in shards)
    seq_start = sum(e.n_seqs for e in shards)
    start_batch = shards[-1].batch_end if shards else 0
    if done_rows < data.n_tokens:
        C.check_disk(
            folder,
            data.n_tokens - done_rows,
            C.bytes_per_row(len(models), len(data.hooks), models[0].d_model, data.store_dtype),
            data.min_free_gb,
        )
    for buf, span in _shard_groups(models, data, start_batch, seq_start, done_rows):
        _flush(folder, manifest, buf, span, data)


def _shard_groups(
    models: list[LoadedModel], data: DataConfig, start_batch: int, seq_start: int, done_rows: int
) -> Iterator[tuple[list[HarvestBatch], tuple[int, int]]]:
    """Harvest batches grouped into shards of >= shard_tokens rows (the last may be smaller), with their batch span."""
    buf: list[HarvestBatch] = []
    buf_start = last = start_batch
    for i, hb in _harvest_loop(models, data, start_batch, seq_start, done_rows):
        buf.append(hb)
        done_rows += hb.x_NMLD.shape[0]
        last = i + 1
        if sum(b.x_NMLD.shape[0] for b in buf) >= data.shard_tokens or done_rows >= data.n_tokens:
            yield buf, (buf_start, last)
            buf, buf_start = [], last
    if buf:
        yield buf, (buf_start, last)


def _flush(
    folder: Path, manifest: CacheManifest, buf: list[HarvestBatch], batch_range: tuple[int, int], data: DataConfig
) -> None:
    shards = manifest.shards
    seq_start = sum(e.n_seqs for e in shards)
    shards.append(C.write_shard(folder, len(shards), buf, seq_start, batch_range, data))
    C.save_manifest(folder, manifest)


def reharvest_shards(
    models: list[LoadedModel], data: DataConfig, folder: Path, manifest: CacheManifest, indices: list[int]
) -> None:
    """Rebuild the given shards in place from their recorded batch ranges (used by ``cache repair``)."""
    check_models(models, data.hooks)
    with C.cache_lock(folder):
        for k in indices:
            entry = manifest.shards[k]
            batches = itertools.islice(batch_stream(models[0].tokenizer, data), entry.batch_start, entry.batch_end)
            pad = pad_token_id(models[0].tokenizer)
            buf, seq = [], entry.seq_start
            for seqs in batches:
                buf.append(harvest_batch(models, data.hooks, seqs, pad, data.check_finite, seq_offset=seq))
                seq += len(seqs)
            new = C.write_shard(folder, k, buf, entry.seq_start, (entry.batch_start, entry.batch_end), data)
            if new.n_rows != entry.n_rows:
                raise DataError(
                    f"rebuilding {entry.file} gave {new.n_rows} rows, not {entry.n_rows}: the text sources changed; delete the cache and harvest again"
                )
            manifest.shards[k] = new
            C.save_manifest(folder, manifest)


def harvest_in_memory(models: list[LoadedModel], data: DataConfig) -> ActivationSet:
    """On-the-fly mode: harvest `n_tokens` rows into RAM (nothing written) and return them as an ActivationSet."""
    need = data.n_tokens * C.bytes_per_row(len(models), len(data.hooks), models[0].d_model, data.store_dtype)
    avail = _available_memory()
    if avail is not None and need > 0.8 * avail:
        raise DataError(
            f"on-the-fly harvest needs ~{need / 1e9:.2f} GB of RAM but only {avail / 1e9:.2f} GB is available; "
            "lower data.n_tokens, use data.store_dtype=float16, or set data.on_the_fly=false to use a disk cache"
        )
    manifest = C.new_manifest(models, data, C.identity(models, data), Path("(in memory)"))
    manifest.rebuild = None
    shards: list[dict[str, np.ndarray]] = []
    t0 = time.perf_counter()
    for buf, span in _shard_groups(models, data, 0, 0, 0):
        _keep(shards, manifest, buf, span, data)
    if not shards:
        raise DataError("the text sources yielded no sequences; check data.sources and data.min_seq_len")
    stats = C.total_norm(manifest)
    manifest.complete = True
    manifest.n_rows = sum(e.n_rows for e in manifest.shards)
    manifest.norm = stats.summary(manifest.d_model)
    manifest.harvest = {"seconds_last_run": round(time.perf_counter() - t0, 2)}
    return ActivationSet(ShardedRows(shards, data.store_dtype), manifest, None, data)


def _keep(
    shards: list[dict[str, np.ndarray]],
    manifest: CacheManifest,
    buf: list[HarvestBatch],
    batch_range: tuple[int, int],
    data: DataConfig,
) -> None:
    seq_start = sum(e.n_seqs for e in manifest.shards)
    tensors, n_seqs = C.shard_tensors(buf, seq_start, data.store_dtype)
    manifest.shards.append(C.shard_entry(tensors, len(shards), n_seqs, seq_start, batch_range, data))
    x = tensors["x"].view(torch.uint16) if data.store_dtype == "bfloat16" else tensors["x"]
    shards.append({k: (x if k == "x" else v).numpy() for k, v in tensors.items()})


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
