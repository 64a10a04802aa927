"""Training loss of a crosscoder on a normalised batch: the dense reference and the sparse path.

``loss = recon + coeff * penalty + aux_coeff * aux`` with recon = sum ||x - xhat||^2 / B (normalised space, summed
over models, hooks and dims), the architecture's sparsity penalty, and the auxiliary-k loss of dead latents.

* **Dense reference** (``fast_path=False``, and every architecture without a sparse path): plain torch, f_BF dense.
* **Sparse path** (:mod:`crosscoder.xc.fast`): TopK / BatchTopK select k latents per token (or k*B per batch); L1
  keeps the ReLU support. Only the encoder GEMM stays dense. For L1 the support is data-dependent: while more than
  :data:`L1_SPARSE_MAX_DENSITY` of the batch's activations are positive (early training) the step runs the dense
  reference instead, which is then cheaper; both give the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crosscoder.xc.fast import gather_encode, relu_select, sparse_decode, sparse_decode_with_norms
from crosscoder.xc.pattern import SparsePattern, one_thread

if TYPE_CHECKING:
    from crosscoder.xc.model import Crosscoder

L1_SPARSE_MAX_DENSITY = 1 / 16
"""L1 sparse path: above this fraction of positive pre-activations (L0 > F/16) the step uses the dense ops.
Measured at 16,384 latents (docs/results/l1_density_crossover.json, sparse path forced): 3.7x the dense step at
L0 275, 1.9x at L0 1,082, 0.97x at L0 2,132; so the switch sits at about half the break-even density."""


@dataclass
class LossTerms:
    """One training forward: the loss (with grad) and detached statistics for the metrics."""

    loss: Tensor
    """recon + coeff * penalty + aux_coeff * aux + extra (with grad)."""
    recon: Tensor
    """Summed squared error per token, sum ||x - xhat||^2 / B (normalised space)."""
    extra: Tensor
    """The architecture's extra term (Matryoshka's nested reconstructions; 0 for most)."""
    penalty: Tensor
    """Sparsity penalty before its coefficient (0 for TopK-style mechanisms)."""
    aux: Tensor
    """Auxiliary-k loss before its coefficient (0 when no latent is dead)."""
    sq_err_ML: Tensor
    """Summed squared error per model and hook."""
    fired_F: Tensor
    """Tokens each latent fired on."""
    l0: Tensor
    """Active latents summed over the batch's tokens."""
    min_score: Tensor | None = None
    """BatchTopK: the smallest positive kept score (its inference threshold tracks it)."""

    def __getitem__(self, name: str) -> Tensor:
        """Read access by name, for scripts written against the former ``dict`` output."""
        value = getattr(self, name, None) if not name.startswith("_") else None
        if value is None:
            raise KeyError(name)
        assert isinstance(value, Tensor)
        return value

    def __contains__(self, name: str) -> bool:
        return getattr(self, name, None) is not None


@dataclass
class _Forward:
    xhat_BX: Tensor
    """Reconstruction; the reference's includes the decoder bias, the sparse path's not (:class:`SquaredError`)."""
    pre_BF: Tensor
    dec_norm_F: Tensor
    fired_F: Tensor
    penalty: Tensor
    pattern: SparsePattern | None
    """Set when the sparse path ran (the auxiliary loss then takes it too)."""
    f_act: Tensor
    """The activations: f_BF on the reference, f_N (values of `pattern`) on the sparse path."""


def loss_terms(
    cc: Crosscoder,
    x_n_BX: Tensor,
    *,
    k: int,
    sparsity_coeff: float,
    dead_F: Tensor | None = None,
    aux_k: int = 0,
    aux_coeff: float = 0.0,
    reduce_sum: Callable[[Tensor], Tensor] | None = None,
) -> LossTerms:
    """See :meth:`crosscoder.xc.model.Crosscoder.loss_terms`."""
    B = x_n_BX.shape[0]
    cc.sparsity.stats = {}
    fwd = _sparse_forward(cc, x_n_BX, k) if cc.fast else None
    if fwd is None:
        fwd = _dense_forward(cc, x_n_BX, k)
    if fwd.pattern is None:  # the plain-torch reference
        err_BX = x_n_BX - fwd.xhat_BX
        sq_err = err_BX.pow(2)
        recon = sq_err.sum() / B
        sq_err_ML = sq_err.detach().view(B, *_shape(cc)).sum(dim=(0, 3))
    else:
        recon, sq_err_ML, err_BX = squared_error(x_n_BX, fwd.xhat_BX, cc.b_dec_MLD, _shape(cc))
    aux = x_n_BX.new_zeros(())
    if cc.sparsity.uses_k and dead_F is not None and aux_k > 0 and aux_coeff > 0 and bool(dead_F.any()):
        aux = _aux_loss(cc, x_n_BX, fwd, err_BX.detach(), dead_F, aux_k, reduce_sum)
    # the architecture's extra term (Matryoshka's nested reconstructions; 0 for most)
    extra = cc.sparsity.extra_loss(x_n_BX, fwd.f_act, fwd.pattern, cc.W_dec_FX, cc.b_dec_MLD.reshape(-1))
    min_score = cc.sparsity.stats.get("min_score")
    return LossTerms(
        loss=recon + sparsity_coeff * fwd.penalty + aux_coeff * aux + extra,
        recon=recon.detach(),
        extra=extra.detach(),
        penalty=fwd.penalty.detach(),
        aux=aux.detach(),
        sq_err_ML=sq_err_ML,
        fired_F=fwd.fired_F,
        l0=fwd.fired_F.sum(),
        min_score=None if min_score is None else min_score.detach(),
    )


def _shape(cc: Crosscoder) -> tuple[int, int, int]:
    return cc.cfg.n_models, cc.cfg.n_hooks, cc.cfg.d_model


class SquaredError(torch.autograd.Function):
    """recon = sum ||x - xhat - b_dec||^2 / B, in three passes forward and two backward (the sparse path's loss;
    the reference spells it out in plain torch). Also returns the per-(model, hook) sums and the error itself,
    both without grad."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x_BX: Tensor, xhat_BX: Tensor, b_dec_MLD: Tensor, shape: tuple[int, int, int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        B = x_BX.shape[0]
        with one_thread(x_BX.device):  # B x X is small (4.7 MB at the default size): one thread is as fast
            err_BX = torch.sub(x_BX, xhat_BX).sub_(b_dec_MLD.reshape(-1))
            sq_err_ML = torch.linalg.vector_norm(err_BX.view(B, *shape), dim=(0, 3)).square()
            recon = sq_err_ML.sum() / B
        ctx.save_for_backward(err_BX)
        ctx.b_shape = b_dec_MLD.shape
        ctx.mark_non_differentiable(sq_err_ML, err_BX)
        ctx.set_materialize_grads(False)  # no zero tensors for the outputs without grad
        return recon, sq_err_ML, err_BX

    @staticmethod
    def backward(ctx, g: Tensor | None, _g_ML: Tensor | None, _g_err: Tensor | None):  # type: ignore[override]
        if g is None:
            return None, None, None, None
        (err_BX,) = ctx.saved_tensors
        with one_thread(err_BX.device):
            g_xhat = err_BX * (g * (-2.0 / err_BX.shape[0]))
            g_b = g_xhat.sum(0).view(ctx.b_shape) if ctx.needs_input_grad[2] else None
            g_x = -g_xhat if ctx.needs_input_grad[0] else None
        return g_x, g_xhat, g_b, None


def squared_error(
    x_BX: Tensor, xhat_BX: Tensor, b_dec_MLD: Tensor, shape: tuple[int, int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """(recon with grad, sq_err_ML, err_BX) of :class:`SquaredError`."""
    recon, sq_err_ML, err_BX = SquaredError.apply(x_BX, xhat_BX, b_dec_MLD, shape)
    return recon, sq_err_ML, err_BX


def _dense_forward(cc: Crosscoder, x_n_BX: Tensor, k: int) -> _Forward:
    """The plain-torch reference: dense f_BF, dense decoder GEMM, autograd everywhere."""
    dec_norm_F = cc._dec_norm_F()  # with grad: the L1 penalty differentiates through the decoder norms
    pre_BF = torch.addmm(cc.b_enc_F, x_n_BX, cc.W_enc_XF)
    f_BF = cc.sparsity.activate(pre_BF, dec_norm_F, cc.share_F, k)
    xhat_BX = torch.addmm(cc.b_dec_MLD.reshape(-1), f_BF, cc.W_dec_FX)
    fired_F = (f_BF.detach() > 0).sum(0).to(x_n_BX.dtype)
    penalty = cc.sparsity.penalty(pre_BF, f_BF, dec_norm_F, cc.share_F)
    return _Forward(xhat_BX, pre_BF, dec_norm_F, fired_F, penalty, None, f_BF)


def _pre_activations(cc: Crosscoder, x_n_BX: Tensor) -> Tensor:
    """x_n @ W_enc + b_enc without grad, into the workspace on CPU (fp32 after a bf16 autocast GEMM on GPU)."""
    if x_n_BX.device.type == "cpu":
        out = cc.workspace.scratch("pre_BF", (x_n_BX.shape[0], cc.cfg.n_latents), x_n_BX)
        return torch.addmm(cc.b_enc_F, x_n_BX, cc.W_enc_XF, out=out)
    return torch.addmm(cc.b_enc_F, x_n_BX, cc.W_enc_XF).to(x_n_BX.dtype)


def _sparse_forward(cc: Crosscoder, x_n_BX: Tensor, k: int) -> _Forward | None:
    """Sparse path; None when L1's support is too dense for it to pay (the caller then runs the reference)."""
    ws = cc.workspace
    with torch.no_grad():  # the selection is not differentiable; values re-enter the graph below
        pre_BF = _pre_activations(cc, x_n_BX)
        if cc.sparsity.uses_k:
            norm_FML = cc.decoder_norms_FML()
            with one_thread(x_n_BX.device):
                dec_norm_F = norm_FML.sum(dim=(1, 2))
            pattern = cc.sparsity.select(pre_BF, dec_norm_F, cc.share_F, k, ws=ws)
        else:
            positive_BF = torch.gt(pre_BF, 0, out=ws.scratch("positive_BF", tuple(pre_BF.shape), pre_BF, torch.bool))
            if int(torch.count_nonzero(positive_BF)) > L1_SPARSE_MAX_DENSITY * pre_BF.numel():
                return None
            pattern = relu_select(positive_BF)
            norm_FML = cc.W_dec_FMLD.norm(dim=-1)
    f_N = torch.relu(gather_encode(x_n_BX, cc.W_enc_XF, cc.b_enc_F, pre_BF, pattern, ws))
    if cc.sparsity.uses_k:
        xhat_BX = sparse_decode(f_N, cc.W_dec_FX, pattern, ws)
        penalty = x_n_BX.new_zeros(())
    else:  # L1: sum_j f_j * share_j * dn_j, the decoder norms dn_F carrying the penalty's decoder gradient
        xhat_BX, dec_norm_F = sparse_decode_with_norms(f_N, cc.W_dec_FX, pattern, ws, norm_FML, cc.fold_ML)
        penalty = (f_N * (dec_norm_F * cc.share_F)[pattern.cols_N]).sum() / x_n_BX.shape[0]
    with one_thread(x_n_BX.device):
        fired = pattern.cols_N[f_N.detach() > 0]
        fired_F = torch.bincount(fired, minlength=cc.cfg.n_latents).to(x_n_BX.dtype)
    return _Forward(xhat_BX, pre_BF, dec_norm_F, fired_F, penalty, pattern, f_N)


def _aux_loss(
    cc: Crosscoder,
    x_n_BX: Tensor,
    fwd: _Forward,
    e_BX: Tensor,
    dead_F: Tensor,
    aux_k: int,
    reduce_sum: Callable[[Tensor], Tensor] | None,
) -> Tensor:
    """Auxiliary-k loss (Gao et al. 2024): reconstruct the residual e with the top aux_k dead latents,
    normalised by the residual's variance over the (global) batch: sum ||ehat - e||^2 / sum ||e - mean e||^2."""
    dead_idx = torch.nonzero(dead_F).squeeze(1)
    n_aux = min(aux_k, int(dead_idx.numel()))
    pre_BF = fwd.pre_BF
    with torch.no_grad():
        share = cc.share_F[dead_idx]
        score_BG = pre_BF.detach()[:, dead_idx] * (fwd.dec_norm_F.detach()[dead_idx] / share)
        idx_BK = dead_idx[score_BG.topk(n_aux, dim=-1, sorted=False).indices]
        pattern = SparsePattern.from_topk(idx_BK, cc.cfg.n_latents)
    if fwd.pattern is not None:
        f_N = torch.relu(gather_encode(x_n_BX, cc.W_enc_XF, cc.b_enc_F, pre_BF, pattern))
        ehat_BX = sparse_decode(f_N, cc.W_dec_FX, pattern)
    else:
        f_BF = torch.relu(pre_BF) * pattern.scatter(pre_BF.new_ones(pattern.n_active)).bool()
        ehat_BX = f_BF @ cc.W_dec_FX
    B = e_BX.shape[0]
    stats = torch.cat([e_BX.sum(0), e_BX.pow(2).sum()[None], e_BX.new_tensor([B])])
    if reduce_sum is not None:
        stats = reduce_sum(stats)
    n = stats[-1]
    var = (stats[-2] - stats[:-2].pow(2).sum() / n).clamp_min(1e-12)
    return (ehat_BX - e_BX).pow(2).sum() * (n / B) / var
