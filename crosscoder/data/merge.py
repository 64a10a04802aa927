"""The cache of a model set assembled from caches of its parts, harvested separately on the same tokens.

The inverse of `crosscoder.data.subset`. Caches harvested with one data config (same sources, tokenizer, hooks,
n_tokens, batch size) read the same tokens in the same batches whatever the model, so the cache of the models
a + b is the rows of a's cache beside b's: :func:`merge_caches` writes them (per-shard normalisation sums joined along
the model axis, checksums) into the folder a harvest of a + b would use, so `prepare_activations` reuses it. A model
shared by many sets (the base of every checkpoint series) is harvested once and its cache joined to each.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch

from crosscoder.data import cache as C
from crosscoder.data.config import DataConfig
from crosscoder.data.manifest import JSON, CacheManifest, ShardEntry
from crosscoder.data.normalize import NormStats
from crosscoder.data.subset import derived_folder, save_derived_shard, verify_shards
from crosscoder.errors import DataError
from crosscoder.io import sha256_json

log = logging.getLogger(__name__)

LAYOUT_FIELDS = ("n_rows", "n_seqs", "seq_start", "batch_start", "batch_end", "role_counts")
"""Shard entry fields every part must share (the same tokens in the same harvest batches)."""
ROW_KEYS = ("seq", "pos", "token", "role")
"""Row arrays every part must hold identically."""


def merged_folder(manifests: list[CacheManifest], data: DataConfig | None = None) -> tuple[Path, JSON]:
    """(folder, identity) of the cache of all the parts' models, as `cache_folder` names it."""
    ident = {**manifests[0].identity, "models": [m for man in manifests for m in man.identity["models"]]}
    return derived_folder(ident, data or DataConfig(**manifests[0].data_config), "merged caches"), ident


def _layout(man: CacheManifest) -> list[object]:
    return [man.dtype, man.d_model, man.hooks, *([getattr(e, f) for f in LAYOUT_FIELDS] for e in man.shards)]


def check_parts(folders: list[Path], manifests: list[CacheManifest]) -> None:
    """Refuse parts that are incomplete or were not harvested on the same tokens, naming the first that differs."""
    if len(folders) < 2:
        raise DataError(f"merging activation caches needs 2 or more (got {len(folders)})")
    first = manifests[0]
    for folder, man in zip(folders, manifests, strict=True):
        if not man.complete:
            raise DataError(f"activation cache {folder} is not complete; finish its harvest before merging it")
        rest, want = ({k: v for k, v in i.items() if k != "models"} for i in (man.identity, first.identity))
        if rest != want:
            diff = C.describe_difference(want, rest)
            raise DataError(f"activation cache {folder} was harvested with another {diff} than {folders[0]}")
        if _layout(man) != _layout(first):
            raise DataError(f"activation cache {folder}: its shards differ from {folders[0]}'s; harvest both again")


def _merge_shard(parts: list[tuple[Path, ShardEntry]], dst: Path) -> ShardEntry:
    arrays = [C.safetensors_arrays(folder / entry.file) for folder, entry in parts]
    for (folder, entry), arr in zip(parts[1:], arrays[1:], strict=True):
        if any(not np.array_equal(arr[k], arrays[0][k]) for k in ROW_KEYS):
            raise DataError(f"{folder / entry.file}: its tokens differ from {parts[0][0] / entry.file}'s")
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in arrays[0].items() if k != "x"}
    norms = [NormStats.from_json(e.norm) for _, e in parts]
    if len({n.count for n in norms}) != 1:
        raise DataError(f"{parts[0][1].file}: the parts' normalisation samples differ; harvest them again")
    norm = NormStats(np.concatenate([n.sum_norm_ML for n in norms]), np.concatenate([n.sum_sq_ML for n in norms]),
                     norms[0].count)  # fmt: skip
    return save_derived_shard(dst, parts[0][1], tensors, np.concatenate([a["x"] for a in arrays], axis=1), norm)


def merge_caches(folders: list[str | Path], data: DataConfig | None = None) -> Path:
    """Write (or reuse) the cache of the models of all `folders` (complete caches of the same tokens), in order."""
    paths = [Path(f) for f in folders]
    manifests = [C.read_manifest(p) for p in paths]
    check_parts(paths, manifests)
    target, ident = merged_folder(manifests, data)
    with C.cache_lock(target):
        if C.holds_complete(target, ident):
            return target
        t0 = time.perf_counter()
        for p, man in zip(paths, manifests, strict=True):
            verify_shards(p, man)
        new = dataclasses.replace(
            manifests[0], identity=ident, key=sha256_json(ident), complete=False, shards=[],
            models=[m for man in manifests for m in man.models], rebuild=C.repair_command(target),
            harvest={"merged_from": [str(p) for p in paths]}, n_rows=None, n_seqs=None, role_counts=None, norm=None,
            subset_of=None,
        )  # fmt: skip
        C.save_manifest(target, new)
        new.shards = [_merge_shard([(p, m.shards[i]) for p, m in zip(paths, manifests, strict=True)], target)
                      for i in range(len(manifests[0].shards))]  # fmt: skip
        C.finalize(target, new, time.perf_counter() - t0)
    log.info("merged the caches of %d model sets into %s", len(paths), target)
    return target
