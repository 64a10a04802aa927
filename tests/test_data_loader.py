"""Loader: every row exactly once per epoch, full batches only, determinism, exact resume, disjoint ranks, weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crosscoder.data import DataConfig, Role
from crosscoder.data.api import ActivationSet
from crosscoder.data.loader import BatchIterator, EpochPlan, ShardedRows
from crosscoder.data.manifest import CacheManifest, ModelRecord, ShardEntry


def make_set(n_rows: int = 1000, shard_rows: int = 137, **data_kw) -> ActivationSet:
    """A set whose x encodes each row's global index, spread over uneven shards; every 10th row is a sink."""
    shards, manifest_shards = [], []
    for a in range(0, n_rows, shard_rows):
        b = min(a + shard_rows, n_rows)
        idx = np.arange(a, b)
        x = np.zeros((b - a, 2, 1, 4), dtype=np.float32)
        x[..., 0] = idx[:, None, None]
        role = np.where(
            idx % 10 == 0, int(Role.SINK), np.where(idx % 3 == 0, int(Role.ASSISTANT), int(Role.TEXT))
        ).astype(np.int8)
        seq = idx // 10
        pos = (idx % 10).astype(np.int32)
        turn_idx = np.where(role == int(Role.ASSISTANT), pos, -1).astype(np.int32)
        shards.append(
            {"x": x, "seq": seq, "pos": pos, "token": pos, "role": role, "turn_idx": turn_idx, "turn_rem": turn_idx}
        )
        n_seqs = int(seq[-1] - seq[0] + 1)
        manifest_shards.append(ShardEntry(f"s{a}", b - a, n_seqs, int(seq[0]), 0, 0, {}, {}))
    manifest = CacheManifest(format="test", version=1, key="test", complete=True, identity={},
                             models=[ModelRecord(n, {}, "", 4, 1) for n in ("a", "b")], hooks=["h"], d_model=4,
                             dtype="float32", layout="", data_config={}, sources=[], shards=manifest_shards,
                             norm={"scale_ML": [[1.0], [1.0]]})  # fmt: skip
    return ActivationSet(ShardedRows(shards, "float32"), manifest, None, DataConfig(**data_kw))


def ids(x_BMLD: torch.Tensor) -> np.ndarray:
    return x_BMLD[:, 0, 0, 0].long().numpy()


def test_every_row_exactly_once_per_epoch_with_full_batches() -> None:
    acts = make_set()
    train = set(np.flatnonzero(np.arange(1000) % 10 != 0).tolist())
    assert acts.n_train_rows == len(train) == 900
    it = acts.batches(batch_size=64, seed=0)
    n_batches = 3 * 900 // 64 + 1
    seen = []
    for _ in range(n_batches):
        x = next(it)
        assert x.shape == (64, 2, 1, 4) and x.dtype == torch.float32  # never empty, never partial
        seen.extend(ids(x).tolist())
    for e in range(3):  # each epoch's block of 900 rows is a permutation of the training rows
        block = seen[e * 900 : (e + 1) * 900]
        assert sorted(block) == sorted(train)
    assert it.tokens == n_batches * 64 and it.step == n_batches


def test_deterministic_per_seed_and_epochs_reshuffled() -> None:
    a = [ids(x) for x, _ in zip(make_set().batches(100, seed=1), range(20), strict=False)]
    b = [ids(x) for x, _ in zip(make_set().batches(100, seed=1), range(20), strict=False)]
    c = [ids(x) for x, _ in zip(make_set().batches(100, seed=2), range(20), strict=False)]
    assert all((p == q).all() for p, q in zip(a, b, strict=True))
    assert any((p != q).any() for p, q in zip(a, c, strict=True))
    plan = EpochPlan(np.arange(50), None, seed=0)
    assert not (plan.epoch(0) == plan.epoch(1)).all()


def test_start_step_resumes_exactly() -> None:
    acts = make_set()
    full = [ids(x) for x, _ in zip(acts.batches(128, seed=5), range(25), strict=False)]
    resumed = [ids(x) for x, _ in zip(acts.batches(128, seed=5, start_step=17), range(8), strict=False)]
    for p, q in zip(full[17:], resumed, strict=True):
        assert (p == q).all()


def test_ranks_get_disjoint_slices_of_the_global_batch() -> None:
    acts = make_set()
    single = [ids(x) for x, _ in zip(acts.batches(60, seed=0), range(10), strict=False)]
    r0 = [ids(x) for x, _ in zip(acts.batches(30, seed=0, rank=0, world_size=2), range(10), strict=False)]
    r1 = [ids(x) for x, _ in zip(acts.batches(30, seed=0, rank=1, world_size=2), range(10), strict=False)]
    for s, a, b in zip(single, r0, r1, strict=True):
        assert not set(a) & set(b)
        assert sorted(np.concatenate([a, b])) == sorted(s)


def test_assistant_weight_repeats_rows_per_epoch() -> None:
    acts = make_set(assistant_weight=2.0)
    role = np.concatenate([s["role"] for s in acts.rows.shards])
    asst = np.flatnonzero(role == int(Role.ASSISTANT))
    epoch_len = acts.n_train_rows + asst.size
    it = acts.batches(epoch_len, seed=0)  # one batch = exactly one epoch
    counts = np.bincount(ids(next(it)), minlength=1000)
    assert (counts[asst] == 2).all()
    other = np.setdiff1d(acts.train_rows, asst)
    assert (counts[other] == 1).all() and (counts[role == int(Role.SINK)] == 0).all()
    frac = make_set(assistant_weight=1.5)
    x = next(frac.batches(10_000, seed=0))
    c = np.bincount(ids(x)[: frac.batches(1, seed=0).plan.epoch_len(0)], minlength=1000)
    assert set(np.unique(c[asst])) <= {1, 2} and 0.3 < (c[asst] == 2).mean() < 0.7


def test_bad_arguments() -> None:
    rows = make_set().rows
    plan = EpochPlan(np.arange(10), None, 0)
    with pytest.raises(ValueError):
        BatchIterator(rows, plan, 0)
    with pytest.raises(ValueError):
        BatchIterator(rows, plan, 4, rank=2, world_size=2)


def test_iter_rows_in_order_with_masks() -> None:
    acts = make_set(exclude_template=True)
    got = torch.cat([ids(rb.x_BMLD) if False else rb.x_BMLD[:, 0, 0, 0] for rb in acts.iter_rows(64)]).long()
    assert got.tolist() == list(range(1000))
    masks = torch.cat([rb.train_mask_B for rb in acts.iter_rows(64)])
    assert masks.sum().item() == 900
    assert acts.sequence_roles(3)[0] == Role.SINK and len(acts.sequence_tokens(3)) == 10
