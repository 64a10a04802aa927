"""The distributed harvest writes the cache one process writes; caches are found from fingerprints, without models.

The ranks' phases (begin on rank 0, each rank's share, finish on rank 0) run here one after another in one process;
tests/test_ddp_pipeline.py runs them in two real processes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from crosscoder.data import DataConfig, prepare_activations
from crosscoder.data import cache as C
from crosscoder.data import distributed_harvest as DH
from crosscoder.data.api import cache_folder
from crosscoder.errors import DataError
from crosscoder.models import load_model, make_tiny_llama
from crosscoder.models.fingerprint import fingerprint, fingerprints

HOOKS = ["blocks.1.hook_resid_post"]


@pytest.fixture(scope="module")
def pair(tiny_spec, tiny_dir: Path):
    ft_spec = make_tiny_llama(tiny_dir / "tiny_ft_dh", seed=1, name="ft")
    return [load_model(tiny_spec), load_model(ft_spec)]


def cfg_for(root: Path, **kw) -> DataConfig:
    base = dict(hooks=HOOKS, n_tokens=1200, seq_len=40, harvest_batch_size=8, sort_window=4, shard_tokens=300,
                cache_root=str(root), norm_sample_tokens=1000)  # fmt: skip
    base.update(kw)
    return DataConfig(**base)  # type: ignore[arg-type]


def harvest_in_phases(models, data: DataConfig, world: int, crash_after: int | None = None) -> Path:
    """Rank 0 begins, every rank harvests its share, rank 0 finishes (`crash_after` rank-0 shards: stop there)."""
    folder, _ = cache_folder(models, data)
    folder.mkdir(parents=True, exist_ok=True)
    plan = DH.plan_shards(models[0].tokenizer, data)
    todo = DH.begin(models, data, folder, plan)
    for rank in range(world):
        mine = todo[rank::world]
        if crash_after is not None:
            DH.harvest_shards(models, data, folder, plan, mine[:crash_after], rank)
            return folder
        DH.harvest_shards(models, data, folder, plan, mine, rank)
    DH.finish(folder, plan, 1.0)
    return folder


def shard_digests(folder: Path) -> list[tuple[int, int, int, str]]:
    m = C.read_manifest(folder)
    return [(e["batch_start"], e["batch_end"], e["n_rows"], e["sha256"]) for e in m["shards"]]


@pytest.mark.parametrize(("n_tokens", "shard_tokens"), [(1200, 300), (10**6, 300)])
def test_plan_is_the_single_process_layout(pair, tmp_path: Path, n_tokens: int, shard_tokens: int) -> None:
    """Cut inside a batch at n_tokens, and (10**6) sources that run out first: the plan is the harvest's layout."""
    texts = tmp_path / "texts.jsonl"
    line = "The cat sat on the mat and the pirate sailed the sea. " * 3
    texts.write_text("".join(json.dumps({"text": f"{i} {line}"}) + "\n" for i in range(60)))
    data = cfg_for(tmp_path, n_tokens=n_tokens, sources=[str(texts)], chat_ratio=0.0, shard_tokens=shard_tokens)
    acts = prepare_activations(pair, data)
    plan = DH.plan_shards(pair[0].tokenizer, data)
    got = [(s.batch_start, s.batch_end, s.seq_start, s.n_seqs, s.n_rows) for s in plan]
    want = [
        (e["batch_start"], e["batch_end"], e["seq_start"], e["n_seqs"], e["n_rows"]) for e in acts.manifest["shards"]
    ]
    assert got == want and len(got) >= 3
    assert (acts.n_rows < n_tokens) == (n_tokens == 10**6)


def test_two_ranks_write_the_single_process_cache(pair, tmp_path: Path) -> None:
    single = prepare_activations(pair, cfg_for(tmp_path / "single"))
    folder = harvest_in_phases(pair, cfg_for(tmp_path / "dist"), world=2)
    assert folder.name == single.path.name  # same identity key
    assert shard_digests(folder) == shard_digests(single.path)  # byte-identical shards, in order
    m, s = C.read_manifest(folder), single.manifest
    assert (
        m["complete"] and m["n_rows"] == s["n_rows"] and m["norm"] == s["norm"] and m["role_counts"] == s["role_counts"]
    )
    assert not (folder / DH.PARTS).exists()  # the per-rank part files are gone once the manifest is final
    C.verify_cache(folder, m)


def test_interrupted_distributed_harvest_resumes(pair, tmp_path: Path) -> None:
    data = cfg_for(tmp_path)
    folder = harvest_in_phases(pair, data, world=2, crash_after=1)  # rank 0 wrote one shard, then the job died
    part = json.loads((folder / DH.PARTS / "rank0.json").read_text())
    assert [r["index"] for r in part] == [0]
    (folder / "shards" / C.shard_name(7)).write_bytes(b"half-written")  # debris the crash left behind
    plan = DH.plan_shards(pair[0].tokenizer, data)
    todo = DH.begin(pair, data, folder, plan)
    assert 0 not in todo and sorted(todo) == list(range(1, len(plan)))  # the finished shard is kept
    assert not (folder / "shards" / C.shard_name(7)).exists()
    for rank in range(2):
        DH.harvest_shards(pair, data, folder, plan, todo[rank::2], rank)
    DH.finish(folder, plan, 1.0)
    single = prepare_activations(pair, cfg_for(tmp_path / "single"))
    assert shard_digests(folder) == shard_digests(single.path)


def test_a_corrupt_part_shard_is_harvested_again(pair, tmp_path: Path) -> None:
    data = cfg_for(tmp_path)
    folder = harvest_in_phases(pair, data, world=2, crash_after=2)
    shard = folder / "shards" / C.shard_name(2)  # rank 0's second shard
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    todo = DH.begin(pair, data, folder, DH.plan_shards(pair[0].tokenizer, data))
    assert 2 in todo and 0 not in todo


def test_finish_refuses_a_missing_shard(pair, tmp_path: Path) -> None:
    data = cfg_for(tmp_path)
    folder, _ = cache_folder(pair, data)
    folder.mkdir(parents=True)
    plan = DH.plan_shards(pair[0].tokenizer, data)
    todo = DH.begin(pair, data, folder, plan)
    DH.harvest_shards(pair, data, folder, plan, todo[0::2], 0)  # rank 1 never ran
    with pytest.raises(DataError, match=r"shard\(s\) \[1\b"):
        DH.finish(folder, plan, 1.0)
    assert not C.read_manifest(folder)["complete"]


def test_fingerprints_find_the_cache_without_loading(pair, tmp_path: Path) -> None:
    data = cfg_for(tmp_path)
    prints = fingerprints([m.spec for m in pair])
    assert prints is not None
    for fp, m in zip(prints, pair, strict=True):
        assert (fp.name, fp.content_hash, fp.d_model, fp.n_layers) == (m.name, m.content_hash, m.d_model, m.n_layers)
    assert cache_folder(prints, data) == cache_folder(pair, data)  # same identity as the loaded models
    assert DH.open_complete_cache(prints, data) is None  # nothing harvested yet
    acts = prepare_activations(pair, data)
    found = DH.open_complete_cache(prints, data)
    assert found is not None and found.path == acts.path and found.n_rows == acts.n_rows
    assert DH.open_complete_cache(prints, replace(data, on_the_fly=True, cache_path=None)) is None


def test_a_cache_built_for_other_models_is_refused_before_loading(pair, tmp_path: Path) -> None:
    data = cfg_for(tmp_path, cache_path=str(tmp_path / "fixed"))
    prepare_activations(pair, data)
    swapped = fingerprints([pair[1].spec, pair[0].spec])
    assert swapped is not None
    with pytest.raises(DataError, match="different model set"):
        DH.open_complete_cache(swapped, data)


def test_fingerprint_of_an_unknown_hub_id_needs_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    from crosscoder.models import ModelSpec

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fingerprint(ModelSpec(source="nobody/no-such-model-xyz", kind="hf")) is None
