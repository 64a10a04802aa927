"""The L1 sparse path (decode and backward over the ReLU support only) matches the dense reference."""

from __future__ import annotations

import pytest
import torch

from crosscoder.xc import Crosscoder, CrosscoderConfig
from crosscoder.xc import loss as loss_mod

M, L, D, F, B = 3, 2, 16, 256, 48


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (conftest)


def batch(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(B, M, L, D, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 3


def pair(dtype: torch.dtype, l0: float, **kw) -> tuple[Crosscoder, Crosscoder]:
    """Sparse and dense L1 crosscoders with equal weights; the encoder bias is set so about l0 latents fire."""
    base = dict(architecture="l1", n_latents=F, n_models=M, n_hooks=L, d_model=D, **kw)
    sparse = Crosscoder(CrosscoderConfig(**base, fast_path=True), seed=1).to(dtype)
    dense = Crosscoder(CrosscoderConfig(**base, fast_path=False), seed=1).to(dtype)
    with torch.no_grad():
        sparse.scale_ML.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(2))
        pre = sparse.normalise(batch(dtype)) @ sparse.W_enc_XF
        sparse.b_enc_F.copy_(-torch.quantile(pre.flatten().float(), 1 - l0 / F).to(dtype))
        sparse.b_enc_F.add_(torch.randn(F, dtype=dtype, generator=torch.Generator().manual_seed(3)) * 0.01)
        sparse.b_dec_MLD.normal_(generator=torch.Generator().manual_seed(4))
    dense.load_state_dict(sparse.state_dict())
    assert sparse.fast and not dense.fast
    return sparse, dense


def run(cc: Crosscoder, dtype: torch.dtype) -> loss_mod.LossTerms:
    out = cc.loss_terms(cc.normalise(batch(dtype)), k=cc.cfg.k, sparsity_coeff=2.0)
    out.loss.backward()
    return out


@pytest.fixture
def sparse_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the L1 sparse selections (and their number of active pairs)."""
    calls: list[int] = []
    real = loss_mod.relu_select

    def counted(pre: torch.Tensor):
        pattern = real(pre)
        calls.append(pattern.n_active)
        return pattern

    monkeypatch.setattr(loss_mod, "relu_select", counted)
    return calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shared", [0, 8])
def test_l1_sparse_matches_dense(dtype: torch.dtype, shared: int, sparse_calls: list[int]) -> None:
    sparse, dense = pair(dtype, l0=4.0, n_shared=shared)
    got, want = run(sparse, dtype), run(dense, dtype)
    assert len(sparse_calls) == 1 and 0 < sparse_calls[0] < B * F * loss_mod.L1_SPARSE_MAX_DENSITY  # sparse ran
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    assert float(got.penalty) > 0
    for key in ("loss", "recon", "penalty", "sq_err_ML", "fired_F", "l0"):
        torch.testing.assert_close(getattr(got, key), getattr(want, key), **tol)
    for (name, p), q in zip(sparse.named_parameters(), dense.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        assert float(p.grad.abs().max()) > 0, name
        torch.testing.assert_close(p.grad, q.grad, **tol, msg=lambda m, n=name: f"{n}: {m}")
        assert p.grad.stride() == p.stride(), name


def test_l1_penalty_gradient_reaches_only_active_decoders(sparse_calls: list[int]) -> None:
    """A latent that never fires gets no decoder gradient (the dense reference agrees: its f is 0)."""
    sparse, dense = pair(torch.float64, l0=2.0)
    run(sparse, torch.float64), run(dense, torch.float64)
    g = sparse.W_dec_FMLD.grad
    assert g is not None
    fired = torch.zeros(F, dtype=torch.bool)
    with torch.no_grad():
        pre = torch.addmm(sparse.b_enc_F, sparse.normalise(batch()), sparse.W_enc_XF)
    fired[(pre > 0).nonzero()[:, 1]] = True
    assert bool((~fired).any()) and bool(fired.any())
    assert float(g[~fired].abs().max()) == 0.0 and float(g[fired].abs().amax(dim=(1, 2, 3)).min()) > 0


def test_l1_folded_scale_matches_dense(sparse_calls: list[int]) -> None:
    """With the scale folded into the weights (fold_ML != 1) the decoder norms stay those of the normalised space."""
    sparse, dense = pair(torch.float64, l0=4.0)
    sparse, dense = sparse.fold_scale().double(), dense.fold_scale().double()  # fold_scale builds fp32 copies
    got, want = run(sparse, torch.float64), run(dense, torch.float64)
    assert sparse_calls
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-10, atol=1e-10)
    for p, q in zip(sparse.parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-10)


def test_l1_dense_support_runs_the_reference(sparse_calls: list[int]) -> None:
    """Early in training (most latents positive) the sparse path hands over to the dense ops, same values."""
    sparse, dense = pair(torch.float64, l0=F / 4)
    got, want = run(sparse, torch.float64), run(dense, torch.float64)
    assert sparse_calls == []
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-12, atol=1e-12)
    for p, q in zip(sparse.parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12)
