"""Model placement (device, dtype, device map), tiny Gemma-2 and Llama models through TransformerLens, the harvest and
a short training run; the Slurm environment wired into torch.distributed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from crosscoder.data import DataConfig, prepare_activations
from crosscoder.errors import ConfigError
from crosscoder.models import load_model, make_tiny_gemma2, make_tiny_llama
from crosscoder.models.fingerprint import fingerprint
from crosscoder.models.hf import load_hf
from crosscoder.models.placement import Placement, check_config, resolve_placement
from crosscoder.xc.distributed import PORT_BASE, PORT_SPAN, first_host, slurm_dist_env


@pytest.fixture(scope="module")
def gemma(tiny_dir: Path):
    return make_tiny_gemma2(tiny_dir / "gemma_a", seed=0, name="base"), make_tiny_gemma2(
        tiny_dir / "gemma_b", seed=1, name="ft"
    )


def fake_gpus(monkeypatch: pytest.MonkeyPatch, n: int, bf16: bool = True) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)


def test_cpu_is_float32_and_bf16_on_cpu_warns(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_placement("cpu") == Placement("cpu", torch.float32)
    assert resolve_placement("cpu").hf_kwargs() == {"dtype": torch.float32, "device_map": None}
    with caplog.at_level(logging.WARNING):
        p = resolve_placement("cpu", "bfloat16")
    assert p.dtype == torch.bfloat16 and "far slower than float32" in caplog.text


def test_gpu_requested_without_gpu_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        ConfigError, match=r"models.device: cuda requested but no GPU is visible.*set models.device=cpu"
    ):
        resolve_placement("cuda")


def test_gpu_placement_per_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 2)
    p = resolve_placement("cuda", "auto", None, local_rank=1, world_size=2)
    assert p == Placement("cuda:1", torch.bfloat16)
    assert p.hf_kwargs() == {"dtype": torch.bfloat16, "device_map": {"": "cuda:1"}}  # loaded straight onto it
    assert resolve_placement("cuda").device == "cuda:0"
    fake_gpus(monkeypatch, 2, bf16=False)
    assert resolve_placement("cuda").dtype == torch.float16
    assert resolve_placement("cuda", "float32").dtype == torch.float32
    spread = resolve_placement("cuda", "auto", "auto")
    assert spread.hf_kwargs()["device_map"] == "auto" and spread.device == "cuda:0"
    with pytest.raises(ConfigError, match="only 2 GPU"):
        resolve_placement("cuda:3")
    with pytest.raises(ConfigError, match="models.device_map: auto spreads each model over all GPUs, but 2 DDP"):
        resolve_placement("cuda", "auto", "auto", local_rank=0, world_size=2)


@pytest.mark.parametrize(
    ("device", "dtype", "device_map", "field"),
    [("gpu", "auto", None, "models.device"), ("cpu", "fp8", None, "models.dtype"),
     ("cpu", "auto", "auto", "models.device_map"), ("cuda", "auto", "everywhere", "models.device_map")],
)  # fmt: skip
def test_bad_placement_config(device: str, dtype: str, device_map: str | None, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        check_config(device, dtype, device_map)


@pytest.mark.parametrize("arch", ["gemma2", "llama"])
def test_tiny_models_load_in_bf16_close_to_fp32(arch: str, gemma, tiny_spec) -> None:
    spec = gemma[0] if arch == "gemma2" else tiny_spec
    fp32 = load_model(spec)
    bf16 = load_model(spec, placement=Placement("cpu", torch.bfloat16))
    assert next(bf16.tl.parameters()).dtype == torch.bfloat16 and next(fp32.tl.parameters()).dtype == torch.float32
    ids = torch.tensor([fp32.tokenizer("The cat sat on the mat, and the pirate sailed the sea.")["input_ids"]])
    a = fp32.tl.run_with_cache(ids)[1]["blocks.2.hook_resid_post"]
    b = bf16.tl.run_with_cache(ids)[1]["blocks.2.hook_resid_post"].float()
    rel = float((a - b).norm() / a.norm())
    assert 0 < rel < 0.03, rel  # bf16 differs, but only by rounding


@pytest.mark.parametrize("arch", ["gemma2", "llama"])
def test_harvest_equals_hf_hidden_states(arch: str, gemma, tmp_path: Path) -> None:
    """Gemma-2 (sliding-window and global layers, soft-capping, pre/post norms) and Llama (GQA, RoPE): the bridge's
    residual stream, harvested in padded batches, is HF's own (eager attention)."""
    if arch == "llama":
        gemma = (make_tiny_llama(tmp_path / "la", seed=0, name="base"), make_tiny_llama(tmp_path / "lb", seed=1))
    models = [load_model(s) for s in gemma]
    hooks = [f"blocks.{i}.hook_resid_post" for i in range(3)]
    data = DataConfig(hooks=hooks, n_tokens=700, seq_len=48, harvest_batch_size=4, shard_tokens=300,
                      cache_root=str(tmp_path), norm_sample_tokens=500, sources=["shipped:text"])  # fmt: skip
    acts = prepare_activations(models, data)
    seq = max(range(acts.n_seqs), key=lambda s: len(acts.sequence_tokens(s)))
    tokens = acts.sequence_tokens(seq)
    assert len(tokens) > 32  # longer than the sliding window
    rows = torch.cat([rb.x_BMLD[rb.seq_B == seq] for rb in acts.iter_rows(256)])
    for mi, spec in enumerate(gemma):
        hf = load_hf(spec).model
        hf.config._attn_implementation = "eager"
        with torch.no_grad():
            hidden = hf(torch.tensor([tokens]), output_hidden_states=True).hidden_states
        for li in range(3):
            torch.testing.assert_close(rows[:, mi, li], hidden[li + 1][0], rtol=1e-5, atol=1e-5)


def test_gemma2_fingerprint_matches_loaded(gemma) -> None:
    fp, m = fingerprint(gemma[0]), load_model(gemma[0])
    assert fp is not None and (fp.content_hash, fp.d_model, fp.n_layers) == (m.content_hash, m.d_model, m.n_layers)


def test_reduced_precision_gets_its_own_cache(gemma, tmp_path: Path) -> None:
    """bf16 activations differ from fp32 ones: the cache identity says so (fp32 identities keep their old form)."""
    from crosscoder.data import cache as C

    data = DataConfig(hooks=["blocks.1.hook_resid_post"], cache_root=str(tmp_path))
    fp32 = [fingerprint(s) for s in gemma]
    bf16 = [fingerprint(s, "bfloat16") for s in gemma]
    assert all(fp is not None for fp in fp32 + bf16)
    a, b = C.identity(fp32, data), C.identity(bf16, data)  # type: ignore[arg-type]
    assert [len(m) for m in a["models"]] == [3, 3] and [m[3] for m in b["models"]] == ["bfloat16", "bfloat16"]
    loaded = load_model(gemma[0], placement=Placement("cpu", torch.bfloat16))
    assert C.identity([loaded, loaded], data)["models"][0] == b["models"][0]


def test_crosscoder_trains_on_tiny_gemma2(gemma, tmp_path: Path) -> None:
    from crosscoder.config import ModelSetConfig, TrainConfig
    from crosscoder.pipeline import run_train
    from crosscoder.xc import CrosscoderConfig, LoggingConfig, TrainerConfig

    cfg = TrainConfig(
        name="gemma",
        models=ModelSetConfig(models=list(gemma)),
        data=DataConfig(hooks=["blocks.2.hook_resid_post"], n_tokens=800, seq_len=48, cache_root=str(tmp_path / "c"),
                        norm_sample_tokens=500),
        crosscoder=CrosscoderConfig(architecture="topk", n_latents=64, k=4),
        trainer=TrainerConfig(steps=30, batch_size=64, warmup_steps=2, l1_warmup_steps=2, checkpoint_every=0,
                              log_every=10, lr=1e-3),
        logging=LoggingConfig(wandb_mode="disabled", measure_mfu=False, progress=False),
    )  # fmt: skip
    result = run_train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "final" / "crosscoder.safetensors").is_file()
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    fve = [r["fve/min"] for r in logged if "fve/min" in r]
    assert len(fve) == 3 and fve[-1] > fve[0] + 0.02, fve  # it learns the Gemma-2 activations
    assert set(result.fve()) == {"base", "ft"}


def test_slurm_step_becomes_torch_distributed_env() -> None:
    env = {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1",
           "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_STEP_NODELIST": "node7"}  # fmt: skip
    got = slurm_dist_env(env)
    assert {k: got[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")} == {
        "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "node7"
    }  # fmt: skip
    assert PORT_BASE <= int(got["MASTER_PORT"]) < PORT_BASE + PORT_SPAN
    assert slurm_dist_env({**env, "SLURM_PROCID": "0"})["MASTER_PORT"] == got["MASTER_PORT"]  # same on every rank
    assert slurm_dist_env({**env, "MASTER_PORT": "29500"})["MASTER_PORT"] == "29500"
    assert slurm_dist_env({**env, "WORLD_SIZE": "4", "RANK": "0"}) == {}  # torchrun's variables win


def test_slurm_batch_script_stays_one_process(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert slurm_dist_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "1"}) == {}
    assert "srun python train.py" in caplog.text
    assert slurm_dist_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_STEP_NUM_TASKS": "1"}) == {}


def test_first_host_of_a_node_list() -> None:
    assert first_host("gpu[03-05,07],cpu1") == "gpu03"
    assert first_host("node7") == "node7"
