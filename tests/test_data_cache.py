"""Harvest + cache on tiny models: round trip, resume after a crash, corruption, mismatch refusal, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from crosscoder.data import ActivationSet, DataConfig, Role, prepare_activations
from crosscoder.data import api as data_api
from crosscoder.data import cache as C
from crosscoder.errors import DataError, ModelError, NumericsError
from crosscoder.models import load_model, make_tiny_llama

HOOKS = ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]


@pytest.fixture(scope="module")
def pair(tiny_spec, tiny_dir: Path):
    ft_spec = make_tiny_llama(tiny_dir / "tiny_ft_data", seed=1, name="ft")
    return [load_model(tiny_spec), load_model(ft_spec)]


def cfg_for(root: Path, **kw) -> DataConfig:
    base = dict(
        hooks=HOOKS,
        n_tokens=2000,
        seq_len=40,
        harvest_batch_size=8,
        sort_window=4,
        shard_tokens=500,
        cache_root=str(root),
        norm_sample_tokens=1000,
    )
    base.update(kw)
    return DataConfig(**base)  # type: ignore[arg-type]


def all_rows(acts: ActivationSet) -> dict[str, torch.Tensor]:
    parts: dict[str, list[torch.Tensor]] = {}
    for rb in acts.iter_rows(500):
        for k, v in vars(rb).items():
            parts.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


def test_round_trip_matches_direct_forward(pair, tmp_path: Path) -> None:
    acts = prepare_activations(pair, cfg_for(tmp_path))
    assert 2000 <= acts.n_rows < 2000 + 40
    assert acts.hooks == HOOKS and acts.model_names == ["base", "ft"] and acts.d_model == 64
    m = acts.manifest
    assert m.complete and [r.content_hash for r in m.models] == [p.content_hash for p in pair]
    assert sum(e.n_rows for e in m.shards) == acts.n_rows and len(m.shards) >= 4
    assert all(len(e.sha256 or "") == 64 for e in m.shards)
    rows = all_rows(acts)
    assert rows["x_BMLD"].shape == (acts.n_rows, 2, 2, 64)
    # every stored row of sequence 5 equals a plain, unpadded full forward of each model on its tokens
    tokens = acts.sequence_tokens(5)
    sel = rows["seq_B"] == 5
    assert rows["pos_B"][sel].tolist() == list(range(len(tokens)))
    for mi, model in enumerate(pair):
        _, cache = model.tl.run_with_cache(torch.tensor([tokens]))
        for li, hook in enumerate(HOOKS):
            torch.testing.assert_close(rows["x_BMLD"][sel][:, mi, li], cache[hook][0], rtol=1e-5, atol=1e-5)
    # masks: position 0 is the sink and never trained on; sinks are exactly the first positions
    assert ((rows["pos_B"] == 0) == (rows["role_B"] == int(Role.SINK))).all()
    assert not rows["train_mask_B"][rows["role_B"] == int(Role.SINK)].any()
    assert acts.n_train_rows == int(rows["train_mask_B"].sum())
    # scale makes the mean norm sqrt(d) on non-sink rows (sample = all rows here, up to the sample rate)
    keep = rows["role_B"] != int(Role.SINK)
    norms = (rows["x_BMLD"][keep] * acts.scale_ML[None, :, :, None]).norm(dim=-1).mean(0)
    torch.testing.assert_close(norms, torch.full((2, 2), 8.0), rtol=0.05, atol=0)
    # reopen from disk: identical
    again = ActivationSet.open(acts.path)
    torch.testing.assert_close(all_rows(again)["x_BMLD"], rows["x_BMLD"], rtol=0, atol=0)
    # a second prepare reuses the cache instead of harvesting
    assert prepare_activations(pair, cfg_for(tmp_path)).path == acts.path


def test_roles_trace_back_to_text(pair, tmp_path: Path) -> None:
    acts = prepare_activations(pair, cfg_for(tmp_path, chat_ratio=1.0, n_tokens=800))
    tok = pair[0].tokenizer
    found_assistant = False
    for seq in range(acts.n_seqs):
        ids, roles = acts.sequence_tokens(seq), acts.sequence_roles(seq)
        assert roles[0] == Role.SINK and len(ids) == len(roles)
        text = tok.decode(ids)
        assert "<|im_start|>" in text
        asst = [t for t, r in zip(ids, roles, strict=True) if r == Role.ASSISTANT]
        if asst:
            found_assistant = True
            assert tok.decode(asst).strip() in text
    assert found_assistant


def test_resume_after_crash_mid_shard(pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = prepare_activations(pair, cfg_for(tmp_path / "ref"))
    calls = {"n": 0}
    real = data_api.harvest_batch

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # several shards written, the current one half full
            raise KeyboardInterrupt("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(data_api, "harvest_batch", crashing)
    cfg = cfg_for(tmp_path / "crash")
    with pytest.raises(KeyboardInterrupt):
        prepare_activations(pair, cfg)
    folder = next((tmp_path / "crash").iterdir())
    partial = C.read_manifest(folder)
    assert not partial.complete and 1 <= len(partial.shards) < len(reference.manifest.shards)
    with pytest.raises(DataError, match="incomplete"):
        ActivationSet.open(folder)
    (folder / "shards" / ".shard_99999.safetensors.tmp").write_bytes(b"junk")  # debris of a crashed write
    monkeypatch.setattr(data_api, "harvest_batch", real)
    calls["n"] = 0
    monkeypatch.setattr(
        data_api, "harvest_batch", lambda *a, **k: (calls.__setitem__("n", calls["n"] + 1), real(*a, **k))[1]
    )
    resumed = prepare_activations(pair, cfg)
    total_batches = reference.manifest.shards[-1].batch_end
    assert calls["n"] == total_batches - partial["shards"][-1]["batch_end"]  # only the missing batches ran
    assert [e.sha256 for e in resumed.manifest.shards] == [e.sha256 for e in reference.manifest.shards]
    assert resumed.manifest.norm == reference.manifest.norm
    assert not (folder / "shards" / ".shard_99999.safetensors.tmp").exists()


def test_corrupt_shard_named_and_repaired(pair, tmp_path: Path) -> None:
    acts = prepare_activations(pair, cfg_for(tmp_path))
    entry = acts.manifest.shards[2]
    path = acts.path / entry.file
    good = path.read_bytes()
    blob = bytearray(good)
    blob[-100] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError) as err:
        ActivationSet.open(acts.path)
    msg = str(err.value)
    assert (
        "shard_00002.safetensors" in msg
        and f"python -m crosscoder.data.cache repair {acts.path}" in msg
        and "\n" not in msg
    )
    with pytest.raises(DataError, match="shard_00002"):
        prepare_activations(pair, cfg_for(tmp_path))  # a complete but corrupt cache is never used
    fixed = C.repair(acts.path)
    assert fixed == [entry.file] and path.read_bytes() == good
    assert ActivationSet.open(acts.path).n_rows == acts.n_rows


def test_cli_reports_corruption_in_one_line(pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    acts = prepare_activations(pair, cfg_for(tmp_path, n_tokens=800))
    path = acts.path / acts.manifest.shards[0].file
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    monkeypatch.setattr("sys.argv", ["cache", "verify", str(acts.path)])
    capsys.readouterr()  # drop the harvest's progress output
    with pytest.raises(SystemExit) as exit_info:
        C.run_cli(C.main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "shard_00000.safetensors" in err and "repair" in err


def test_mismatched_cache_refused(pair, tmp_path: Path) -> None:
    where = str(tmp_path / "fixed")
    prepare_activations(pair, cfg_for(tmp_path, cache_path=where, n_tokens=500))
    with pytest.raises(DataError, match="hooks"):
        prepare_activations(pair, cfg_for(tmp_path, cache_path=where, n_tokens=500, hooks=["blocks.3.hook_resid_post"]))
    with pytest.raises(DataError, match="model set"):
        prepare_activations([pair[1], pair[0]], cfg_for(tmp_path, cache_path=where, n_tokens=500))
    with pytest.raises(DataError, match="chat_ratio"):
        prepare_activations(pair, cfg_for(tmp_path, cache_path=where, n_tokens=500, chat_ratio=0.2))
    # keyed folders: a different config gets its own folder instead
    a = prepare_activations(pair, cfg_for(tmp_path, n_tokens=500))
    b = prepare_activations(pair, cfg_for(tmp_path, n_tokens=500, seed=1))
    assert a.path != b.path


def test_bad_hook_lists_valid_names(pair, tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        prepare_activations(pair, cfg_for(tmp_path, hooks=["blocks.9.hook_resid_post"]))
    assert "blocks.9.hook_resid_post" in str(err.value) and "blocks.0..3.hook_resid_pre" in str(err.value)


def test_mismatched_tokenizers_refused(pair, tiny_dir: Path, tmp_path: Path) -> None:
    other = load_model(make_tiny_llama(tiny_dir / "tiny_vocab300", seed=2, vocab_size=300, name="other"))
    with pytest.raises(ModelError, match="tokenizer"):
        prepare_activations([pair[0], other], cfg_for(tmp_path))


def test_nan_reports_model_and_position(tiny_dir: Path, tmp_path: Path, pair) -> None:
    broken = load_model(make_tiny_llama(tiny_dir / "tiny_nan", seed=3, name="broken"))
    with torch.no_grad():
        broken.hf.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    with pytest.raises(NumericsError, match=r"model broken at sequence \d+ position \d+"):
        prepare_activations([pair[0], broken], cfg_for(tmp_path))


def test_disk_estimate_refuses_when_full(pair, tmp_path: Path, capsys) -> None:
    with pytest.raises(DataError, match="not enough disk"):
        prepare_activations(pair, cfg_for(tmp_path, min_free_gb=1e9))
    assert "activation cache needs" in capsys.readouterr().out


def test_on_the_fly_equals_disk(pair, tmp_path: Path) -> None:
    disk = prepare_activations(pair, cfg_for(tmp_path, n_tokens=1200))
    mem = prepare_activations(
        pair, cfg_for(tmp_path, n_tokens=1200, on_the_fly=True, cache_root=str(tmp_path / "unused"))
    )
    assert mem.path is None and not (tmp_path / "unused").exists()
    a, b = all_rows(disk), all_rows(mem)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    torch.testing.assert_close(mem.scale_ML, disk.scale_ML)
    x1 = next(disk.batches(64, seed=3))
    x2 = next(mem.batches(64, seed=3))
    assert torch.equal(x1, x2)


def test_harvest_is_deterministic_and_fp16_storage(pair, tmp_path: Path) -> None:
    a = prepare_activations(pair, cfg_for(tmp_path / "a", n_tokens=600))
    b = prepare_activations(pair, cfg_for(tmp_path / "b", n_tokens=600))
    assert [e.sha256 for e in a.manifest.shards] == [e.sha256 for e in b.manifest.shards]
    h = prepare_activations(pair, cfg_for(tmp_path / "h", n_tokens=600, store_dtype="float16"))
    xa, xh = all_rows(a)["x_BMLD"], all_rows(h)["x_BMLD"]
    assert xh.dtype == torch.float32
    torch.testing.assert_close(xh, xa, rtol=2e-3, atol=2e-3)
    assert h.manifest.dtype == "float16" and np.isclose(
        sum(e.bytes or 0 for e in h.manifest.shards), sum(e.bytes or 0 for e in a.manifest.shards) / 2, rtol=0.1
    )


def test_exclusion_options_change_training_rows_not_cache(pair, tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, n_tokens=1000)
    acts = prepare_activations(pair, cfg)
    no_template = prepare_activations(pair, replace(cfg, exclude_template=True))
    with_sink = prepare_activations(pair, replace(cfg, exclude_first_position=False))
    assert no_template.path == acts.path == with_sink.path
    counts = {int(k): v for k, v in (acts.manifest.role_counts or {}).items()}
    assert acts.n_train_rows == acts.n_rows - counts[Role.SINK]
    assert no_template.n_train_rows == acts.n_train_rows - counts[Role.TEMPLATE]
    assert with_sink.n_train_rows == acts.n_rows


def test_manifest_reads_back_through_its_record(pair, tmp_path: Path) -> None:
    from crosscoder.data.manifest import CacheManifest

    acts = prepare_activations(pair, cfg_for(tmp_path, n_tokens=800))
    raw = json.loads((acts.path / C.MANIFEST).read_text())
    assert CacheManifest.from_json(raw).to_json() == raw and acts.manifest.to_json() == raw
    assert list(raw)[:5] == ["format", "version", "key", "complete", "identity"]  # the documented layout
    broken = {k: v for k, v in raw.items() if k != "hooks"}
    (acts.path / C.MANIFEST).write_text(json.dumps(broken))
    with pytest.raises(DataError, match="missing key 'hooks'") as err:
        ActivationSet.open(acts.path)
    assert "\n" not in str(err.value)
