"""Per-checkpoint statistics of a crosscoder over a checkpoint series (base = model 0, then c1 ... cN).

:func:`series_pass` reads the run's activation cache once and gives, per latent j and checkpoint k:

- ``dec_norm``: ||d_j,k|| in the crosscoder's normalised space (summed over hooks), and ``rel_norm`` =
  ||d_j,k|| / (||d_j,0|| + ||d_j,k||);
- ``cos_base``: the cosine of d_j,k with the base decoder d_j,0 (hooks concatenated);
- ``freq_on``: the fraction of tokens on which the latent fires when *every* input slot is fed checkpoint k's
  activation (the encoder reads all models at once, so this is how present the latent's feature is in checkpoint k
  alone); ``freq`` is the ordinary joint frequency;
- ``attr``: the attribution of checkpoint k's shift from the base, the model-diff score's quantity for the pair
  (base, ck): sum_x f_j(x) <d_j,k − d_j,0, x_k − x_0> / sum_x ||x_k − x_0||² (normalised space, hooks concatenated),
  per token slice. For k = N it is the latent table's ``attr_<slice>``.

:func:`add_trait_signals` adds, per trait and checkpoint on the assistant tokens of the corpus (and on all tokens):

- ``signal``: the persona-vector projection of the crosscoder's reconstructed mean shift from the base,
  <mean(x̂_k − x̂_0), v̂>, split into per-latent contributions m_j · <d_j,k/s_k − d_j,0/s_0, v̂> (m_j the latent's
  mean activation; raw activation space) plus the decoder-bias term;
- ``activation_signal``: the same projection of the true mean activation shift <mean(x_k − x_0), v̂>.

v̂ is the unit persona vector of the trait in the *base* model at the lens hook. Nothing here runs a language model.
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
    from crosscoder.data.protocols import Activations
    from crosscoder.xc.model import Crosscoder

SLICES = ("assistant", "all")


@dataclass
class _Sums:
    """Accumulators of one pass over the cache."""

    f: dict[str, Tensor]
    x: dict[str, Tensor]
    attr_num: dict[str, Tensor]
    diff_sq: dict[str, Tensor]
    counts: dict[str, int]
    fires_F: Tensor
    fires_FK: Tensor
    n_train: int = 0


@dataclass
class SeriesStats:
    """Per-latent and per-trait trajectories of one crosscoder over a series (arrays are [F, K] or [K])."""

    model_names: list[str]
    hook: str
    hook_idx: int
    """Index of `hook` among the run's hooks (the lens hook)."""
    dec_norm_FK: np.ndarray
    rel_norm_FK: np.ndarray
    cos_base_FK: np.ndarray
    freq_on_FK: np.ndarray
    freq_F: np.ndarray
    mean_act_F: dict[str, np.ndarray]
    """Mean latent activation per token slice."""
    base_unit_FX: np.ndarray
    """Unit base-model decoders (hooks concatenated), to match latents between crosscoders of the same series."""
    attr_FK: dict[str, np.ndarray] = field(default_factory=dict)
    """slice -> [F, K] attribution of checkpoint k's shift from the base (column 0 is 0)."""
    mean_x_KD: dict[str, np.ndarray] = field(default_factory=dict)
    """slice -> [K, D] mean raw activation of each model at the hook."""
    signal: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """trait -> slice -> [K] crosscoder signal (reconstructed shift on the persona vector; base = 0)."""
    contrib: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """trait -> slice -> [F, K] per-latent contributions to the signal."""
    activation_signal: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """trait -> slice -> [K] true mean activation shift on the persona vector."""
    n_rows: dict[str, int] = field(default_factory=dict)

    @property
    def series_attr_F(self) -> np.ndarray:
        """The largest attribution over checkpoints and slices (the series score before exclusivity)."""
        stacked = np.stack([np.nan_to_num(a, nan=-np.inf) for a in self.attr_FK.values()])
        return np.asarray(stacked.max(axis=(0, 2)), dtype=np.float64)

    @property
    def peak_K(self) -> np.ndarray:
        """Per latent, the checkpoint where that largest attribution is reached."""
        stacked = np.stack([np.nan_to_num(a, nan=-np.inf) for a in self.attr_FK.values()])
        return np.asarray(stacked.max(axis=0).argmax(axis=1), dtype=np.int64)


def _new_sums(M: int, F: int, D: int) -> _Sums:
    z = {s: torch.zeros(M, F, dtype=torch.float64) for s in SLICES}
    return _Sums({s: torch.zeros(F, dtype=torch.float64) for s in SLICES},
                 {s: torch.zeros(M, D, dtype=torch.float64) for s in SLICES}, z,
                 {s: torch.zeros(M, dtype=torch.float64) for s in SLICES},
                 dict.fromkeys(SLICES, 0), torch.zeros(F), torch.zeros(F, M))  # fmt: skip


def _accumulate(acc: _Sums, cc: Crosscoder, x_BMLD: Tensor, role_B: Tensor, hook_idx: int, diff_MFX: Tensor) -> None:
    """Add one batch of training rows to the sums."""
    M = x_BMLD.shape[1]
    f_BF = cc.encode(x_BMLD)
    acc.fires_F += (f_BF > 0).sum(0)
    for k in range(M):
        acc.fires_FK[:, k] += (cc.encode(x_BMLD[:, [k] * M]) > 0).sum(0)
    acc.n_train += int(x_BMLD.shape[0])
    xn_BMX = (x_BMLD * cc.scale_ML[:, :, None]).reshape(x_BMLD.shape[0], M, -1)
    for s in SLICES:
        sel = role_B == int(Role.ASSISTANT) if s == "assistant" else torch.ones_like(role_B, dtype=torch.bool)
        if not bool(sel.any()):
            continue
        f_sF = f_BF[sel].double()
        acc.f[s] += f_sF.sum(0)
        acc.x[s] += x_BMLD[sel][:, :, hook_idx].sum(0).double()
        acc.counts[s] += int(sel.sum())
        delta_sMX = (xn_BMX[sel] - xn_BMX[sel][:, :1]).double()
        acc.diff_sq[s] += (delta_sMX**2).sum(dim=(0, 2))
        for k in range(1, M):
            acc.attr_num[s][k] += (f_sF * (delta_sMX[:, k] @ diff_MFX[k].T)).sum(0)


def _pass(cc: Crosscoder, acts: Activations, hook_idx: int, batch_size: int, max_rows: int) -> _Sums:
    """Accumulate frequencies, mean activations, mean raw activations and attribution sums over the cache."""
    M, F, D = cc.cfg.n_models, cc.cfg.n_latents, cc.cfg.d_model
    acc = _new_sums(M, F, D)
    W_MFX = cc.W_dec_FMLD.detach().double().permute(1, 0, 2, 3).reshape(M, F, -1)
    diff_MFX = W_MFX - W_MFX[:1]
    seen = 0
    for rb in acts.iter_rows(batch_size):
        if max_rows and seen >= max_rows:
            break
        seen += int(rb.x_BMLD.shape[0])
        keep = rb.train_mask_B
        if bool(keep.any()):
            _accumulate(acc, cc, rb.x_BMLD[keep], rb.role_B[keep], hook_idx, diff_MFX)
    if acc.n_train == 0 or acc.counts["assistant"] == 0:
        raise DataError(
            "the activation cache has no training rows on assistant tokens; the series statistics need chat data"
        )
    return acc


@torch.no_grad()
def series_pass(
    cc: Crosscoder, acts: Activations, model_names: list[str], hook_idx: int = -1, batch_size: int = 2048,
    max_rows: int = 0,
) -> SeriesStats:  # fmt: skip
    """The per-latent statistics above (no trait signals yet) from one pass over `acts` (`max_rows` 0 = all)."""
    W_FMLD = cc.W_dec_FMLD.detach().double()
    M = W_FMLD.shape[1]
    if len(model_names) != M:
        raise DataError(f"{len(model_names)} model names for a {M}-model crosscoder")
    hooks = list(acts.hooks)
    hook_idx = hook_idx % len(hooks)
    norms_FK = cc.decoder_norms_FM().detach().double()
    flat_FMX = W_FMLD.reshape(W_FMLD.shape[0], M, -1)
    unit_FMX = flat_FMX / flat_FMX.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    acc = _pass(cc, acts, hook_idx, batch_size, max_rows)
    attr = {s: (acc.attr_num[s] / acc.diff_sq[s].clamp_min(1e-30)[:, None]).T.numpy() for s in SLICES}
    for s in SLICES:
        if acc.counts[s] == 0:
            attr[s][:] = np.nan
    return SeriesStats(
        model_names=list(model_names),
        hook=hooks[hook_idx],
        hook_idx=hook_idx,
        dec_norm_FK=norms_FK.numpy(),
        rel_norm_FK=(norms_FK / (norms_FK[:, :1] + norms_FK).clamp_min(1e-12)).numpy(),
        cos_base_FK=(unit_FMX * unit_FMX[:, :1]).sum(-1).numpy(),
        freq_on_FK=(acc.fires_FK / acc.n_train).numpy(),
        freq_F=(acc.fires_F / acc.n_train).numpy(),
        mean_act_F={s: (acc.f[s] / max(acc.counts[s], 1)).numpy() for s in SLICES},
        base_unit_FX=unit_FMX[:, 0].float().numpy(),
        attr_FK=attr,
        mean_x_KD={s: (acc.x[s] / max(acc.counts[s], 1)).numpy() for s in SLICES},
        n_rows=dict(acc.counts),
    )


@torch.no_grad()
def add_trait_signals(stats: SeriesStats, cc: Crosscoder, persona_units: dict[str, Tensor]) -> None:
    """Fill `signal`, `contrib` and `activation_signal` for each trait (unit persona vector [D] at `stats.hook`)."""
    hook_idx = stats.hook_idx
    scale_M = cc.scale_ML[:, hook_idx].double()
    raw_dec_FMD = cc.W_dec_FMLD[:, :, hook_idx].detach().double() / scale_M[None, :, None]
    raw_bias_MD = cc.b_dec_MLD[:, hook_idx].detach().double() / scale_M[:, None]
    for trait, v_D in persona_units.items():
        v = v_D.double() / v_D.double().norm().clamp_min(1e-12)
        proj_FM = (raw_dec_FMD - raw_dec_FMD[:, :1]) @ v  # <d_j,k/s_k - d_j,0/s_0, v>
        bias_M = (raw_bias_MD - raw_bias_MD[:1]) @ v
        stats.contrib[trait], stats.signal[trait], stats.activation_signal[trait] = {}, {}, {}
        for s in SLICES:
            contrib_FK = torch.from_numpy(stats.mean_act_F[s])[:, None] * proj_FM
            stats.contrib[trait][s] = contrib_FK.numpy()
            stats.signal[trait][s] = (contrib_FK.sum(0) + bias_M).numpy()
            mean_x_KD = torch.from_numpy(stats.mean_x_KD[s])
            stats.activation_signal[trait][s] = ((mean_x_KD - mean_x_KD[:1]) @ v).numpy()


def series_stats(
    cc: Crosscoder, acts: Activations, model_names: list[str], persona_units: dict[str, Tensor], hook_idx: int = -1,
    batch_size: int = 2048,
) -> SeriesStats:  # fmt: skip
    """`series_pass` followed by `add_trait_signals`."""
    stats = series_pass(cc, acts, model_names, hook_idx, batch_size)
    add_trait_signals(stats, cc, persona_units)
    return stats
