"""Every architecture with a sparse path (the ``crosscoder.fast_path`` switch) trains the weights its dense reference
trains: whole runs through the trainer (schedules, auxiliary-k loss, clipping inside fused Adam, recycled gradient
buffers, dead-latent counters, the BatchTopK threshold), and the GPU kernel family run on CPU tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crosscoder.xc import Crosscoder, CrosscoderConfig, LoggingConfig, TrainerConfig, train
from crosscoder.xc import loss as loss_mod
from crosscoder.xc.fast import use_backend
from crosscoder.xc.synthetic import SyntheticPairs
from crosscoder.xc.trainer import TrainResult

DATA = SyntheticPairs(n_models=2, n_hooks=2, d_model=16, n_features=48, n_exclusive=6, batch_size=64, seed=5)
LOG = LoggingConfig(wandb_mode="disabled", progress=False, measure_mfu=False, hist_every=0)
STEPS = 30
SWITCHED = ["topk", "batchtopk", "l1"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (conftest)


def make(arch: str, fast: bool) -> Crosscoder:
    """The run of one side; L1 starts with a negative encoder bias (L0 of a few latents per token, as after its
    sparsity warmup), so its sparse path runs rather than handing dense early steps to the reference."""
    cfg = CrosscoderConfig(
        architecture=arch, fast_path=fast, n_latents=128, k=6, n_shared=4, n_models=2, n_hooks=2, d_model=16,
        l1_coeff=0.5,
    )  # fmt: skip
    cc = Crosscoder(cfg, seed=0)
    cc.scale_ML.copy_(DATA.scale_ML())
    if arch == "l1":
        with torch.no_grad():
            pre = cc.normalise(DATA.batch(0)) @ cc.W_enc_XF
            cc.b_enc_F.copy_(-torch.quantile(pre, 1 - 3 / 128, dim=0))
    assert cc.fast == fast
    return cc


def trainer(**kw: object) -> TrainerConfig:
    base: dict[str, object] = dict(
        steps=STEPS, batch_size=64, lr=2e-3, warmup_steps=3, l1_warmup_steps=0, decay="linear", decay_fraction=0.3,
        log_every=10, checkpoint_every=0, dead_tokens=128, aux_k=8, grad_clip=1.0, init_from_data=False,
    )  # fmt: skip
    base.update(kw)
    return TrainerConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def sparse_steps(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per training forward: True when the sparse path ran, False when it handed over to the reference."""
    ran: list[bool] = []
    real = loss_mod._sparse_forward

    def counted(cc: Crosscoder, x: torch.Tensor, k: int) -> loss_mod._Forward | None:
        out = real(cc, x, k)
        ran.append(out is not None)
        return out

    monkeypatch.setattr(loss_mod, "_sparse_forward", counted)
    return ran


def run_both(arch: str, tmp_path: Path) -> tuple[list[TrainResult], list[Crosscoder], dict[str, torch.Tensor]]:
    results, models = [], []
    for fast in (True, False):
        cc = make(arch, fast)
        start = {k: v.clone() for k, v in cc.state_dict().items()}
        results.append(train(cc, DATA.batches_from, trainer(), LOG, tmp_path / str(fast)))
        models.append(cc)
    return results, models, start


def assert_same_run(results: list[TrainResult], models: list[Crosscoder], start: dict[str, torch.Tensor]) -> None:
    fast_cc, ref_cc = models
    assert fast_cc.workspace.nbytes == 0  # eval() after training frees the buffers
    ref = ref_cc.state_dict()
    for name, t in fast_cc.state_dict().items():
        if name not in ("scale_ML", "fold_ML"):
            assert float((t - start[name]).abs().max()) > 1e-2, (
                name
            )  # training moved it: the comparison means something
        torch.testing.assert_close(t, ref[name], rtol=0, atol=2e-5, msg=lambda m, n=name: f"{n}: {m}")
    for key in ("fve/min", "l0", "dead_frac", "grad_norm", "loss"):
        assert results[0].metrics[key] == pytest.approx(results[1].metrics[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_fast_run_matches_reference_run(arch: str, tmp_path: Path, sparse_steps: list[bool]) -> None:
    results, models, start = run_both(arch, tmp_path)
    assert sparse_steps == [True] * STEPS  # every step of the fast run took the sparse path
    assert_same_run(results, models, start)


def test_l1_sparse_run_matches_reference_run(
    tmp_path: Path, sparse_steps: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """L1 with the sparse path forced on every step (it is exact at any density; the switch only picks the faster)."""
    monkeypatch.setattr(loss_mod, "L1_SPARSE_MAX_DENSITY", 1.0)
    results, models, start = run_both("l1", tmp_path)
    assert sparse_steps == [True] * STEPS
    assert_same_run(results, models, start)


def test_l1_run_switching_paths_matches_reference_run(tmp_path: Path, sparse_steps: list[bool]) -> None:
    """With the default switch the L1 support grows past F/16 during this run and the fast run hands its steps to
    the dense ops: the run still matches the reference, across the switch."""
    results, models, start = run_both("l1", tmp_path)
    assert sparse_steps[0] and not all(sparse_steps), sparse_steps  # both sides of the switch ran
    assert_same_run(results, models, start)


@pytest.mark.parametrize("arch", SWITCHED)
def test_gpu_kernels_on_cpu_match_reference(arch: str) -> None:
    """The GPU kernel family (gathers, embedding_bag) on CPU tensors: loss and every gradient equal the reference."""
    fast, ref = make(arch, True).double(), make(arch, False).double()
    x = DATA.batch(7).double()
    dead_F = torch.arange(128) % 3 == 0
    kw = dict(k=6, sparsity_coeff=0.5, dead_F=dead_F, aux_k=8, aux_coeff=1 / 32)
    with use_backend("gpu"):
        got = fast.loss_terms(fast.normalise(x), **kw)  # type: ignore[arg-type]
        got.loss.backward()
    want = ref.loss_terms(ref.normalise(x), **kw)  # type: ignore[arg-type]
    want.loss.backward()
    for key in ("loss", "recon", "penalty", "aux", "fired_F"):
        torch.testing.assert_close(getattr(got, key), getattr(want, key), rtol=1e-10, atol=1e-10)
    assert float(got.l0) > 0 and (arch == "l1") == (float(got.penalty) > 0) and (arch == "l1") != (float(got.aux) > 0)
    for (name, p), q in zip(fast.named_parameters(), ref.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None and float(p.grad.abs().max()) > 0, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")
