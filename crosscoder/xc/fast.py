"""Sparse path of the training step: sparse decode and a sparse backward that only touches the active latents.

With N active (token, latent) pairs (N = k*B for TopK / BatchTopK, the ReLU support for L1) the dense path spends
~10*X*F FLOP per token (X = M*L*D input width): the encoder GEMM, the decoder GEMM over a mostly-zero f_BF, and
three more GEMMs in the backward. Here only the encoder forward stays a dense GEMM (2*X*F); the rest costs
~8*X per active pair (the FLOP model of :func:`crosscoder.xc.metrics.flops_per_token`):

* decode:           xhat_BX = sum_j f_bj * W_dec[j]              -> ``embedding_bag`` over the active rows
* grad of f:        g_f[b,j] = <g_xhat[b], W_dec[j]>             -> ``sampled_addmm`` at the active (b, j) only
* grad of W_dec:    g_W_dec[j] = sum_{b: j active} f_bj g_xhat[b] -> (latent-major CSR of f) @ g_xhat
* grad of W_enc:    g_W_enc[:, j] = sum_{b: j active} g_pre_bj x_b -> the same, written latent-major (no transpose)

On CPU the two weight gradients are written by MKL's sparse x dense product straight into reused buffers
(:mod:`crosscoder.xc.workspace`), so a step maps no new memory; on GPU the same sums use ``embedding_bag``
(:mod:`crosscoder.xc.pattern` chooses by device). The selection is not differentiable, so it runs under
``no_grad``; the selected pre-activations are re-attached to the graph by :class:`GatherEncode`. For L1 the decode
also returns the decoder norms, whose gradient (from the penalty) is added to the same buffer in place.
The dense reference stays in ``crosscoder.xc.architectures`` (``fast_path=False``); tests/test_xc_fast.py and
tests/test_xc_sparse_l1.py check values and gradients agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from crosscoder.xc.pattern import SparsePattern, one_thread, use_backend
from crosscoder.xc.select import batchtopk_select, relu_select, topk_select
from crosscoder.xc.workspace import Workspace

__all__ = [
    "GatherEncode",
    "SparseDecode",
    "SparsePattern",
    "batchtopk_select",
    "gather_encode",
    "relu_select",
    "sampled_rowdot",
    "sparse_decode",
    "topk_select",
    "use_backend",
]


def group_by_latent(
    pattern: SparsePattern, src_BX: Tensor, weights_N: Tensor, ws: Workspace | None, name: str
) -> Float[Tensor, "F X"]:
    """out[j] = sum over entries (b, j) of weights * src_BX[b], for every latent j -> [F, X] (zero rows included).

    CPU: written by MKL into the workspace's gradient buffer ``name`` (every element, empty rows as zeros).
    """
    F_, X = pattern.n_latents, src_BX.shape[1]
    if pattern.backend == "cpu" and ws is not None and src_BX.dtype in (torch.float32, torch.float64):
        out = ws.take(name, (F_, X), src_BX)
        return torch.addmm(out, pattern.csr_t(weights_N), src_BX, beta=0.0, out=out)
    perm = pattern.perm_N
    return F.embedding_bag(
        pattern.rows_N[perm], src_BX, pattern.lat_offsets_F, mode="sum", per_sample_weights=weights_N[perm]
    )


def sampled_rowdot(pattern: SparsePattern, a_BX: Tensor, W_FX: Tensor) -> Float[Tensor, " N"]:
    """<a_BX[b], W_FX[j]> for every entry (b, j): the B x F product a @ W^T evaluated at the pattern only."""
    if pattern.n_active == 0:
        return a_BX.new_zeros(0)
    if pattern.backend == "cpu" and a_BX.dtype in (torch.float32, torch.float64):
        mask = pattern.csr(a_BX.new_ones(pattern.n_active))
        return torch.sparse.sampled_addmm(mask, a_BX, W_FX.t(), beta=0.0).values()
    return (a_BX[pattern.rows_N] * W_FX[pattern.cols_N]).sum(-1)  # GPU: a gathered row-dot


class GatherEncode(torch.autograd.Function):
    """pre_N = (x_BX @ W_enc_XF + b_enc_F)[rows, cols] with a backward that only touches the selected latents.

    The forward reuses ``pre_BF`` (computed once, without grad, for the selection). ``W_enc_XF`` is the
    latent-major view of the encoder (strides (1, X)), so the [F, X] gradient is returned transposed, no copy.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x_BX: Tensor, W_enc_XF: Tensor, b_enc_F: Tensor, pre_BF: Tensor, pattern: SparsePattern, ws: Workspace
    ) -> Tensor:
        ctx.save_for_backward(x_BX)
        ctx.pattern, ctx.ws = pattern, ws
        return pattern.gather(pre_BF)

    @staticmethod
    def backward(ctx, g_N: Tensor):  # type: ignore[override]
        (x_BX,) = ctx.saved_tensors
        pattern: SparsePattern = ctx.pattern
        g_N = g_N.contiguous()
        grad_W = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_W = group_by_latent(pattern, x_BX, g_N, ctx.ws, "W_enc").t()  # [F, X] -> [X, F] view
        if ctx.needs_input_grad[2]:
            with one_thread(g_N.device):
                grad_b = g_N.new_zeros(pattern.n_latents).index_add_(0, pattern.cols_N, g_N)
        return None, grad_W, grad_b, None, None, None


class SparseDecode(torch.autograd.Function):
    """xhat_BX = f_BF @ W_dec_FX for f_BF given at the pattern's entries, with a sparse backward.

    With ``norms`` = (norm_FML, fold_ML) the function also returns the decoder norms dn_F = sum_{m,l} fold_ml *
    ||W_dec[j, m, l]|| (norm_FML = ||W_dec[j, m, l]||, computed by the caller without grad); their gradient,
    g_dn_j * fold_ml * W_dec[j, m, l] / ||W_dec[j, m, l]||, is added in place to the decoder's gradient buffer.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        f_N: Tensor,
        W_dec_FX: Tensor,
        pattern: SparsePattern,
        ws: Workspace,
        norms: tuple[Tensor, Tensor] | None,
    ) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(f_N, W_dec_FX)
        ctx.pattern, ctx.ws, ctx.norms = pattern, ws, norms
        ctx.set_materialize_grads(False)  # an unused dn_F output gets None, not a zero tensor to add
        xhat_BX = F.embedding_bag(
            pattern.cols_N, W_dec_FX, pattern.crow_B1[:-1], mode="sum", per_sample_weights=f_N.contiguous()
        )
        if norms is None:
            dn_F = f_N.new_zeros(0)
            ctx.mark_non_differentiable(dn_F)
        else:
            norm_FML, fold_ML = norms
            dn_F = (norm_FML * fold_ML).sum(dim=(1, 2))
        return xhat_BX, dn_F

    @staticmethod
    def backward(ctx, g_BX: Tensor | None, g_dn_F: Tensor | None):  # type: ignore[override]
        f_N, W_dec_FX = ctx.saved_tensors
        pattern: SparsePattern = ctx.pattern
        g_BX = W_dec_FX.new_zeros(pattern.n_tokens, W_dec_FX.shape[1]) if g_BX is None else g_BX.contiguous()
        grad_f = grad_W = None
        if ctx.needs_input_grad[0]:
            grad_f = sampled_rowdot(pattern, g_BX, W_dec_FX)
        if ctx.needs_input_grad[1]:
            grad_W = group_by_latent(pattern, g_BX, f_N.contiguous(), ctx.ws, "W_dec")
            if ctx.norms is not None and g_dn_F is not None:
                norm_FML, fold_ML = ctx.norms
                coef_FML = torch.where(norm_FML > 0, g_dn_F[:, None, None] * fold_ML / norm_FML, 0.0)
                F_, M, L = norm_FML.shape
                grad_W.view(F_, M, L, -1).addcmul_(W_dec_FX.view(F_, M, L, -1), coef_FML.unsqueeze(-1))
        return grad_f, grad_W, None, None, None


def gather_encode(
    x_BX: Tensor, W_enc_XF: Tensor, b_enc_F: Tensor, pre_BF: Tensor, pattern: SparsePattern, ws: Workspace | None = None
) -> Tensor:
    """Differentiable pre-activations at the pattern's entries (see :class:`GatherEncode`)."""
    out = GatherEncode.apply(x_BX, W_enc_XF, b_enc_F, pre_BF, pattern, ws)
    assert isinstance(out, Tensor)
    return out


def sparse_decode(f_N: Tensor, W_dec_FX: Tensor, pattern: SparsePattern, ws: Workspace | None = None) -> Tensor:
    """f (given at the pattern's entries) @ W_dec_FX -> [B, X] (see :class:`SparseDecode`)."""
    xhat_BX, _ = SparseDecode.apply(f_N, W_dec_FX, pattern, ws, None)
    return xhat_BX


def sparse_decode_with_norms(
    f_N: Tensor, W_dec_FX: Tensor, pattern: SparsePattern, ws: Workspace | None, norm_FML: Tensor, fold_ML: Tensor
) -> tuple[Tensor, Tensor]:
    """:func:`sparse_decode` plus the differentiable decoder norms dn_F (see :class:`SparseDecode`)."""
    xhat_BX, dn_F = SparseDecode.apply(f_N, W_dec_FX, pattern, ws, (norm_FML, fold_ML))
    return xhat_BX, dn_F
