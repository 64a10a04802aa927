"""The step benchmark runs end to end at tiny size and reports what it says; no benchmark stage leaves torch's
thread count changed (numbers are not asserted here: the benchmark measures them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from crosscoder.bench import __main__ as bench_main
from crosscoder.bench import harvest, xc_step
from crosscoder.bench.common import torch_threads
from crosscoder.errors import ConfigError

ARCHS = ("topk", "batchtopk", "l1")
TINY = ["--batch", "32", "--latents", "256", "512", "--k", "4", "--d-model", "16", "--rounds", "2", "--warmup", "1"]
TINY += ["--l1-l0", "4", "--reference-rounds", "2"]


def test_xc_step_benchmark_tiny(tmp_path: Path) -> None:
    out = tmp_path / "xc_step.json"
    before = torch.get_num_threads()
    res = xc_step.main(["--out", str(out), *TINY, "--threads", "1"])
    assert torch.get_num_threads() == before  # --threads applied inside the run only
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(xc_step.to_json(res)))
    assert saved["machine"]["threads"] == 1 and saved["machine"]["gemm_gflops"] > 0
    assert len(saved["machine"]["load_avg_start"]) == 3 and len(saved["machine"]["load_avg_end"]) == 3
    assert {(r["arch"], r["n_latents"], r["path"]) for r in saved["results"]} == {
        (a, n, p) for a in ARCHS for n in (256, 512) for p in ("fast", "reference")
    }
    for r in res.results:
        assert r.tokens_per_s == pytest.approx(32 / r.step_s) and len(r.step_s_all) == 2
        assert r.spread == pytest.approx(max(r.step_s_all) / min(r.step_s_all)) and r.spread >= 1.0
        assert len(r.gemm_gflops_all) == 2 and r.gemm_gflops > 0 and r.mfu > 0 and 0 < r.active_rows_frac <= 1
        assert r.frac_sparse_bound == pytest.approx(r.tokens_per_s / r.sparse_bound_tokens_per_s)
        assert r.frac_sparse_bound_best_gemm <= r.frac_sparse_bound + 1e-12  # the best probe is the highest bound
        if r.arch == "l1":
            assert 1 < r.active < 8  # about --l1-l0 latents per token, so the sparse path runs
        else:
            assert r.active == 4.0
    assert set(res.speedups) == set(res.speedups_gemm_normalised) == {f"{a}/{n}" for a in ARCHS for n in (256, 512)}
    for key, speedup in res.speedups.items():
        arch, n = key.split("/")
        fast, ref = res.find(arch, int(n), "fast"), res.find(arch, int(n), "reference")
        assert fast is not None and ref is not None and speedup == fast.tokens_per_s / ref.tokens_per_s
        norm = (fast.tokens_per_s / fast.gemm_gflops) / (ref.tokens_per_s / ref.gemm_gflops)
        assert res.speedups_gemm_normalised[key] == pytest.approx(norm)


def test_xc_step_refuses_bf16_and_missing_gpu_on_cpu(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bf16"):
        xc_step.main(["--out", str(tmp_path / "x.json"), *TINY, "--dtype", "bf16"])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            xc_step.main(["--out", str(tmp_path / "x.json"), *TINY, "--device", "cuda"])


def test_torch_threads_restores_on_error() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
        raise RuntimeError("stage failed")
    assert torch.get_num_threads() == before
    with torch_threads(None) as n:
        assert n == before


class _Stop(Exception):
    pass


def test_harvest_stage_restores_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harvest benchmark picks its own thread count but gives the previous one back (issue 24)."""
    import crosscoder.models

    seen: list[int] = []

    def load_model(*args: Any, **kwargs: Any) -> None:
        seen.append(torch.get_num_threads())
        raise _Stop

    monkeypatch.setattr(crosscoder.models, "load_model", load_model)
    monkeypatch.setattr(harvest, "square_gemm_gflops", lambda device: 1.0)
    before = torch.get_num_threads()
    target = 1 if before > 1 else 2
    with pytest.raises(_Stop):
        harvest.run(threads=target)
    assert seen == [target] and torch.get_num_threads() == before


def test_run_all_undoes_a_stage_thread_change(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`make bench`: a stage that changes the thread count and keeps it does not change it for the next stage."""
    before = torch.get_num_threads()
    seen: dict[str, int] = {}

    def stage(key: str) -> dict[str, Any]:
        seen[key] = torch.get_num_threads()
        torch.set_num_threads(1 if before > 1 else 2)  # a misbehaving stage
        return {}

    monkeypatch.setattr(bench_main, "_stage", stage)
    res = bench_main.run_all(tmp_path / "bench.json")
    assert seen == {"harvest": before, "xc_step": before} and torch.get_num_threads() == before
    assert res["machine"]["threads"] == before and res["machine"]["load_avg_end"] is not None
