"""Slurm for real (issue 18): a 2-job `python train.py -m hydra/launcher=slurm` sweep through submitit, and 2-task
DDP jobs through Slurm's own environment (`srun --ntasks=2`, and a sweep job with tasks_per_node=2), on a single-node cluster started by
scripts/slurm_local.sh (CI starts it in .ci/run). Skipped, saying how to start one, where no Slurm node is idle.
The launcher checks at the end need no Slurm."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from crosscoder.io import load_safetensors
from crosscoder.models import make_tiny_llama

REPO = Path(__file__).resolve().parents[1]
START_HINT = "start a single-node Slurm with `sudo scripts/slurm_local.sh` (installs slurm-wlm and munge)"


def slurm_problem() -> str | None:
    """Why no Slurm job can run here, or None."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm is not installed"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return f"sinfo failed ({proc.stderr.strip()[:120]})"
    if not re.search(r"\b(idle|mixed)", proc.stdout):
        return f"no Slurm node is idle (sinfo: {proc.stdout.strip() or 'no nodes'})"
    return None


def tiny_overrides(root: Path) -> list[str]:
    return [
        f"models.models=[{{source:{root / 'base'},name:base}},{{source:{root / 'ft'},name:ft}}]",
        "data.hooks=[blocks.2.hook_resid_post]", "data.n_tokens=3000", "data.shard_tokens=1000",
        "data.norm_sample_tokens=1000", "trainer.steps=20", "trainer.batch_size=128", "trainer.warmup_steps=5",
        "trainer.l1_warmup_steps=5", "trainer.checkpoint_every=0", "trainer.log_every=10", "crosscoder.n_latents=128",
        "crosscoder.k=8", "logging=disabled", "logging.measure_mfu=false", "logging.progress=false", "name=slurm",
    ]  # fmt: skip


def job_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WANDB_"))}  # logging= decides W&B
    env.update(CROSSCODER_CACHE=str(root / "cache"), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    problem = slurm_problem()
    if problem:
        pytest.skip(f"{problem}; {START_HINT}")
    root = tmp_path_factory.mktemp("slurm")
    make_tiny_llama(root / "base", seed=0)
    make_tiny_llama(root / "ft", seed=1)
    return root


@pytest.fixture(scope="module")
def sweep(cluster: Path) -> Path:
    args = ["-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10", "crosscoder=topk,l1"]  # fmt: skip
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args, *tiny_overrides(cluster)], cwd=cluster,
                          env=job_env(cluster), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    (folder,) = (cluster / "runs" / "slurm").glob("sweep-*")
    return folder


@pytest.mark.slurm
def test_sweep_of_two_jobs_through_submitit(sweep: Path) -> None:
    archs = set()
    for job in ("0", "1"):
        run = sweep / job
        assert (run / "final" / "crosscoder.safetensors").is_file()
        archs.add(json.loads((run / "final" / "config.json").read_text())["crosscoder"]["architecture"])
        info = json.loads((run / "run.json").read_text())
        assert set(info["fve"]) == {"base", "ft"}
        assert not (run / "wandb").exists()  # logging=disabled held: the launcher exports no WANDB_MODE
    assert archs == {"topk", "l1"}
    logs = sorted((sweep / ".submitit").glob("*_*/*_log.out"))
    assert len(logs) == 2 and all("Job completed successfully" in p.read_text() for p in logs)
    (job_id,) = {p.parent.name.split("_")[0] for p in logs}  # one Slurm array job of two tasks
    assert job_states(job_id) == ["COMPLETED", "COMPLETED"]


def job_states(job_id: str, wait_s: float = 120.0) -> list[str]:
    """The states of a Slurm (array) job's tasks once none is pending or running (submitit returns when the results
    are written, a moment before the job's processes exit)."""
    deadline = time.monotonic() + wait_s
    while True:
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
        states = re.findall(r"JobState=(\w+)", out)
        if time.monotonic() > deadline or not {"PENDING", "RUNNING", "COMPLETING"} & set(states):
            return sorted(states)
        time.sleep(2)


@pytest.mark.slurm
def test_two_task_srun_job_is_ddp_equal_to_one_process(cluster: Path, sweep: Path) -> None:
    out = cluster / "srun_ddp"
    cmd = ["srun", "--ntasks=2", "--cpus-per-task=1", "--mem=2G", "--time=10", sys.executable, str(REPO / "train.py")]
    cmd += [*tiny_overrides(cluster), "crosscoder=topk", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=cluster, env=job_env(cluster), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert log.count("(no model loaded)") == 2  # two ranks, both reusing the sweep's cache without loading a model
    one = load_safetensors(sweep / "0" / "final" / "crosscoder.safetensors")  # job 0 is crosscoder=topk
    two = load_safetensors(out / "final" / "crosscoder.safetensors")
    for name, t in one.items():
        torch.testing.assert_close(two[name], t, rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.slurm
def test_sweep_job_with_two_tasks_is_ddp(cluster: Path, sweep: Path) -> None:
    """hydra.launcher.tasks_per_node=2: submitit starts two tasks of one job, which train as two DDP ranks."""
    args = ["-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.tasks_per_node=2",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10",
            "crosscoder=topk", "hydra.sweep.dir=tasks2"]  # fmt: skip
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args, *tiny_overrides(cluster)], cwd=cluster,
                          env=job_env(cluster), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    logs = sorted((cluster / "tasks2" / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2 and all("(no model loaded)" in p.read_text() for p in logs)  # two ranks, one per task
    one = load_safetensors(sweep / "0" / "final" / "crosscoder.safetensors")
    two = load_safetensors(cluster / "tasks2" / "0" / "final" / "crosscoder.safetensors")
    for name, t in one.items():
        torch.testing.assert_close(two[name], t, rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_slurm_launcher_without_sbatch_is_one_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bin_dir), "PYTHONPATH": str(REPO), "CROSSCODER_CACHE": str(tmp_path / "c")}
    proc = subprocess.run([str(bin_dir / "python"), str(REPO / "train.py"), "-m", "hydra/launcher=slurm",
                           "crosscoder=topk,l1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: hydra/launcher=slurm: no sbatch on PATH") and "scripts/slurm_local.sh" in line
    assert not (tmp_path / "runs").exists()  # nothing was made


def test_slurm_launcher_sets_no_wandb_mode() -> None:
    from hydra import compose, initialize_config_dir

    from crosscoder.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert not any("WANDB" in line for line in cfg.hydra.launcher.setup or [])
    assert cfg.hydra.callbacks.launcher_check._target_ == "crosscoder.launch.slurm.LauncherCheck"
