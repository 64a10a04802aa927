"""train.py / analyze.py as a user runs them: Hydra composition, a 2-config multirun, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crosscoder.models import ModelSpec, make_tiny_llama

REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CROSSCODER_CACHE=str(tmp_path / "cache"), WANDB_MODE="disabled", OMP_NUM_THREADS="2", HYDRA_FULL_ERROR="0"
    )
    env.pop("CROSSCODER_DEBUG", None)
    return env


def _tiny_overrides(a: ModelSpec, b: ModelSpec) -> list[str]:
    return [
        f"models.models=[{{source:{a.source},name:base}},{{source:{b.source},name:ft}}]",
        "data.hooks=[blocks.2.hook_resid_post]",
        "data.n_tokens=1500",
        "data.norm_sample_tokens=1000",
        "trainer.steps=20",
        "trainer.batch_size=128",
        "trainer.warmup_steps=2",
        "trainer.l1_warmup_steps=2",
        "trainer.checkpoint_every=0",
        "trainer.log_every=10",
        "crosscoder.n_latents=128",
        "logging.measure_mfu=false",
    ]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelSpec, ModelSpec]:
    root = tmp_path_factory.mktemp("pair")
    return make_tiny_llama(root / "base", seed=0), make_tiny_llama(root / "ft", seed=0)


def test_multirun_of_two_configs(tiny_pair: tuple[ModelSpec, ModelSpec], tmp_path: Path) -> None:
    proc = _run(
        [str(REPO / "train.py"), "-m", "name=sweep", "crosscoder=batchtopk,l1", *_tiny_overrides(*tiny_pair)],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    finals = sorted((tmp_path / "runs" / "sweep").glob("sweep-*/*/final"))
    assert len(finals) == 2, proc.stdout[-2000:]
    archs = set()
    for final in finals:
        run = final.parent
        archs.add(json.loads((final / "config.json").read_text())["crosscoder"]["architecture"])
        assert (run / ".hydra" / "config.yaml").is_file()  # the resolved config is kept with the run
        info = json.loads((run / "run.json").read_text())
        assert info["model_names"] == ["base", "ft"] and set(info["fve"]) == {"base", "ft"}
        assert (run / "metrics.jsonl").stat().st_size > 0
    assert archs == {"batchtopk", "l1"}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("crosscoder.k=100000", "crosscoder.k"),
        ("crosscoder.architecture=nonsense", "crosscoder.architecture"),
        ("crosscoder.n_shared=999999", "crosscoder.n_shared"),
        ("models.models=[{source:smollm2-135m-instruct}]", "models.models"),
        ("trainer.autocast_bf16=true", "trainer.autocast_bf16"),
    ],
)
def test_invalid_config_is_one_line_naming_the_field(tmp_path: Path, override: str, field: str) -> None:
    proc = _run([str(REPO / "train.py"), override], tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0], proc.stderr


def test_missing_model_folder_is_one_line(tmp_path: Path) -> None:
    proc = _run([str(REPO / "train.py"), "models=pair", f"models.models.0.source={tmp_path}/nope/"], tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model folder not found") and "check the path" in last, proc.stderr


def test_analyze_without_a_finished_run_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    proc = _run([str(REPO / "analyze.py"), f"run_dir={tmp_path / 'half'}"], tmp_path)
    assert proc.returncode == 2 and "no finished checkpoint" in proc.stderr and proc.stderr.strip().count("\n") == 0
    proc = _run([str(REPO / "analyze.py")], tmp_path)  # no runs/ at all
    assert proc.returncode == 2 and "python train.py" in proc.stderr, proc.stderr


def test_analyze_refuses_a_flat_key_of_the_earlier_config_by_its_new_name(tmp_path: Path) -> None:
    proc = _run([str(REPO / "analyze.py"), "n_steer=2"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "analyze.n_steer: this option moved to analyze.steering.n_candidates" in proc.stderr
