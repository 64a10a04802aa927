"""A cache for some of a harvested model set's models, cut out of its cache without running any model.

A checkpoint series base -> c1 -> ... -> cN needs crosscoders fitted on every prefix base..cn (a forecast of n+1
must never see n+1). Every model reads the same tokens in the same batches, so the rows of a prefix's cache are the
series cache's rows restricted to those models: :func:`subset_cache` writes them (with per-shard normalisation sums
and checksums) into the folder a harvest of that model set would use, so `prepare_activations` — and therefore
``python train.py models.models=[...]`` — reuses it instead of running the models again.
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
from crosscoder.errors import DataError
from crosscoder.io import atomic_save_safetensors, cache_dir, sha256_file, sha256_json

log = logging.getLogger(__name__)


def derived_folder(ident: JSON, data: DataConfig, what: str) -> Path:
    """The folder `cache_folder` would use for a cache of identity `ident` (a subset or merge of other caches)."""
    if data.cache_path:
        raise DataError(f"data.cache_path names one folder; {what} need data.cache_root instead")
    root = Path(data.cache_root).expanduser() if data.cache_root else cache_dir("activations")
    return root / sha256_json(ident)[:16]


def verify_shards(folder: Path, manifest: CacheManifest) -> None:
    """Check every shard of `folder` against its manifest entry before a derived cache is written from it."""
    for entry in manifest.shards:
        problem = C.verify_shard(folder, entry)
        if problem:
            raise C.corrupt_error(folder, entry, problem)


def save_derived_shard(dst: Path, entry: ShardEntry, tensors: dict[str, torch.Tensor], x: np.ndarray,
                       norm: NormStats) -> ShardEntry:  # fmt: skip
    """Write one derived shard (row arrays `tensors`, activations `x`, bf16 kept as bf16); its manifest entry."""
    x = np.ascontiguousarray(x)
    tensors["x"] = (
        torch.from_numpy(x) if x.dtype != np.uint16 else torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
    )
    out = dataclasses.replace(entry, norm=norm.to_json())
    atomic_save_safetensors(dst / out.file, tensors)
    out.bytes = (dst / out.file).stat().st_size
    out.sha256 = sha256_file(dst / out.file)
    return out


def subset_folder(manifest: CacheManifest, indices: list[int], data: DataConfig | None = None) -> tuple[Path, JSON]:
    """(folder, identity) of the cache for models `indices` of a cache's model set (as `cache_folder` names it)."""
    ident = {**manifest.identity, "models": [manifest.identity["models"][i] for i in indices]}
    return derived_folder(ident, data or DataConfig(**manifest.data_config), "subsets of a model set"), ident


def _check_indices(manifest: CacheManifest, indices: list[int], folder: Path) -> None:
    n = len(manifest.models)
    if len(indices) < 2 or len(set(indices)) != len(indices) or not all(0 <= i < n for i in indices):
        raise DataError(f"model subset {indices} of cache {folder}: give 2+ distinct indices below {n}")
    if not manifest.complete:
        raise DataError(f"activation cache {folder} is not complete; finish its harvest before taking subsets")


def _subset_entry(src: Path, dst: Path, entry: ShardEntry, idx: list[int]) -> ShardEntry:
    arrays = C.safetensors_arrays(src / entry.file)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items() if k != "x"}
    norm = NormStats.from_json(entry.norm)
    return save_derived_shard(dst, entry, tensors, arrays["x"][:, idx],
                              NormStats(norm.sum_norm_ML[idx], norm.sum_sq_ML[idx], norm.count))  # fmt: skip


def subset_cache(folder: str | Path, indices: list[int], data: DataConfig | None = None) -> Path:
    """Write (or reuse) the cache of models `indices` of the complete cache in `folder`; returns its folder."""
    folder = Path(folder)
    manifest = C.read_manifest(folder)
    _check_indices(manifest, indices, folder)
    target, ident = subset_folder(manifest, indices, data)
    if target == folder:
        return folder
    with C.cache_lock(target):
        if C.holds_complete(target, ident):
            return target
        t0 = time.perf_counter()
        verify_shards(folder, manifest)
        new = dataclasses.replace(
            manifest, identity=ident, key=sha256_json(ident), complete=False, shards=[],
            models=[manifest.models[i] for i in indices], rebuild=C.repair_command(target),
            subset_of={"cache": str(folder), "models": list(indices)}, n_rows=None, n_seqs=None, role_counts=None,
            norm=None,
        )  # fmt: skip
        C.save_manifest(target, new)
        new.shards = [_subset_entry(folder, target, e, indices) for e in manifest.shards]
        C.finalize(target, new, time.perf_counter() - t0)
    log.info("wrote the cache of models %s of %s to %s", indices, folder, target)
    return target
