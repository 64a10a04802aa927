"""Attribution of the ft - base activation difference to latents, the ranking score, and the candidate list.

Attribution (per data slice s, normalised space, decoders flattened over hooks):

    attr_s(j) = sum_{x in s} f_j(x) <d_j,ft - d_j,base, delta(x)>  /  sum_{x in s} ||delta(x)||^2,
    delta(x)  = x_ft(x) - x_base(x)

i.e. the projection of latent j's contribution to the reconstructed difference onto the true per-token difference,
as a fraction of the difference's total squared norm. Summed over latents (plus the decoder-bias term) it is the
share of the difference the crosscoder explains, so latents are directly comparable; it is negative for latents
whose decoder change points against the observed change.

Score: ``score(j) = max(0, max_s attr_s(j)) * (1 + w * exclusivity(j))`` over slices with enough tokens, where
exclusivity = max share - min share of the decoder norm (|2 rel_norm - 1| for a pair) and w = exclusivity_weight.
With a control cache (`crosscoder.analysis.stats.control`: the base and a control fine-tune of the same recipe on the
same tokens) the control attribution ``ctrl_s(j) = sum_{x in s} f_j(x) <d_j,ft - d_j,base, x_ctrl(x) - x_base(x)> /
sum_{x in s} ||delta(x)||^2`` reads the latent's decoder change against what the control changed where the latent
fires, and the score uses ``attr_s(j) - max(0, ctrl_s(j))``: the attribution the control does not share.
Candidates: ft-exclusive and shifted latents that Latent Scaling does not flag as artifacts, with score > 0,
ranked by score (ties: larger diff_mass first).
"""

from __future__ import annotations

import numpy as np
import torch

from crosscoder.analysis.stats.collect import SLICES, LatentStats
from crosscoder.analysis.stats.geometry import Geometry
from crosscoder.analysis.stats.scaling import ScalingResult

MIN_SLICE_TOKENS = 20
"""Slices with fewer analysed tokens do not enter the score (their attribution is still reported)."""
CANDIDATE_CLASSES = ("ft_exclusive", "shifted")


def _projection_SF(geo: Geometry, st: LatentStats, S_SFX: torch.Tensor) -> torch.Tensor:
    """<Delta_j, S_s(j)> / sum_s ||delta||^2 per slice and latent (NaN for empty slices)."""
    diff_FX = geo.diff_FX().double()
    out = torch.full((len(SLICES), geo.n_latents), float("nan"), dtype=torch.float64)
    for s in range(len(SLICES)):
        if st.count_S[s] > 0 and st.diff_sq_S[s] > 0:
            out[s] = (diff_FX * S_SFX[s].double()).sum(-1) / st.diff_sq_S[s]
    return out.float()


def attribution_SF(geo: Geometry, st: LatentStats) -> torch.Tensor:
    """attr_s(j) per slice and latent (NaN for empty slices)."""
    return _projection_SF(geo, st, st.S_diff_SFX)


def control_attribution_SF(geo: Geometry, st: LatentStats) -> torch.Tensor | None:
    """ctrl_s(j) per slice and latent (NaN for empty slices); None without a control cache."""
    return None if st.S_ctrl_SFX is None else _projection_SF(geo, st, st.S_ctrl_SFX)


def net_attribution_SF(attr_SF: torch.Tensor, ctrl_SF: torch.Tensor | None) -> torch.Tensor:
    """The attribution the control does not share: attr - max(0, ctrl) (attr itself without a control)."""
    return attr_SF if ctrl_SF is None else attr_SF - ctrl_SF.clamp_min(0)


def score_latents(
    geo: Geometry, st: LatentStats, attr_SF: torch.Tensor, exclusivity_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """(score, best slice name) per latent."""
    usable = torch.tensor([bool(st.count_S[s] >= MIN_SLICE_TOKENS) for s in range(len(SLICES))])
    if not bool(usable.any()):
        usable[0] = True
    a = torch.nan_to_num(attr_SF, nan=-np.inf)
    a[~usable] = -np.inf
    best, arg = a.max(0)
    score = best.clamp_min(0) * (1 + exclusivity_weight * geo.exclusivity_F)
    score = torch.nan_to_num(score, nan=0.0, posinf=0.0, neginf=0.0)
    return score.numpy().astype(np.float64), np.array([SLICES[int(i)] for i in arg], dtype=object)


def rank_candidates(
    klass: np.ndarray, artifact: np.ndarray, score: np.ndarray, diff_mass: np.ndarray, n_candidates: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rank or 0, is_candidate) per latent: eligible latents ranked 1.. by score; the first n_candidates are candidates."""
    eligible = np.isin(klass, CANDIDATE_CLASSES) & (artifact == "") & (score > 0)
    idx = np.flatnonzero(eligible)
    order = idx[np.lexsort((-diff_mass[idx], -score[idx]))]
    rank = np.zeros(len(klass), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return rank, (rank > 0) & (rank <= n_candidates)


def mark_dead(geo: Geometry, st: LatentStats, dead_max_freq: float) -> np.ndarray:
    """Classes with latents that (almost) never fire on the analysed data set to `dead`."""
    klass = geo.klass.copy()
    freq_all = st.freq_SF()[0].numpy()
    klass[freq_all <= dead_max_freq] = "dead"
    return klass


def scaling_columns(sc: ScalingResult, names: list[str]) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for m, name in enumerate(names):
        cols[f"beta_act_{name}"] = sc.beta_act_FM[:, m].numpy()
        cols[f"beta_recon_{name}"] = sc.beta_recon_FM[:, m].numpy()
        cols[f"beta_err_{name}"] = sc.beta_err_FM[:, m].numpy()
    cols["nu_recon"] = sc.nu_recon_F.numpy()
    cols["nu_err"] = sc.nu_err_F.numpy()
    cols["ls_artifact"] = sc.artifact
    return cols
