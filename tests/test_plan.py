"""The plan (cache size, memory per rank, expected time) and the checks train.py makes before any work (issue 18)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from crosscoder.data.cache import bytes_per_row
from crosscoder.models import ModelSpec, make_tiny_gemma2, make_tiny_llama
from crosscoder.models.hf import load_hf
from crosscoder.models.shapes import model_shape
from crosscoder.plan import GIB, GPUS, compose_train, main, plan_run
from crosscoder.xc import Crosscoder

REPO = Path(__file__).resolve().parents[1]
GEMMA_2B = [
    "models=pair", "models.models.0.source=google/gemma-2-2b", "models.models.1.source=google/gemma-2-2b-it",
    "data=cluster", "data.hooks=[blocks.13.hook_resid_post]", "data.n_tokens=100000000", "trainer=cluster",
    "crosscoder.n_latents=65536", "crosscoder.k=100", "name=gemma2-2b-65k",
]  # fmt: skip


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelSpec, ModelSpec]:
    root = tmp_path_factory.mktemp("plan_pair")
    return make_tiny_llama(root / "base", seed=0), make_tiny_llama(root / "ft", seed=1)


def tiny_overrides(a: ModelSpec, b: ModelSpec) -> list[str]:
    return [
        f"models.models=[{{source:{a.source},name:base}},{{source:{b.source},name:ft}}]",
        "data.hooks=[blocks.2.hook_resid_post]", "data.n_tokens=1500", "data.norm_sample_tokens=1000",
        "trainer.steps=20", "trainer.batch_size=128", "trainer.checkpoint_every=0", "crosscoder.n_latents=128",
        "logging.measure_mfu=false",
    ]  # fmt: skip


def run_train_py(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CROSSCODER_CACHE": str(cwd / "cache"), "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    env.update(PYTHONPATH=str(REPO))
    env.pop("CROSSCODER_DEBUG", None)
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


@pytest.mark.parametrize(
    ("source", "published_b"),
    [("google/gemma-2-2b", 2.61), ("google/gemma-2-9b-it", 9.24), ("meta-llama/Llama-3.2-1B", 1.24),
     ("meta-llama/Llama-3.1-8B-Instruct", 8.03)],
)  # fmt: skip
def test_known_models_have_their_published_sizes(source: str, published_b: float) -> None:
    shape = model_shape(ModelSpec(source=source, kind="hf"))
    assert shape is not None and shape.n_params / 1e9 == pytest.approx(published_b, abs=0.006)


@pytest.mark.parametrize("make", [make_tiny_llama, make_tiny_gemma2])
def test_shape_counts_the_real_parameters(make, tmp_path: Path) -> None:
    spec = make(tmp_path / "m", seed=0)
    shape, model = model_shape(spec), load_hf(spec).model
    assert shape is not None and shape.n_params == sum(p.numel() for p in model.parameters())
    assert shape.n_block == sum(p.numel() for p in model.model.layers[1].parameters())
    assert shape.n_unembed == 0  # tied embeddings


def test_plan_of_a_tiny_run(pair, tmp_path: Path) -> None:
    cfg = compose_train(tiny_overrides(*pair))
    plan = plan_run(cfg, GPUS["a100-80gb"], world_size=2)
    shape = model_shape(pair[0])
    assert shape is not None
    assert plan.row_bytes == bytes_per_row(2, 1, 64, "float32") and plan.cache_gib == 1500 * plan.row_bytes / GIB
    per_model = 2 * 3 * shape.n_block + 4 * cfg.data.seq_len * shape.n_heads * shape.head_dim * 3  # blocks 0..2
    assert plan.blocks_run == 3 and plan.harvest_gflop_per_token * 1e9 == pytest.approx(2 * per_model)
    xc_cfg = replace(cfg.crosscoder, n_models=2, n_hooks=1, d_model=64)
    assert plan.xc_params == sum(p.numel() for p in Crosscoder(xc_cfg).parameters())
    assert plan.steps == 20 and plan.fits and plan.allreduce_hours > 0  # two ranks all-reduce the gradients
    text = plan.render()
    for needle in ("activation cache", "memory per rank", "expected time", "2 rank(s) on NVIDIA A100"):
        assert needle in text


def test_gemma_2_2b_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    plan = main(["--gpu", "h100-80gb", "--json", str(out), *GEMMA_2B])
    assert "plan for 'gemma2-2b-65k'" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["fits"] and saved["total_hours"] == pytest.approx(plan.total_hours)
    assert plan.row_bytes == 2 * 2304 * 2 + 25 and plan.tokens == 100_000_000  # fp16 rows of two models
    assert plan.d_in == 4608 and plan.xc_params == 2 * 65536 * 4608 + 65536 + 4608
    assert plan.blocks_run == 14 and plan.dtype == "bfloat16" and plan.steps == 48829
    assert [round(m.params / 1e9, 2) for m in plan.models] == [2.61, 2.61]
    more = plan_run(compose_train(GEMMA_2B), GPUS["h100-80gb"], world_size=4)
    assert more.harvest_hours == pytest.approx(plan.harvest_hours / 4) and more.train_mem_gib < plan.train_mem_gib


def test_train_py_plan_true_loads_nothing(pair, tmp_path: Path) -> None:
    proc = run_train_py([*tiny_overrides(*pair), "plan=true"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "activation cache" in proc.stdout and "expected time" in proc.stdout
    assert not list(tmp_path.glob("runs/**/final")) and not (tmp_path / "cache" / "activations").exists()


def giant_folder(root: Path) -> Path:
    """A Llama config of ~0.5 T parameters (no weights: the check must refuse it before loading anything)."""
    from transformers import LlamaConfig

    folder = root / "giant"
    LlamaConfig(hidden_size=16384, intermediate_size=53248, num_hidden_layers=126, num_attention_heads=128,
                num_key_value_heads=8, vocab_size=128256).save_pretrained(folder)  # fmt: skip
    return folder


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("models.device=cuda", "error: models.device: cuda requested but no GPU is visible"),
        ("trainer.device=cuda", "error: trainer.device: cuda requested but no GPU is available"),
        ("data.device=cuda", "error: data.device: cuda requested but no GPU is visible"),
        ("crosscoder.n_latents=100000000", "error: crosscoder.n_latents: 100,000,000 latents over 128 inputs need"),
    ],
)
def test_bad_input_is_one_line_before_any_work(pair, tmp_path: Path, override: str, message: str) -> None:
    if torch.cuda.is_available() and "cuda" in override:
        pytest.skip("a GPU is visible here")
    proc = run_train_py([*tiny_overrides(*pair), override], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr[-2000:]
    assert not (tmp_path / "cache" / "activations").exists()  # nothing harvested


def test_a_model_too_large_for_memory_is_refused(pair, tmp_path: Path) -> None:
    giant = giant_folder(tmp_path)
    models = f"models.models=[{{source:{giant},name:base}},{{source:{giant},name:ft}}]"
    proc = run_train_py([*tiny_overrides(*pair), models, "crosscoder.n_latents=16", "crosscoder.k=4"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: models: the 2 models need") and "GiB of float32 weights but cpu" in line
    assert "models.device=cuda" in line  # the fix
