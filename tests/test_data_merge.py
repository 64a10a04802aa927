"""Caches of single models harvested on the same tokens, merged, equal a harvest of the whole set, and are reused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crosscoder.data import DataConfig, prepare_activations
from crosscoder.data import api as data_api
from crosscoder.data import cache as C
from crosscoder.data.merge import merge_caches
from crosscoder.errors import DataError
from crosscoder.models import load_model, make_tiny_llama

HOOKS = ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]


def _cfg(root: Path, n_tokens: int = 1200) -> DataConfig:
    return DataConfig(hooks=HOOKS, n_tokens=n_tokens, seq_len=40, harvest_batch_size=8, sort_window=4,
                      shard_tokens=400, cache_root=str(root), norm_sample_tokens=600)  # fmt: skip


@pytest.fixture(scope="module")
def trio(tiny_spec, tiny_dir: Path):  # type: ignore[no-untyped-def]
    specs = [tiny_spec, *(make_tiny_llama(tiny_dir / f"tiny_merge_{i}", seed=20 + i, name=f"c{i}") for i in (1, 2))]
    return [load_model(s) for s in specs]


def test_merge_equals_a_joint_harvest_and_is_reused(trio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    parts = [prepare_activations([m], _cfg(tmp_path / "a")).path for m in trio]
    assert all(p is not None for p in parts) and len(set(parts)) == 3
    folder = merge_caches([p for p in parts if p is not None])
    joint = prepare_activations(trio, _cfg(tmp_path / "b"))
    merged = data_api.ActivationSet.open(folder)
    assert merged.model_names == ["base", "c1", "c2"] == joint.model_names
    assert merged.manifest.identity == joint.manifest.identity
    assert len(merged.manifest.shards) == len(joint.manifest.shards) > 1
    torch.testing.assert_close(merged.scale_ML, joint.scale_ML, atol=0, rtol=0)
    a, b = next(merged.iter_rows(5000)), next(joint.iter_rows(5000))
    assert merged.n_rows == joint.n_rows
    torch.testing.assert_close(a.x_BMLD, b.x_BMLD, atol=0, rtol=0)
    assert torch.equal(a.seq_B, b.seq_B) and torch.equal(a.role_B, b.role_B)
    # a harvest of that model set now finds the merged cache and runs no model; merging again writes nothing
    monkeypatch.setattr(data_api, "_harvest_to_disk", lambda *a, **k: pytest.fail("re-harvested"))
    again = prepare_activations(trio, _cfg(tmp_path / "a"))
    assert again.path == folder
    monkeypatch.setattr(C, "finalize", lambda *a, **k: pytest.fail("merged twice"))
    assert merge_caches([p for p in parts if p is not None]) == folder


def test_merge_refusals(trio, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = prepare_activations([trio[0]], _cfg(tmp_path / "a")).path
    b = prepare_activations([trio[1]], _cfg(tmp_path / "a")).path
    other = prepare_activations([trio[1]], _cfg(tmp_path / "a", n_tokens=800)).path
    assert a is not None and b is not None and other is not None
    with pytest.raises(DataError, match="needs 2 or more"):
        merge_caches([a])
    with pytest.raises(DataError, match=f"{other} was harvested with another data config"):
        merge_caches([a, other])
    entry = C.read_manifest(b).shards[1]
    (b / entry.file).write_bytes(b"broken")
    with pytest.raises(DataError, match="corrupt"):
        merge_caches([a, b])
    manifest = C.read_manifest(b)
    manifest.complete = False
    C.save_manifest(b, manifest)
    with pytest.raises(DataError, match="not complete"):
        merge_caches([a, b])
