"""Latent Scaling (Minder et al. 2025): how much of a latent's direction each model's activation, reconstruction and
reconstruction error carry when the latent fires.

For latent j with direction u_j (its dominant model's decoder for exclusive latents, d_ft - d_base for the others)
and a target y_m(x) of model m, the least-squares fit ``y_m(x) ~ beta f_j(x) u_j`` over tokens has the closed form

    beta = sum_x f_j(x) <u_j, y_m(x)> / (||u_j||^2 sum_x f_j(x)^2)

Targets (normalised space): the activation x_m (``beta_act``), the reconstruction xhat_m (``beta_recon``), and the
error with latent j excluded, eps_m + f_j d_{j,m} (``beta_err``). With the stats pass's sums S_x = sum f_j x_m and
S_h = sum f_j xhat_m these are dot products, no second pass needed.

Ratios. For exclusive latents nu = beta[smallest-norm model] / beta[largest-norm model] (Minder et al.): a high
``nu_err`` means the model where the latent is "absent" still carries its direction in its error (Complete
Shrinkage); a high ``nu_recon`` means its reconstruction carries it through other latents (Latent Decoupling).
For shared and shifted latents (u = d_ft - d_base, whose own contribution differs by exactly 1 between the models)
nu = 1 - (beta[ft] - beta[base]): the part of the decoder shift that the error (nu_err) or the other latents'
reconstruction (nu_recon) of the two models does not support; 0 = a genuine shift, ~1 = an artifact.
Either ratio above its threshold makes an exclusive or shifted latent an artifact of the sparsity penalty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from crosscoder.analysis.stats.collect import LatentStats
from crosscoder.analysis.stats.geometry import EXCLUSIVE_CLASSES, Geometry


@dataclass
class ScalingResult:
    """Betas per model (``[F, M]``), ratios and the artifact flag per latent."""

    beta_act_FM: Tensor
    beta_recon_FM: Tensor
    beta_err_FM: Tensor
    nu_recon_F: Tensor
    nu_err_F: Tensor
    artifact: np.ndarray
    """'' | 'complete_shrinkage' | 'latent_decoupling' per latent (only exclusive and shifted latents are flagged)."""


def _ratio(num_F: Tensor, den_F: Tensor, eps: float = 1e-6) -> Tensor:
    out = num_F / den_F
    return torch.where(den_F > eps, out, torch.full_like(out, float("nan")))


def latent_scaling(geo: Geometry, st: LatentStats, nu_err_max: float, nu_recon_max: float) -> ScalingResult:
    """Betas, ratios and artifact flags of every latent from the accumulated sums."""
    u_FX = geo.direction_FX().double()
    uu_F = u_FX.pow(2).sum(-1)
    Q_F = st.sumsq_F.double()
    denom_F = uu_F * Q_F
    ok_F = denom_F > 1e-12
    denom_F = denom_F.clamp_min(1e-12)
    M = st.n_models
    A_x = torch.stack([(u_FX * st.S_x_MFX[m].double()).sum(-1) for m in range(M)], dim=1)
    A_h = torch.stack([(u_FX * st.S_h_MFX[m].double()).sum(-1) for m in range(M)], dim=1)
    own = torch.stack([(u_FX * geo.W_dec_MFX[m].double()).sum(-1) for m in range(M)], dim=1)
    nan = torch.full_like(A_x, float("nan"))
    beta_act = torch.where(ok_F[:, None], A_x / denom_F[:, None], nan)
    beta_recon = torch.where(ok_F[:, None], A_h / denom_F[:, None], nan)
    beta_err = torch.where(ok_F[:, None], (A_x - A_h + Q_F[:, None] * own) / denom_F[:, None], nan)

    num, den = geo.ratio_models()
    idx = torch.arange(geo.n_latents)
    exclusive = torch.from_numpy(np.isin(geo.klass, EXCLUSIVE_CLASSES))
    # exclusive latents: ratio (Minder et al.); shared / shifted ones: 1 - (beta_ft - beta_base), the part of the
    # decoder shift the data do not support (0 = fully supported, 1 = not at all)
    nu_recon = torch.where(
        exclusive, _ratio(beta_recon[idx, num], beta_recon[idx, den]), 1 - (beta_recon[idx, den] - beta_recon[idx, num])
    )
    nu_err = torch.where(
        exclusive, _ratio(beta_err[idx, num], beta_err[idx, den]), 1 - (beta_err[idx, den] - beta_err[idx, num])
    )

    flagged = np.isin(geo.klass, ("ft_exclusive", "base_exclusive", "partial", "shifted"))
    artifact = np.full(geo.n_latents, "", dtype=object)
    shrink = flagged & (nu_err.numpy() > nu_err_max)
    decouple = flagged & ~shrink & (nu_recon.numpy() > nu_recon_max)
    artifact[shrink] = "complete_shrinkage"
    artifact[decouple] = "latent_decoupling"
    return ScalingResult(
        beta_act.float(), beta_recon.float(), beta_err.float(), nu_recon.float(), nu_err.float(), artifact
    )
