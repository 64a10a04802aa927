"""A prefix of a harvested model set cut out of its cache equals a harvest of that prefix, and is reused by it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crosscoder.data import DataConfig, prepare_activations
from crosscoder.data import api as data_api
from crosscoder.data import cache as C
from crosscoder.data.subset import subset_cache
from crosscoder.errors import DataError
from crosscoder.models import load_model, make_tiny_llama

HOOKS = ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]


def _cfg(root: Path) -> DataConfig:
    return DataConfig(hooks=HOOKS, n_tokens=1200, seq_len=40, harvest_batch_size=8, sort_window=4, shard_tokens=400,
                      cache_root=str(root), norm_sample_tokens=600)  # fmt: skip


@pytest.fixture(scope="module")
def trio(tiny_spec, tiny_dir: Path):  # type: ignore[no-untyped-def]
    specs = [tiny_spec, *(make_tiny_llama(tiny_dir / f"tiny_series_{i}", seed=10 + i, name=f"c{i}") for i in (1, 2))]
    return [load_model(s) for s in specs]


def test_subset_equals_a_direct_harvest_and_is_reused(trio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    full = prepare_activations(trio, _cfg(tmp_path / "a"))
    assert full.path is not None
    folder = subset_cache(full.path, [0, 2])
    direct = prepare_activations([trio[0], trio[2]], _cfg(tmp_path / "b"))
    sub = data_api.ActivationSet.open(folder)
    assert sub.model_names == ["base", "c2"] == direct.model_names
    assert sub.manifest.identity == direct.manifest.identity
    torch.testing.assert_close(sub.scale_ML, direct.scale_ML)
    a, b = next(sub.iter_rows(5000)), next(direct.iter_rows(5000))
    assert sub.n_rows == direct.n_rows
    torch.testing.assert_close(a.x_BMLD, b.x_BMLD, atol=0, rtol=0)
    assert torch.equal(a.seq_B, b.seq_B) and torch.equal(a.role_B, b.role_B)
    torch.testing.assert_close(a.x_BMLD, next(full.iter_rows(5000)).x_BMLD[:, [0, 2]], atol=0, rtol=0)
    # a harvest of that model set now finds the subset and runs no model
    monkeypatch.setattr(data_api, "_harvest_to_disk", lambda *a, **k: pytest.fail("re-harvested"))
    again = prepare_activations([trio[0], trio[2]], _cfg(tmp_path / "a"))
    assert again.path == folder
    assert subset_cache(full.path, [0, 2]) == folder


def test_subset_refusals(trio, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    full = prepare_activations(trio, _cfg(tmp_path))
    assert full.path is not None
    with pytest.raises(DataError, match="2\\+ distinct indices below 3"):
        subset_cache(full.path, [0, 3])
    with pytest.raises(DataError, match="2\\+ distinct"):
        subset_cache(full.path, [1])
    entry = full.manifest.shards[1]
    (full.path / entry.file).write_bytes(b"broken")
    with pytest.raises(DataError, match="corrupt"):
        subset_cache(full.path, [0, 1])
    manifest = C.read_manifest(full.path)
    manifest.complete = False
    C.save_manifest(full.path, manifest)
    with pytest.raises(DataError, match="not complete"):
        subset_cache(full.path, [0, 1])
