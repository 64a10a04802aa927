"""One pass over the activation cache: every per-latent statistic the latent table, Latent Scaling and the ranking need.

For each batch of stored rows (raw ``x_BMLD``) the crosscoder encodes once, then the pass accumulates, per data slice
(all, assistant, first/last assistant token, user, text): token counts, firing counts and activation sums; and, in the
normalised space (flattened over hooks, X = L*D):

- ``S_x[m]  = sum_x f_j(x) x_m(x)``  and  ``S_h[m] = sum_x f_j(x) xhat_m(x)`` (Latent Scaling numerators),
- ``S_diff[s] = sum_{x in s} f_j(x) (x_ft(x) - x_base(x))`` (the attribution of the ft - base difference),
- with a control cache (`analyze.control_activations`: the base and a control fine-tune on the same tokens),
  ``S_ctrl[s] = sum_{x in s} f_j(x) (x_control(x) - x_base(x))``, the control normalised with the ft model's scale,
- ``Q = sum_x f_j(x)^2`` and the running top activations (with their rows) per latent,
- FVE sums per model, and the raw mean ft - base difference per position class (the baseline).

Rows outside the training mask (the attention-sink position, and template tokens if the run excluded them) are
never counted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from crosscoder.analysis.stats.kernels import ActivePairs, TopExamples, decode_normalised, encode_active, weighted_sum
from crosscoder.data.masks import Role
from crosscoder.errors import DataError, NumericsError

log = logging.getLogger(__name__)

SLICES = ("all", "assistant", "first_assistant", "last_assistant", "user", "text")
"""Data slices of the per-latent frequency / mean activation / attribution columns."""
BASELINE_POSITIONS = ("all", "first_assistant", "last_assistant")
"""Position classes of the activation-difference baseline."""


def slice_masks(batch, first_assistant_tokens: int) -> dict[str, Tensor]:
    """Boolean row masks of every slice for one `RowBatch` (all slices exclude rows outside the training mask)."""
    valid = batch.train_mask_B.bool()
    role = batch.role_B
    asst = valid & (role == int(Role.ASSISTANT))
    return {
        "all": valid,
        "assistant": asst,
        "first_assistant": asst & (batch.turn_idx_B >= 0) & (batch.turn_idx_B < first_assistant_tokens),
        "last_assistant": asst & (batch.turn_rem_B == 0),
        "user": valid & (role == int(Role.USER)),
        "text": valid & (role == int(Role.TEXT)),
    }


@dataclass
class LatentStats:
    """Accumulated sums of one pass (see the module docstring); tensors live on the CPU."""

    n_models: int
    n_latents: int
    d_in: int
    count_S: Tensor
    fired_SF: Tensor
    sum_act_SF: Tensor
    sumsq_F: Tensor
    max_F: Tensor
    S_x_MFX: Tensor
    S_h_MFX: Tensor
    S_diff_SFX: Tensor
    diff_sq_S: Tensor
    sum_x_MX: Tensor
    sumsq_x_M: Tensor
    sq_err_M: Tensor
    base_diff_PMX: Tensor
    """Raw-space sum of (x_m - x_first) per baseline position class and model."""
    base_norm_PM: Tensor
    """Raw-space sum of ||x_m|| per baseline position class and model."""
    base_count_P: Tensor
    top: TopExamples
    S_ctrl_SFX: Tensor | None = None
    """Per slice, sum of f_j(x) (x_control - x_base) in the normalised space; None without a control cache."""
    seq_R: list[np.ndarray] = field(default_factory=list)
    pos_R: list[np.ndarray] = field(default_factory=list)
    n_rows: int = 0
    seconds: float = 0.0

    @classmethod
    def zeros(cls, n_models: int, n_latents: int, d_in: int, top_k: int) -> LatentStats:
        S, P, M, F, X = len(SLICES), len(BASELINE_POSITIONS), n_models, n_latents, d_in
        z = torch.zeros
        return cls(
            n_models=M, n_latents=F, d_in=X,
            count_S=z(S, dtype=torch.float64), fired_SF=z(S, F), sum_act_SF=z(S, F, dtype=torch.float64),
            sumsq_F=z(F, dtype=torch.float64), max_F=z(F),
            S_x_MFX=z(M, F, X), S_h_MFX=z(M, F, X), S_diff_SFX=z(S, F, X), diff_sq_S=z(S, dtype=torch.float64),
            sum_x_MX=z(M, X, dtype=torch.float64), sumsq_x_M=z(M, dtype=torch.float64), sq_err_M=z(M, dtype=torch.float64),
            base_diff_PMX=z(P, M, X, dtype=torch.float64), base_norm_PM=z(P, M, dtype=torch.float64), base_count_P=z(P, dtype=torch.float64),
            top=TopExamples(top_k, F),
        )  # fmt: skip

    # ------------------------------------------------------------------ derived quantities
    def freq_SF(self) -> Tensor:
        return self.fired_SF / self.count_S.clamp_min(1).float()[:, None]

    def mean_act_SF(self) -> Tensor:
        """Mean activation over the tokens where the latent fires (0 where it never does)."""
        return (self.sum_act_SF / self.fired_SF.double().clamp_min(1)).float()

    def fve_M(self) -> Tensor:
        n = self.count_S[0].clamp_min(1)
        total = self.sumsq_x_M - (self.sum_x_MX.pow(2).sum(-1) / n)
        return (1 - self.sq_err_M / total.clamp_min(1e-12)).float()

    def row_seq_pos(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.seq_R or [np.zeros(0, np.int64)]), np.concatenate(
            self.pos_R or [np.zeros(0, np.int64)]
        )


@torch.no_grad()
def collect_stats(
    cc,
    acts,
    *,
    max_rows: int,
    batch_size: int,
    first_assistant_tokens: int,
    top_k: int,
    fast: bool,
    device: str = "cpu",
    control=None,
) -> LatentStats:
    """Run the crosscoder over the cache once and accumulate a `LatentStats` (progress bar, throughput logged).

    `control`: an activation set of (base, control fine-tune) holding the same rows as `acts` (same tokens, same
    order); read in step with it, each row checked, to accumulate ``S_ctrl``.
    """
    cfg = cc.cfg
    M, F, X = cfg.n_models, cfg.n_latents, cfg.n_hooks * cfg.d_model
    if not bool((cc.fold_ML == 1).all()):
        raise DataError(
            "this crosscoder has its normalisation folded in (an export copy); analyse the run's final/ checkpoint"
        )
    st = LatentStats.zeros(M, F, X, top_k)
    ctrl_rows = None if control is None else control.iter_rows(batch_size)
    if ctrl_rows is not None:
        st.S_ctrl_SFX = torch.zeros(len(SLICES), F, X)
    W_dec_MFX = cc.W_dec_FMLD.detach().permute(1, 0, 2, 3).reshape(M, F, X)
    b_dec_MX = cc.b_dec_MLD.detach().reshape(M, X)
    total = acts.n_rows if max_rows <= 0 else min(max_rows, acts.n_rows)
    bar = tqdm(total=total, unit="tok", desc="latent stats", mininterval=2.0)
    t0 = time.perf_counter()
    for batch in acts.iter_rows(batch_size):
        if st.n_rows >= total:
            break
        keep = min(batch.x_BMLD.shape[0], total - st.n_rows)
        xc_BLD = None if ctrl_rows is None else _control_rows(batch, next(ctrl_rows, None), st.n_rows)[:keep]
        _accumulate(st, cc, batch, keep, W_dec_MFX, b_dec_MX, first_assistant_tokens, fast, device, xc_BLD)
        bar.update(keep)
        bar.set_postfix(tok_s=f"{st.n_rows / (time.perf_counter() - t0):.0f}")
    bar.close()
    st.seconds = time.perf_counter() - t0
    if st.count_S[0] == 0:
        raise DataError(
            "no analysable rows in the activation cache (all masked or empty); check the cache and data.exclude_* options"
        )
    log.info(
        "latent stats over %d tokens x %d latents in %.1f s (%.0f tokens/s)",
        st.n_rows,
        F,
        st.seconds,
        st.n_rows / max(st.seconds, 1e-9),
    )
    return st


def _control_rows(batch, ctrl, row: int) -> Tensor:
    """The control model's activations ``[B, L, D]`` for the rows of `batch`; refuses rows that are not the same."""
    same = (
        ctrl is not None
        and ctrl.x_BMLD.shape[0] == batch.x_BMLD.shape[0]
        and torch.equal(ctrl.token_B, batch.token_B)
        and torch.equal(ctrl.seq_B, batch.seq_B)
        and torch.equal(ctrl.pos_B, batch.pos_B)
    )
    if not same:
        raise DataError(
            f"control activations differ from the run's cache at row {row} (other tokens or layout); harvest the base "
            "and the control model with the run's data config (python -m crosscoder.analysis control)"
        )
    return ctrl.x_BMLD[:, -1]


def _finite(x: Tensor, batch, where: str) -> Tensor:
    """`x` (rows of `batch`) unchanged; a non-finite value is refused, naming the first row's sequence and position."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).flatten(1).any(1).nonzero()[0, 0])
        raise NumericsError(
            f"non-finite activation in {where} at sequence {int(batch.seq_B[bad])} position {int(batch.pos_B[bad])}; rebuild {where}"
        )
    return x


def _accumulate(
    st: LatentStats, cc, batch, keep: int, W_dec_MFX: Tensor, b_dec_MX: Tensor, first_n: int, fast: bool, device: str,
    xc_BLD: Tensor | None = None,
) -> None:  # fmt: skip
    M = st.n_models
    x_BMLD = _finite(batch.x_BMLD[:keep].to(device), batch, "the cache")
    masks = {k: v[:keep].to(device) for k, v in slice_masks(batch, first_n).items()}
    valid_B = masks["all"]
    xn_BMX = cc.normalise(x_BMLD).view(keep, M, -1)
    f: Tensor | ActivePairs  # what the f^T products read: active entries (fast path) or the dense matrix
    if fast:  # active entries straight from the TopK selection; the dense [B, F] matrix is never built
        pairs = encode_active(cc, x_BMLD).select_rows(valid_B)
        pairs_T = pairs.col_major()  # sorted once, reused by every f^T product
        f = pairs_T
    else:
        f_BF = cc.encode(x_BMLD).float() * valid_B[:, None]  # masked rows never count
        pairs = pairs_T = ActivePairs.from_dense(f_BF)  # for the top examples only
        f = f_BF

    # slices: counts, firing, activation sums, and the ft - base (and control - base) attribution sums
    diff_BX = xn_BMX[:, -1] - xn_BMX[:, 0]
    ctrl_BX = None  # the control in the ft's place (normalised with the ft's scale) minus the base
    if xc_BLD is not None:
        xc_BLD = _finite(xc_BLD.to(device), batch, "the control cache")
        ctrl_BX = (xc_BLD * cc.scale_ML[-1][:, None]).reshape(keep, -1) - xn_BMX[:, 0]
    for s, name in enumerate(SLICES):
        m_B = masks[name]
        n = int(m_B.sum())
        if n == 0:
            continue
        st.count_S[s] += n
        st.diff_sq_S[s] += float(diff_BX[m_B].pow(2).sum())
        f_s: Tensor | ActivePairs  # the slice's rows of f, in the form the f^T products read
        if fast:
            f_s = sub = pairs_T.select_rows(m_B)
            st.fired_SF[s] += sub.per_latent().float().cpu()
            st.sum_act_SF[s] += sub.per_latent(sub.vals_N).cpu()
        else:
            f_s = f_sub = f_BF * m_B[:, None]
            st.fired_SF[s] += (f_sub > 0).sum(0).float().cpu()
            st.sum_act_SF[s] += f_sub.sum(0).double().cpu()
        if name != "all":
            st.S_diff_SFX[s] += weighted_sum(f_s, diff_BX).cpu()
        if ctrl_BX is not None and st.S_ctrl_SFX is not None:
            st.S_ctrl_SFX[s] += weighted_sum(f_s, ctrl_BX).cpu()
    if fast:
        st.sumsq_F += pairs.per_latent(pairs.vals_N.pow(2)).cpu()
        st.max_F = torch.maximum(st.max_F, pairs.max_per_latent().cpu())
    else:
        st.sumsq_F += f_BF.double().pow(2).sum(0).cpu()
        st.max_F = torch.maximum(st.max_F, f_BF.max(0).values.cpu())

    # Latent Scaling numerators and FVE (normalised space)
    for m in range(M):
        xhat_BX = decode_normalised(pairs if fast else f, W_dec_MFX[m], b_dec_MX[m])
        x_BX = xn_BMX[:, m]
        st.S_x_MFX[m] += weighted_sum(f, x_BX).cpu()
        st.S_h_MFX[m] += weighted_sum(f, xhat_BX).cpu()
        xv = x_BX[valid_B]
        st.sum_x_MX[m] += xv.double().sum(0).cpu()
        st.sumsq_x_M[m] += float(xv.double().pow(2).sum())
        st.sq_err_M[m] += float((xv - xhat_BX[valid_B]).double().pow(2).sum())
    st.S_diff_SFX[0] = st.S_x_MFX[-1] - st.S_x_MFX[0]

    # activation-difference baseline (raw space)
    x_raw_BMX = x_BMLD.reshape(keep, M, -1)
    for p, name in enumerate(BASELINE_POSITIONS):
        m_B = masks[name]
        if not bool(m_B.any()):
            continue
        xr = x_raw_BMX[m_B].double()
        st.base_count_P[p] += int(m_B.sum())
        st.base_diff_PMX[p] += (xr - xr[:, :1]).sum(0).cpu()
        st.base_norm_PM[p] += xr.norm(dim=-1).sum(0).cpu()

    st.top.update(pairs_T, st.n_rows)
    st.seq_R.append(batch.seq_B[:keep].numpy().astype(np.int64))
    st.pos_R.append(batch.pos_B[:keep].numpy().astype(np.int64))
    st.n_rows += keep
