"""Trainer: learns synthetic sparse data, writes metrics/checkpoints, resumes exactly, stops cleanly on NaN."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from crosscoder.errors import ConfigError, DataError, NumericsError
from crosscoder.xc import ARCHITECTURES, Crosscoder, CrosscoderConfig, LoggingConfig, TrainerConfig, train
from crosscoder.xc.synthetic import SyntheticPairs
from crosscoder.xc.trainer import clip_grad_, coeff_at, k_at, lr_at

DATA = SyntheticPairs(n_models=2, n_hooks=1, d_model=16, n_features=48, n_exclusive=6, batch_size=128, seed=0)
LOG = LoggingConfig(wandb_mode="disabled", progress=False, measure_mfu=False, hist_every=20)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (conftest)


def make_cc(arch: str = "batchtopk", **kw) -> Crosscoder:
    base = dict(architecture=arch, n_latents=96, k=6, n_models=2, n_hooks=1, d_model=16)
    cfg = CrosscoderConfig(**{**base, **kw})
    cc = Crosscoder(cfg, seed=0)
    cc.scale_ML.copy_(DATA.scale_ML())
    return cc


def tcfg(**kw) -> TrainerConfig:
    base = dict(steps=40, batch_size=128, lr=3e-3, warmup_steps=5, l1_warmup_steps=5, log_every=10, checkpoint_every=10)
    base.update(dead_tokens=1280, aux_k=16)
    base.update(kw)
    return TrainerConfig(**base)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_training_raises_fve(arch: str, tmp_path: Path) -> None:
    kw = {"l1_coeff": 0.1} if arch == "l1" else {"l0_coeff": 0.05} if arch == "jumprelu" else {}
    cc = make_cc(arch, **kw)
    res = train(
        cc,
        DATA.batches_from,
        tcfg(steps=120, log_every=20, checkpoint_every=0),
        LOG,
        tmp_path,
        run_info={"models": ["base", "ft"]},
    )
    fves = [r["fve/min"] for r in records(tmp_path) if "fve/min" in r]
    assert fves[-1] > fves[0] + 0.2 and fves[-1] > 0.75, fves
    assert set(res.fve()) == {"base", "ft"} and min(res.fve().values()) == pytest.approx(fves[-1])
    assert res.metrics["l0"] > 0 and 0 <= res.metrics["dead_frac"] <= 1 and res.metrics["tokens_per_s"] > 0
    if arch in ("topk", "batchtopk"):
        assert res.metrics["l0"] <= 6 + 1e-9
    assert not cc.training and (tmp_path / "final" / "crosscoder.safetensors").is_file()


def test_run_folder_contents(tmp_path: Path) -> None:
    log = LoggingConfig(wandb_mode="disabled", progress=False, measure_mfu=True, hist_every=20)
    res = train(make_cc(n_shared=4), DATA.batches_from, tcfg(keep_checkpoints=2), log, tmp_path)
    steps = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert steps == ["step_0000020", "step_0000030"]  # keep 2; none at the final step (final/ holds it)
    names = sorted(p.name for p in (tmp_path / "checkpoints" / "step_0000030").iterdir())
    assert names == ["checksums.json", "config.json", "crosscoder.safetensors", "optimizer.safetensors", "state.json"]
    recs = records(tmp_path)
    scalars = [r for r in recs if "fve/m0" in r]
    assert [r["step"] for r in scalars] == [10, 20, 30, 40]
    for key in ("fve/m1", "mse/m0", "l0", "dead_frac", "dense_frac", "tokens_per_s", "mfu", "threshold", "lr"):
        assert key in scalars[-1], key
    hists = [r for r in recs if "hist/rel_norm/m1" in r]
    assert [r["step"] for r in hists] == [20, 40]
    assert sum(hists[-1]["hist/rel_norm/m1"]["counts"]) == 96
    back = Crosscoder.load(res.final_dir)
    assert float(back.threshold) > 0  # type: ignore[arg-type]
    x = DATA.batch(999)
    with torch.no_grad():
        assert float((back(x)[0] - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()) < 0.5


class Crash(RuntimeError):
    pass


def crashing(at: int):
    def batches_from(start: int) -> Iterator[torch.Tensor]:
        for step, x in enumerate(DATA.batches_from(start), start):
            if step == at:
                raise Crash(f"killed at step {step}")
            yield x

    return batches_from


@pytest.mark.parametrize("arch", ["batchtopk", "jumprelu"])
def test_resume_matches_uninterrupted_run(arch: str, tmp_path: Path) -> None:
    ref = make_cc(arch)
    train(ref, DATA.batches_from, tcfg(), LOG, tmp_path / "ref")

    cc = make_cc(arch)
    with pytest.raises(Crash):
        train(cc, crashing(25), tcfg(), LOG, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "step_0000020").is_dir()
    resumed = make_cc(arch)  # a fresh process would rebuild the model from scratch
    train(resumed, DATA.batches_from, tcfg(resume=True), LOG, tmp_path / "run")
    for name, t in ref.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], t), name  # bitwise: same batches, same optimizer state
    steps = [r["step"] for r in records(tmp_path / "run") if "fve/m0" in r]
    assert steps == [10, 20, 30, 40]  # records written after the checkpoint by the crashed run were dropped


def test_resume_refuses_changed_settings(tmp_path: Path) -> None:
    with pytest.raises(Crash):
        train(make_cc(), crashing(15), tcfg(), LOG, tmp_path)
    with pytest.raises(ConfigError, match=r"^trainer\.lr: "):
        train(make_cc(), DATA.batches_from, tcfg(resume=True, lr=1e-3), LOG, tmp_path)
    with pytest.raises(ConfigError, match=r"^trainer\.resume: "):
        train(make_cc(), DATA.batches_from, tcfg(resume=False), LOG, tmp_path)
    with pytest.raises(DataError, match="different crosscoder config"):
        train(make_cc(k=5), DATA.batches_from, tcfg(resume=True), LOG, tmp_path)
    train(make_cc(), DATA.batches_from, tcfg(steps=20, checkpoint_every=0), LOG, tmp_path / "done")
    with pytest.raises(ConfigError, match=r"finished run"):
        train(make_cc(), DATA.batches_from, tcfg(steps=20, checkpoint_every=0), LOG, tmp_path / "done")


@pytest.mark.parametrize("bad", [float("nan"), 1e30])
def test_numerics_error_keeps_last_checkpoint(bad: float, tmp_path: Path) -> None:
    def batches_from(start: int) -> Iterator[torch.Tensor]:
        for step, x in enumerate(DATA.batches_from(start), start):
            yield x * bad if step == 23 else x

    cc = make_cc()
    with pytest.raises(NumericsError, match="step 23") as err:
        train(cc, batches_from, tcfg(), LOG, tmp_path)
    assert "\n" not in str(err.value)
    if bad == 1e30:  # finite input, overflowing loss: the message names the last good checkpoint
        assert "step_0000020" in str(err.value)
    assert bool(torch.isfinite(cc.W_dec_FMLD).all())  # no NaN step was applied
    Crosscoder.load(tmp_path / "checkpoints" / "step_0000020")


def test_bad_data_refused(tmp_path: Path) -> None:
    def short(start: int) -> Iterator[torch.Tensor]:
        yield from (DATA.batch(s) for s in range(start, 5))

    with pytest.raises(DataError, match="ran out at step 5"):
        train(make_cc(), short, tcfg(), LOG, tmp_path / "a")
    with pytest.raises(DataError, match="trainer.batch_size"):
        train(make_cc(), DATA.batches_from, tcfg(batch_size=64), LOG, tmp_path / "b")


def test_schedules() -> None:
    cfg = TrainerConfig(steps=100, lr=1.0, warmup_steps=10, decay="linear", decay_fraction=0.2, l1_warmup_steps=20)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == 1.0 and lr_at(79, cfg) == 1.0
    assert lr_at(89, cfg) == pytest.approx(0.5) and lr_at(99, cfg) == pytest.approx(0.0)
    cos = TrainerConfig(steps=100, lr=1.0, warmup_steps=0, decay="cosine", decay_fraction=0.5)
    assert (
        lr_at(74, cos) == pytest.approx(0.5)
        and lr_at(10, TrainerConfig(steps=100, lr=1.0, warmup_steps=0, decay="none")) == 1.0
    )
    assert coeff_at(0, 2.0, cfg) == pytest.approx(0.1) and coeff_at(50, 2.0, cfg) == 2.0
    anneal = TrainerConfig(k_anneal_start=64, k_anneal_steps=10)
    assert [k_at(s, 32, anneal) for s in (0, 5, 10, 50)] == [64, 48, 32, 32]
    assert k_at(0, 32, TrainerConfig()) == 32


def test_clip_grad_only_rescales_above_max() -> None:
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))
    a.grad, b.grad = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0, 0.0])
    assert float(clip_grad_([a, b], 10.0)) == pytest.approx(5.0) and float(a.grad[0]) == 3.0
    assert float(clip_grad_([a, b], 1.0)) == pytest.approx(5.0)
    assert float(torch.cat([a.grad, b.grad]).norm()) == pytest.approx(1.0, rel=1e-5)
    assert float(clip_grad_([a, b], 0.0)) == pytest.approx(1.0, rel=1e-5)  # 0 = never clip


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("max_norm", [1.0, 100.0, 0.0])
def test_clip_inside_fused_adam_matches_clip_then_adam(fused: bool, max_norm: float) -> None:
    """The trainer lets fused Adam apply the clipping factor (grad_scale); the step equals clip-then-Adam."""
    from crosscoder.xc.step import clip_into_optimizer_, finish_optimizer_step

    g = torch.Generator().manual_seed(0)
    w0, grad = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g) * 3  # norm ~ 16
    runs = []
    for how in ("into_adam", "clip_then_adam", "no_clip"):
        p = torch.nn.Parameter(w0.clone())
        opt = torch.optim.Adam([p], lr=0.1, eps=1.0, fused=fused)  # a large eps makes Adam's step scale-dependent
        for _ in range(2):
            p.grad = grad.clone()
            if how == "into_adam":
                norm = clip_into_optimizer_(opt, max_norm)
            else:
                norm = clip_grad_([p], max_norm if how == "clip_then_adam" else 0.0)
            opt.step()
            finish_optimizer_step(opt)
            assert not hasattr(opt, "grad_scale")
        runs.append((p.detach(), float(norm)))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-6, atol=1e-6)
    assert runs[0][1] == pytest.approx(runs[1][1]) and not torch.equal(runs[0][0], w0)
    clipped = 0 < max_norm < runs[2][1]
    assert torch.allclose(runs[0][0], runs[2][0], rtol=1e-6, atol=1e-6) != clipped  # clipping changed the step


def test_sigkill_then_resume_is_bitwise_identical(tmp_path: Path) -> None:
    """kill -9 in the middle of a run, resume in a new process: the final weights equal an uninterrupted run's."""
    import os
    import subprocess
    import sys
    import time

    arch = "batchtopk"  # the default: sparse path, recycled gradient buffers, threshold EMA, dead-latent counters
    worker = [sys.executable, str(Path(__file__).parent / "kill_worker.py")]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    subprocess.run([*worker, str(tmp_path / "ref"), arch], env=env, check=True, timeout=300)
    run = tmp_path / "run"
    proc = subprocess.Popen([*worker, str(run), arch, "25"], env=env)
    try:
        deadline = time.monotonic() + 300
        while not Path(f"{run}.stalled").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "worker ended before reaching step 25"
            time.sleep(0.2)
    finally:
        proc.kill()  # SIGKILL: no cleanup, no finally blocks in the worker
        proc.wait()
    assert proc.returncode == -9 and (run / "checkpoints" / "step_0000020").is_dir()
    assert not (run / "final").exists()
    subprocess.run([*worker, str(run), arch], env=env, check=True, timeout=300)
    ref, resumed = Crosscoder.load(tmp_path / "ref" / "final"), Crosscoder.load(run / "final")
    for name, t in ref.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], t), name
    assert [r["step"] for r in records(run) if "fve/m0" in r] == [10, 20, 30, 40]
