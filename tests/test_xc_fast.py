"""The fast TopK / BatchTopK path matches the dense reference on values AND gradients."""

from __future__ import annotations

import pytest
import torch

from crosscoder.testing.xc_pairs import fast_dense_pair
from crosscoder.xc import Crosscoder
from crosscoder.xc.fast import SparsePattern, batchtopk_select, gather_encode, sparse_decode, topk_select

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (conftest)


def pair(arch: str, dtype: torch.dtype, **kw: object) -> tuple[Crosscoder, Crosscoder]:
    return fast_dense_pair(arch, dtype, n_models=3, **kw)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_matches_dense(arch: str, dtype: torch.dtype) -> None:
    fast, dense = pair(arch, dtype, n_shared=8)
    x = torch.randn(48, 3, 2, 16, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 3
    dead = torch.rand(256, generator=torch.Generator().manual_seed(1)) < 0.3
    outs = []
    for cc in (fast, dense):
        out = cc.loss_terms(cc.normalise(x), k=8, sparsity_coeff=0.0, dead_F=dead, aux_k=16, aux_coeff=0.5)
        out.loss.backward()
        outs.append(out)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    assert float(outs[0].aux) > 0  # the auxiliary loss ran, through both paths
    for key in ("loss", "recon", "aux", "sq_err_ML", "fired_F", "l0"):
        torch.testing.assert_close(getattr(outs[0], key), getattr(outs[1], key), **tol)
    if arch == "batchtopk":
        torch.testing.assert_close(outs[0].min_score, outs[1].min_score, **tol)
    grads_dense = dict(dense.named_parameters())
    for name, p in fast.named_parameters():
        q = grads_dense[name]
        assert p.grad is not None and q.grad is not None
        assert float(p.grad.abs().max()) > 0, name
        torch.testing.assert_close(p.grad, q.grad, **tol, msg=lambda m, n=name: f"{n}: {m}")
        assert p.grad.stride() == p.stride(), name  # gradients keep the (latent-major) parameter layout


def test_sparse_functions_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    B, X, F, K = 6, 5, 12, 3
    x = torch.randn(B, X, dtype=torch.float64, generator=g)
    W_enc_XF = torch.randn(F, X, dtype=torch.float64, generator=g).t().requires_grad_()  # latent-major like the model
    b_enc = torch.randn(F, dtype=torch.float64, generator=g, requires_grad=True)
    W_dec = torch.randn(F, X, dtype=torch.float64, generator=g, requires_grad=True)
    pattern = topk_select(torch.randn(B, F, generator=g), K)

    def fn(W_enc_XF: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
        pre = torch.addmm(b_enc, x, W_enc_XF).detach()
        f_N = gather_encode(x, W_enc_XF, b_enc, pre, pattern)
        return sparse_decode(f_N, W_dec, pattern)

    assert torch.autograd.gradcheck(fn, (W_enc_XF, b_enc, W_dec))


def test_pattern_layout() -> None:
    score = torch.tensor([[0.1, 0.9, 0.5, 0.0], [0.8, 0.2, 0.3, 0.7]])
    p = topk_select(score, 2)
    assert p.rows_N.tolist() == [0, 0, 1, 1] and p.cols_N.tolist() == [1, 2, 0, 3]
    assert p.crow_B1.tolist() == [0, 2, 4]
    assert p.cols_N[p.perm_N].tolist() == [0, 1, 2, 3] and p.lat_offsets_F.tolist() == [0, 1, 2, 3]
    dense = p.scatter(torch.ones(4))
    assert dense.tolist() == [[0, 1, 1, 0], [1, 0, 0, 1]]


@pytest.mark.parametrize("block", [32, 8])  # 64,000 scores: 32 -> plain topk (too few blocks), 8 -> block pre-selection
@pytest.mark.parametrize("skew", [False, True])
def test_batchtopk_select_exact(skew: bool, block: int) -> None:
    """The block pre-selection gives exactly the flat top-k, also when one token dominates."""
    g = torch.Generator().manual_seed(0)
    score = torch.randn(64, 1000, generator=g)
    if skew:
        score[5] += 100.0  # token 5 holds far more than its share of the batch's top values
    n_keep = 64 * 8
    pattern, kept = batchtopk_select(score, n_keep, block=block)
    want = score.reshape(-1).topk(n_keep).indices.sort().values
    got = (pattern.rows_N * 1000 + pattern.cols_N).sort().values
    assert torch.equal(got, want)
    assert float(kept.min()) == float(score.reshape(-1).topk(n_keep).values.min())
    if skew:
        assert int((pattern.rows_N == 5).sum()) > 64  # one token holds many of the batch's kept values


@pytest.mark.parametrize("block", [32, 8])
def test_batchtopk_select_ties(block: int) -> None:
    """With many equal scores (also at the threshold) the kept values are still exactly the top n_keep values."""
    score = torch.randn(64, 1000, generator=torch.Generator().manual_seed(1)).mul(2).round()
    pattern, kept = batchtopk_select(score, 512, block=block)
    want = score.reshape(-1).topk(512).values.sort().values
    assert torch.equal(pattern.gather(score).sort().values, want) and torch.equal(kept.sort().values, want)
    assert pattern.n_active == 512 and len(set((pattern.rows_N * 1000 + pattern.cols_N).tolist())) == 512


def test_empty_rows_in_batchtopk_decode() -> None:
    """Tokens with no active latent decode to zero (empty bags)."""
    W = torch.randn(10, 4)
    pattern = SparsePattern.from_flat(torch.tensor([3, 25, 27]), n_tokens=4, n_latents=10)  # tokens 0 and 2 only
    out = sparse_decode(torch.tensor([1.0, 2.0, 3.0]), W, pattern)
    assert torch.equal(out[1], torch.zeros(4)) and torch.equal(out[3], torch.zeros(4))
    torch.testing.assert_close(out[2], 2.0 * W[5] + 3.0 * W[7])


@pytest.mark.parametrize("n_latents", [4096, 4000])  # 4000 is not a multiple of the block: plain topk
@pytest.mark.parametrize("dist", ["normal", "ties"])
def test_topk_select_block_preselection_exact(n_latents: int, dist: str) -> None:
    """The per-token block pre-selection keeps exactly the values torch.topk keeps (any order, ties allowed)."""
    g = torch.Generator().manual_seed(3)
    score = torch.randn(64, n_latents, generator=g)
    if dist == "ties":
        score = score.mul(4).round()  # many equal values, also at the k-th place
    score[7] = -1.0  # a token whose scores are all equal
    pattern = topk_select(score, 32)
    assert pattern.n_active == 64 * 32 and bool((pattern.cols_N.view(64, 32).diff(dim=1) > 0).all())
    got = pattern.gather(score).view(64, 32).sort(dim=1).values
    want = score.topk(32, dim=1).values.sort(dim=1).values
    assert torch.equal(got, want)


def test_gpu_kernels_on_cpu_match_dense() -> None:
    """The GPU kernel family (gathers + embedding_bag), run on CPU tensors, matches the dense reference too."""
    from crosscoder.xc.fast import use_backend

    fast, dense = pair("batchtopk", torch.float64, n_shared=8)
    x = torch.randn(48, 3, 2, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    with use_backend("gpu"):
        out = fast.loss_terms(fast.normalise(x), k=8, sparsity_coeff=0.0)
        pattern = fast.sparsity.select(fast.normalise(x) @ fast.W_enc_XF, fast._dec_norm_F(), fast.share_F, 8)
        assert pattern.backend == "gpu"
    out.loss.backward()
    ref = dense.loss_terms(dense.normalise(x), k=8, sparsity_coeff=0.0)
    ref.loss.backward()
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-10, atol=1e-10)
    for (name, p), q in zip(fast.named_parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


def test_recycled_gradient_buffers_are_reused_and_exact() -> None:
    """After recycle_grads the next backward writes into the same memory, with the values of a fresh model."""
    fast, _ = pair("topk", torch.float32)
    fresh = Crosscoder(fast.cfg, seed=1)
    fresh.load_state_dict(fast.state_dict())
    g = torch.Generator().manual_seed(0)
    ptrs = []
    for _ in range(3):
        x = fast.normalise(torch.randn(48, 3, 2, 16, generator=g))
        fast.loss_terms(x, k=8, sparsity_coeff=0.0).loss.backward()
        ptrs.append((fast.W_enc_FMLD.grad.data_ptr(), fast.W_dec_FMLD.grad.data_ptr()))  # type: ignore[union-attr]
        fresh.zero_grad(set_to_none=True)
        fresh.loss_terms(x, k=8, sparsity_coeff=0.0).loss.backward()
        for p, q in zip(fast.parameters(), fresh.parameters(), strict=True):
            assert torch.equal(p.grad, q.grad)  # type: ignore[arg-type]
        fast.recycle_grads()
        assert fast.W_enc_FMLD.grad is None and fast.W_dec_FMLD.grad is None
        fast.zero_grad(set_to_none=True)  # the other (small) gradients, as the optimizer's zero_grad does
    assert ptrs[1] == ptrs[2] == ptrs[0]
    fast.eval()
    assert fast.workspace.nbytes == 0  # leaving training frees the buffers


def test_workspace_take_give() -> None:
    from crosscoder.xc.workspace import Workspace

    ws = Workspace()
    like = torch.zeros(1)
    a = ws.take("g", (4, 3), like)
    a.fill_(7.0)
    ws.give("g", a.t())  # not contiguous: dropped
    assert ws.take("g", (4, 3), like).data_ptr() != a.data_ptr()
    ws.give("g", a)
    b = ws.take("g", (2, 6), like)  # same size, other shape: reused as a view
    assert b.data_ptr() == a.data_ptr() and b.shape == (2, 6)
    assert ws.take("g", (2, 6), like).data_ptr() != a.data_ptr()  # taken means gone from the pool
    s1 = ws.scratch("s", (5,), like)
    assert ws.scratch("s", (5,), like) is s1 and ws.scratch("s", (6,), like) is not s1


def test_gradient_kernel_overwrites_every_element_of_a_reused_buffer() -> None:
    """The CPU kernel writes all F rows (inactive latents as zeros) into a pooled buffer holding old values, NaN too."""
    from crosscoder.xc.fast import group_by_latent
    from crosscoder.xc.workspace import Workspace

    ws = Workspace()
    ws.give("W", torch.full((10, 4), float("nan")))
    pattern = SparsePattern.from_flat(torch.tensor([3, 25, 27]), n_tokens=4, n_latents=10)  # latents 3, 5, 7
    src = torch.randn(4, 4)
    out = group_by_latent(pattern, src, torch.tensor([1.0, 2.0, 3.0]), ws, "W")
    assert pattern.backend == "cpu" and bool(torch.isfinite(out).all())
    want = torch.zeros(10, 4)
    want[3], want[5], want[7] = src[0], 2.0 * src[2], 3.0 * src[2]
    torch.testing.assert_close(out, want)


def test_loss_terms_typed_and_readable_by_name() -> None:
    fast, _ = pair("batchtopk", torch.float32)
    out = fast.loss_terms(fast.normalise(torch.randn(8, 3, 2, 16)), k=4, sparsity_coeff=0.0)
    assert out["recon"] is out.recon and "min_score" in out and out.min_score is not None
    topk, _ = pair("topk", torch.float32)
    out = topk.loss_terms(topk.normalise(torch.randn(8, 3, 2, 16)), k=4, sparsity_coeff=0.0)
    assert "min_score" not in out
    with pytest.raises(KeyError):
        out["min_score"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_cuda_fast_matches_cpu_dense(arch: str) -> None:
    """On CUDA the fast path (GPU kernels, chosen by device) matches the dense reference computed on CPU."""
    fast, dense = pair(arch, torch.float32)
    fast = fast.cuda()
    x = torch.randn(64, 3, 2, 16, generator=torch.Generator().manual_seed(0)) * 3
    out = fast.loss_terms(fast.normalise(x.cuda()), k=8, sparsity_coeff=0.0)
    out.loss.backward()
    ref = dense.loss_terms(dense.normalise(x), k=8, sparsity_coeff=0.0)
    ref.loss.backward()
    torch.testing.assert_close(out.loss.cpu(), ref.loss, rtol=1e-4, atol=1e-4)
    for p, q in zip(fast.parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(p.grad.cpu(), q.grad, rtol=1e-4, atol=1e-4)  # type: ignore[union-attr]
    with torch.autocast("cuda", dtype=torch.bfloat16):  # the trainer's bf16 mode runs and stays finite
        out = fast.loss_terms(fast.normalise(x.cuda()), k=8, sparsity_coeff=0.0)
    assert bool(torch.isfinite(out.loss))
