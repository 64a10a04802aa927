"""Per-checkpoint statistics of a crosscoder over a checkpoint series (base = model 0, then c1 ... cN).

One pass over the run's activation cache gives, per latent j and checkpoint k:

- ``dec_norm``: ||d_j,k|| in the crosscoder's normalised space (summed over hooks), and ``rel_norm`` =
  ||d_j,k|| / (||d_j,0|| + ||d_j,k||);
- ``cos_base``: the cosine of d_j,k with the base decoder d_j,0 (hooks concatenated);
- ``freq_on``: the fraction of tokens on which the latent fires when *every* input slot is fed checkpoint k's
  activation (the crosscoder's encoder reads all models at once, so this is how present the latent's feature is in
  checkpoint k alone); ``freq`` is the ordinary joint frequency;

and per trait and checkpoint, on the assistant tokens of the corpus (and on all tokens):

- ``signal``: the persona-vector projection of the crosscoder's reconstructed mean shift from the base,
  <mean(x̂_k − x̂_0), v̂>, and its split into per-latent contributions m_j · <d_j,k/s_k − d_j,0/s_0, v̂> (m_j the
  latent's mean activation; raw activation space) plus the decoder-bias term;
- ``activation_signal``: the same projection of the true mean activation shift <mean(x_k − x_0), v̂>.

v̂ is the unit persona vector of the trait in the *base* model at the hook. Nothing here reads a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from crosscoder.data.masks import Role
from crosscoder.errors import DataError

if TYPE_CHECKING:
    from crosscoder.data.api import ActivationSet
    from crosscoder.xc.model import Crosscoder

SLICES = ("assistant", "all")


@dataclass
class _Sums:
    """Accumulators of one pass over the cache."""

    f: dict[str, Tensor]
    x: dict[str, Tensor]
    counts: dict[str, int]
    fires_F: Tensor
    fires_FK: Tensor
    n_train: int = 0


@dataclass
class SeriesStats:
    """Per-latent and per-trait trajectories of one crosscoder over a series (arrays are [F, K] or [K])."""

    model_names: list[str]
    hook: str
    dec_norm_FK: np.ndarray
    rel_norm_FK: np.ndarray
    cos_base_FK: np.ndarray
    freq_on_FK: np.ndarray
    freq_F: np.ndarray
    mean_act_F: dict[str, np.ndarray]
    """Mean latent activation per token slice."""
    base_unit_FX: np.ndarray
    """Unit base-model decoders (hooks concatenated), to match latents between crosscoders of the same series."""
    signal: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """trait -> slice -> [K] crosscoder signal (reconstructed shift on the persona vector; base = 0)."""
    contrib: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """trait -> slice -> [F, K] per-latent contributions to the signal."""
    activation_signal: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """trait -> slice -> [K] true mean activation shift on the persona vector."""
    n_rows: dict[str, int] = field(default_factory=dict)


def _pass(cc: Crosscoder, acts: ActivationSet, hook_idx: int, batch_size: int) -> _Sums:
    """Accumulate frequencies, mean activations and mean raw activations per slice over the cache."""
    M, F, D = cc.cfg.n_models, cc.cfg.n_latents, cc.cfg.d_model
    acc = _Sums({s: torch.zeros(F, dtype=torch.float64) for s in SLICES},
                {s: torch.zeros(M, D, dtype=torch.float64) for s in SLICES},
                dict.fromkeys(SLICES, 0), torch.zeros(F), torch.zeros(F, M))  # fmt: skip
    for rb in acts.iter_rows(batch_size):
        keep = rb.train_mask_B
        if not bool(keep.any()):
            continue
        x_BMLD = rb.x_BMLD[keep]
        f_BF = cc.encode(x_BMLD)
        acc.fires_F += (f_BF > 0).sum(0)
        for k in range(M):
            acc.fires_FK[:, k] += (cc.encode(x_BMLD[:, [k] * M]) > 0).sum(0)
        acc.n_train += int(x_BMLD.shape[0])
        role_B = rb.role_B[keep]
        for s in SLICES:
            sel = role_B == int(Role.ASSISTANT) if s == "assistant" else torch.ones_like(role_B, dtype=torch.bool)
            acc.f[s] += f_BF[sel].sum(0).double()
            acc.x[s] += x_BMLD[sel][:, :, hook_idx].sum(0).double()
            acc.counts[s] += int(sel.sum())
    if acc.n_train == 0 or acc.counts["assistant"] == 0:
        raise DataError(
            "the activation cache has no training rows on assistant tokens; the series statistics need chat data"
        )
    return acc


@torch.no_grad()
def series_stats(
    cc: Crosscoder,
    acts: ActivationSet,
    model_names: list[str],
    persona_units: dict[str, Tensor],
    hook_idx: int = -1,
    batch_size: int = 2048,
) -> SeriesStats:
    """The statistics above for crosscoder `cc` over `acts` (its own cache); `persona_units` maps trait -> unit [D]."""
    W_FMLD = cc.W_dec_FMLD.detach().double()
    M = W_FMLD.shape[1]
    if len(model_names) != M:
        raise DataError(f"{len(model_names)} model names for a {M}-model crosscoder")
    hooks = list(acts.hooks)
    hook_idx = hook_idx % len(hooks)
    norms_FK = cc.decoder_norms_FM().detach().double()
    flat_FMX = W_FMLD.reshape(W_FMLD.shape[0], M, -1)
    unit_FMX = flat_FMX / flat_FMX.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos_FK = (unit_FMX * unit_FMX[:, :1]).sum(-1)
    rel_FK = norms_FK / (norms_FK[:, :1] + norms_FK).clamp_min(1e-12)
    acc = _pass(cc, acts, hook_idx, batch_size)
    scale_M = cc.scale_ML[:, hook_idx].double()
    raw_dec_FMD = W_FMLD[:, :, hook_idx] / scale_M[None, :, None]  # decoder in raw space
    raw_bias_MD = cc.b_dec_MLD[:, hook_idx].detach().double() / scale_M[:, None]
    counts, sums_f, sums_x = acc.counts, acc.f, acc.x
    stats = SeriesStats(
        model_names=list(model_names),
        hook=hooks[hook_idx],
        dec_norm_FK=norms_FK.numpy(),
        rel_norm_FK=rel_FK.numpy(),
        cos_base_FK=cos_FK.numpy(),
        freq_on_FK=(acc.fires_FK / acc.n_train).numpy(),
        freq_F=(acc.fires_F / acc.n_train).numpy(),
        mean_act_F={s: (sums_f[s] / counts[s]).numpy() for s in SLICES},
        base_unit_FX=unit_FMX[:, 0].float().numpy(),
        n_rows=dict(counts),
    )
    for trait, v_D in persona_units.items():
        v = v_D.double() / v_D.double().norm().clamp_min(1e-12)
        proj_FM = (raw_dec_FMD - raw_dec_FMD[:, :1]) @ v  # <d_j,k/s_k - d_j,0/s_0, v>
        bias_M = (raw_bias_MD - raw_bias_MD[:1]) @ v
        stats.contrib[trait], stats.signal[trait], stats.activation_signal[trait] = {}, {}, {}
        for s in SLICES:
            m_F = sums_f[s] / counts[s]
            contrib_FK = m_F[:, None] * proj_FM
            stats.contrib[trait][s] = contrib_FK.numpy()
            stats.signal[trait][s] = (contrib_FK.sum(0) + bias_M).numpy()
            mean_x_MD = sums_x[s] / counts[s]
            stats.activation_signal[trait][s] = ((mean_x_MD - mean_x_MD[:1]) @ v).numpy()
    return stats
