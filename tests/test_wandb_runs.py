"""W&B runs a researcher can navigate, read back from offline run files: the mode precedence (an explicit `logging=`
wins over $WANDB_MODE), names from the sweep's overrides, one group per sweep, artifacts named by run, the analysis
run linked to its training run, and the sweep summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crosscoder.analysis.cli import sweep_summary_main
from crosscoder.analysis.export.wandb_log import log_to_wandb
from crosscoder.errors import ConfigError
from crosscoder.launch.wandb_names import group_for, name_from_overrides, swept_keys
from crosscoder.models import ModelSpec, make_tiny_llama
from crosscoder.testing.report_sample import write_sample_analysis
from crosscoder.testing.wandb_offline import OfflineRun, offline_runs
from crosscoder.xc.tracking import WandbRef, resolve_mode

REPO = Path(__file__).resolve().parents[1]


def test_explicit_mode_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_mode("offline") == "offline" and resolve_mode("disabled") == "disabled"
    assert resolve_mode("auto") == "online"
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_mode("auto") == "offline"
    assert resolve_mode("auto", fallback="disabled") == "disabled"  # the analysis follows its training run
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ConfigError, match="^WANDB_MODE='sometimes'"):
        resolve_mode("auto")
    with pytest.raises(ConfigError, match="^logging.wandb_mode: unknown mode 'dryrun'"):
        resolve_mode("dryrun")


def test_names_from_the_swept_overrides(tmp_path: Path) -> None:
    over = ["name=s", "crosscoder=l1", "trainer.lr=0.0001", "logging=offline", "data.n_tokens=1500"]
    assert name_from_overrides(over, "0") == "name=s,crosscoder=l1,trainer.lr=0.0001,data.n_tokens=1500"
    assert name_from_overrides(over, "0", swept={"crosscoder", "trainer.lr"}) == "crosscoder=l1,trainer.lr=0.0001"
    assert name_from_overrides(["logging.project=x"], "20261202-101500") == "20261202-101500"
    assert len(name_from_overrides([f"data.hooks=[{'x' * 300}]"], "0")) == 128
    assert group_for("demo", tmp_path / "sweep-1" / "3", tmp_path / "sweep-1") == "demo/sweep-1"
    assert group_for("demo", tmp_path / "20261202-101500", None) == "demo/20261202-101500"
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task: [name=s, 'crosscoder=batchtopk,l1', 'trainer.lr=1e-4', 'data.seed=range(2)']\n"
    )
    assert swept_keys(tmp_path) == {"crosscoder", "data.seed"}
    assert swept_keys(tmp_path / "nowhere") is None


def _env(tmp_path: Path) -> dict[str, str]:
    # none of this process's W&B variables: an in-process test that ran wandb earlier leaves WANDB_SERVICE set, and
    # a child inheriting it hands its runs to this process's W&B service instead of writing its own logs
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(CROSSCODER_CACHE=str(tmp_path / "cache"), WANDB_MODE="disabled", OMP_NUM_THREADS="2")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        env[var] = str(tmp_path / "wandb_home" / var.lower())
    env["WANDB_SILENT"] = "true"
    return env


def _train_sweep(a: ModelSpec, b: ModelSpec, tmp_path: Path) -> Path:
    overrides = [
        f"models.models=[{{source:{a.source},name:base}},{{source:{b.source},name:ft}}]",
        "data.hooks=[blocks.2.hook_resid_post]",
        "data.n_tokens=1000",
        "data.norm_sample_tokens=500",
        "trainer.steps=8",
        "trainer.batch_size=64",
        "trainer.warmup_steps=2",
        "trainer.l1_warmup_steps=2",
        "trainer.checkpoint_every=0",
        "trainer.log_every=4",
        "crosscoder.n_latents=64",
        "logging.measure_mfu=false",
    ]
    args = [str(REPO / "train.py"), "-m", "name=wb", "logging=offline", "crosscoder=batchtopk,l1", *overrides]
    # WANDB_MODE=disabled in the environment: the explicit logging=offline must win
    proc = subprocess.run([sys.executable, *args], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "runs" / "wb").glob("sweep-*")
    return sweep


def _by_name(runs: list[OfflineRun]) -> dict[str, OfflineRun]:
    assert all(r.complete for r in runs)  # every run was finished and its log fully written
    return {r.name: r for r in runs}


def test_sweep_runs_are_named_grouped_linked_and_summarised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "pair"
    a, b = make_tiny_llama(root / "base", seed=0), make_tiny_llama(root / "ft", seed=1)
    sweep = _train_sweep(a, b, tmp_path)
    group = f"wb/{sweep.name}"
    # the sweep's end (Hydra callback) already wrote the summary and logged it in the sweep's group
    (auto,) = [r for r in offline_runs(sweep) if r.job_type == "sweep-summary"]
    assert auto.group == group and auto.summary["n_jobs"] == 2 and auto.summary["n_finished"] == 2
    assert json.loads((sweep / "sweep_summary.json").read_text())["jobs"][0]["analysed"] is False
    train = _by_name([r for r in offline_runs(sweep) if r.job_type == "train"])
    assert set(train) == {"crosscoder=batchtopk", "crosscoder=l1"}, train.keys()
    ids = {r.id for r in train.values()}
    assert len(ids) == 2
    for run in train.values():
        assert (run.group, run.job_type, run.project) == (group, "train", "crosscoder")
        assert run.artifacts == [(f"crosscoder-{run.id}", "crosscoder")]
        assert any("fve/base" in h for h in run.history)
        ref = WandbRef.read(run.folder.parents[1])
        assert ref is not None and (ref.id, ref.name, ref.group) == (run.id, run.name, group)
        assert ref.artifact == f"crosscoder-{run.id}" and ref.mode == "offline"
        assert ref.sync_command() == f"wandb sync {run.folder}"

    # the analysis of job 0 follows its training run (auto mode, no $WANDB_MODE) into the same group
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR", "WANDB_SILENT"):
        monkeypatch.setenv(var, _env(tmp_path)[var])
    monkeypatch.delenv("WANDB_MODE")
    job0 = sweep / "0"
    analysis = write_sample_analysis(job0 / "analysis", n_latents=64, n_candidates=3, seed=0)
    log_to_wandb(analysis, run_dir=job0)
    (ana,) = offline_runs(analysis)
    assert ana.complete
    trained = train[ana.name.removesuffix(" [analysis]")]
    assert (ana.group, ana.job_type) == (group, "analysis") and trained.folder.parents[1] == job0
    assert ana.config["train_run_id"] == trained.id and ana.config["crosscoder_artifact"] == f"crosscoder-{trained.id}"
    assert (f"analysis-{ana.id}", "analysis-report") in ana.artifacts and ana.id not in ids

    jobs = sweep_summary_main([str(sweep)])
    assert [j.job for j in jobs] == ["0", "1"] and all(j.finished and j.fve_min is not None for j in jobs)
    assert jobs[0].analysed and len(jobs[0].top_candidates) == 3 and not jobs[1].analysed
    assert {j.name for j in jobs} == set(train) and {j.wandb_id for j in jobs} == ids
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [j["job"] for j in summary["jobs"]] == ["0", "1"]
    assert (sweep / "sweep_summary.csv").read_text().splitlines()[0].startswith("job,name,architecture")
    (srun,) = [r for r in offline_runs(sweep) if r.job_type == "sweep-summary" and r.id != auto.id]
    assert srun.group == group and srun.summary["n_jobs"] == 2 and srun.summary["sweep/nrows"] == 2, srun.summary
    assert srun.summary["best_name"] in set(train) and srun.config["job_runs"] == {j.job: j.wandb_id for j in jobs}
