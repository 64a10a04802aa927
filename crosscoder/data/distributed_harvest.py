"""Activation caches shared by the ranks of a DDP job: reuse one without loading any model, or harvest it together.

**Reuse.** `open_complete_cache` finds the cache a model set and data config map to from the models' fingerprints
(content hashes and tokenizer, no weights: crosscoder.models.fingerprint) and opens it when it is complete, so no rank
of a job whose cache exists loads a language model.

**Harvest.** The shard layout of a cache is a pure function of the tokenizer and the data config: every shard ends on
a harvest-batch boundary once it holds ``shard_tokens`` rows, and the last batch is cut to reach ``n_tokens``.
`plan_shards` computes that layout from the token stream alone (no model), exactly as the single-process harvest
(crosscoder.data.api) cuts it. Each of N ranks then harvests every N-th missing shard and writes it under its final
name with its sha256 in a per-rank part file (``parts/rank<r>.json``); rank 0, which holds the cache lock throughout,
verifies every part's checksum, assembles the manifest in shard order and finalises it. The result is the cache one
process would have written (same rows, same shards, same normalisation), so its identity key stays honest. An
interrupted distributed harvest resumes: shards listed in the manifest or in a part file whose checksum still
matches are kept.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crosscoder.data import cache as C
from crosscoder.data.api import ActivationSet, cache_folder
from crosscoder.data.config import DataConfig
from crosscoder.data.harvest import HarvestBatch, check_models, harvest_batch, pad_token_id
from crosscoder.data.manifest import ShardEntry
from crosscoder.data.sources import batch_stream
from crosscoder.errors import DataError
from crosscoder.io import atomic_write_json, read_json
from crosscoder.models.fingerprint import ModelIdentity
from crosscoder.models.load import LoadedModel

log = logging.getLogger(__name__)
PARTS = "parts"
TODO = "todo.json"


@dataclass(frozen=True)
class ShardSpan:
    """One shard of the cache layout: its harvest batches and the rows and sequences they hold."""

    index: int
    batch_start: int
    batch_end: int
    """One past the last harvest batch."""
    keep_last: int
    """Sequences kept from the last batch (all of them unless the harvest stops inside it)."""
    seq_start: int
    n_seqs: int
    n_rows: int


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job, and a barrier across all its processes."""

    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = lambda: None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def open_complete_cache(models: Sequence[ModelIdentity], data: DataConfig, verify: bool = True) -> ActivationSet | None:
    """The complete cache for this model set and config (checksums verified unless `verify` is false), or None.

    A cache at the same place built for something else is refused, as `prepare_activations` refuses it.
    """
    if data.on_the_fly:
        return None
    folder, ident = cache_folder(models, data)
    if not (folder / C.MANIFEST).is_file():
        return None
    manifest = C.read_manifest(folder)
    if manifest.identity != ident:
        raise DataError(
            f"activation cache {folder} was built for a different {C.describe_difference(manifest.identity, ident)}; "
            "it is never reused: delete the folder or choose another data.cache_path"
        )
    if not manifest.complete:
        return None
    log.info("reusing activation cache %s (no model loaded)", folder)
    return ActivationSet.open(folder, data, verify=verify)


def plan_shards(tokenizer: Any, data: DataConfig) -> list[ShardSpan]:
    """The cache's shard layout, from the token stream alone (the single-process harvest cuts the same shards)."""
    spans: list[ShardSpan] = []
    done = buf_rows = buf_seqs = seq = buf_start = 0
    last, keep = -1, 0
    for i, seqs in enumerate(batch_stream(tokenizer, data)):
        if done >= data.n_tokens:
            break
        lengths = np.cumsum([len(s.ids) for s in seqs])
        keep = len(seqs)
        if lengths[-1] > data.n_tokens - done:
            keep = int(np.searchsorted(lengths, data.n_tokens - done)) + 1
        rows, last = int(lengths[keep - 1]), i
        done, buf_rows, buf_seqs = done + rows, buf_rows + rows, buf_seqs + keep
        if buf_rows >= data.shard_tokens or done >= data.n_tokens:
            spans.append(ShardSpan(len(spans), buf_start, i + 1, keep, seq, buf_seqs, buf_rows))
            seq, buf_start, buf_rows, buf_seqs = seq + buf_seqs, i + 1, 0, 0
    if buf_rows:  # the sources ran out before n_tokens: the rest is the last shard
        spans.append(ShardSpan(len(spans), buf_start, last + 1, keep, seq, buf_seqs, buf_rows))
    if not spans:
        raise DataError("the text sources yielded no sequences; check data.sources and data.min_seq_len")
    return spans


def _part_path(folder: Path, rank: int) -> Path:
    return folder / PARTS / f"rank{rank}.json"


def _verified_parts(folder: Path) -> dict[int, ShardEntry]:
    """Shard entries of the part files whose shard files still match their recorded size and sha256."""
    out: dict[int, ShardEntry] = {}
    parts = folder / PARTS
    for path in sorted(parts.glob("rank*.json")) if parts.is_dir() else []:
        for rec in read_json(path):
            entry = ShardEntry.from_json(rec["entry"])
            problem = C.verify_shard(folder, entry)
            if problem:
                log.warning("ignoring shard %s from %s (%s)", entry.file, path.name, problem)
            else:
                out[int(rec["index"])] = entry
    return out


def begin(models: Sequence[LoadedModel], data: DataConfig, folder: Path, plan: list[ShardSpan]) -> list[int]:
    """Rank 0, under the cache lock: create or resume the manifest, keep verified shards, list the missing ones."""
    ident = C.identity(models, data)
    if (folder / C.MANIFEST).is_file():
        manifest = C.read_manifest(folder)
        if manifest.identity != ident:
            raise DataError(
                f"activation cache {folder} was built for a different "
                f"{C.describe_difference(manifest.identity, ident)}; delete the folder or choose another data.cache_path"
            )
        good = []
        for entry, span in zip(manifest.shards, plan, strict=False):  # the verified prefix that fits the plan
            fits = (entry.batch_start, entry.batch_end, entry.n_rows) == (
                span.batch_start,
                span.batch_end,
                span.n_rows,
            )
            if not fits or C.verify_shard(folder, entry):
                break
            good.append(entry)
        manifest.shards = good
    else:
        stray = [p.name for p in folder.iterdir() if p.name not in (".lock", "shards", PARTS)]
        if stray:
            raise DataError(
                f"{folder} is not empty and holds no activation cache ({stray[0]}...); choose an empty or new data.cache_path"
            )
        manifest = C.new_manifest(list(models), data, ident, folder)
    done = set(range(len(manifest.shards))) | set(_verified_parts(folder))
    keep = {Path(e.file).name for e in manifest.shards} | {C.shard_name(i) for i in done}
    shard_dir = folder / "shards"
    for p in shard_dir.iterdir() if shard_dir.is_dir() else []:
        if p.name not in keep:
            p.unlink()
    C.save_manifest(folder, manifest)
    todo = [s.index for s in plan if s.index not in done]
    atomic_write_json(folder / PARTS / TODO, {"n_shards": len(plan), "todo": todo})
    return todo


def harvest_shards(
    models: Sequence[LoadedModel], data: DataConfig, folder: Path, plan: list[ShardSpan], indices: list[int], rank: int
) -> None:
    """Harvest the shards `indices` of `plan` into `folder`, recording each in this rank's part file."""
    mine = {i: plan[i] for i in indices}
    if not mine:
        return
    by_batch = {b: s for s in mine.values() for b in range(s.batch_start, s.batch_end)}
    part = _part_path(folder, rank)
    records = read_json(part) if part.is_file() else []
    pad = pad_token_id(models[0].tokenizer)
    buf: list[HarvestBatch] = []
    t0, rows = time.perf_counter(), 0
    last = max(s.batch_end for s in mine.values())
    for b, seqs in enumerate(itertools.islice(batch_stream(models[0].tokenizer, data), last)):
        span = by_batch.get(b)
        if span is None:
            continue
        if b == span.batch_end - 1:
            seqs = seqs[: span.keep_last]
        seq0 = span.seq_start + sum(x.n_seqs for x in buf)
        buf.append(harvest_batch(list(models), data.hooks, seqs, pad, data.check_finite, seq_offset=seq0))
        if b == span.batch_end - 1:
            entry = C.write_shard(folder, span.index, buf, span.seq_start, (span.batch_start, span.batch_end), data)
            if entry.n_rows != span.n_rows:
                raise DataError(
                    f"shard {span.index} has {entry.n_rows} rows, the plan {span.n_rows}: the text sources changed "
                    "during the harvest; delete the cache folder and harvest again"
                )
            records.append({"index": span.index, "entry": entry.to_json()})
            atomic_write_json(part, records)
            rows += entry.n_rows
            log.info("rank %d: shard %d written (%.0f tokens/s)", rank, span.index, rows / (time.perf_counter() - t0))
            buf = []


def finish(folder: Path, plan: list[ShardSpan], seconds: float) -> None:
    """Rank 0: assemble the manifest from the verified shards of every rank, in order, and mark it complete."""
    manifest = C.read_manifest(folder)
    by_index = dict(enumerate(manifest.shards)) | _verified_parts(folder)
    missing = [s.index for s in plan if s.index not in by_index]
    if missing:
        raise DataError(
            f"activation cache {folder}: shard(s) {missing[:5]} were not written by their rank; "
            "run the job again to resume the harvest"
        )
    manifest.shards = [by_index[s.index] for s in plan]
    C.finalize(folder, manifest, seconds)
    for path in (folder / PARTS).iterdir():
        path.unlink()
    (folder / PARTS).rmdir()


def harvest_distributed(models: Sequence[LoadedModel], data: DataConfig, ranks: Ranks) -> ActivationSet:
    """Harvest the cache of `models` with every rank of the job (each its share of the shards); all ranks call it."""
    check_models(list(models), data.hooks)
    folder, _ = cache_folder(models, data)
    folder.mkdir(parents=True, exist_ok=True)
    plan = plan_shards(models[0].tokenizer, data)
    row_bytes = C.bytes_per_row(len(models), len(data.hooks), models[0].d_model, data.store_dtype)
    C.check_disk(folder, sum(s.n_rows for s in plan), row_bytes, data.min_free_gb)
    t0 = time.perf_counter()
    with C.cache_lock(folder) if ranks.is_main else nullcontext():
        if ranks.is_main:
            begin(models, data, folder, plan)
        ranks.barrier()
        todo = read_json(folder / PARTS / TODO)["todo"] if (folder / PARTS / TODO).is_file() else []
        harvest_shards(models, data, folder, plan, todo[ranks.rank :: ranks.world_size], ranks.rank)
        ranks.barrier()
        if ranks.is_main:
            finish(folder, plan, time.perf_counter() - t0)
        ranks.barrier()
    log.info("distributed harvest of %s: %d shards over %d ranks", folder, len(plan), ranks.world_size)
    return ActivationSet.open(folder, data, verify=False)
