"""Decoder geometry of a crosscoder: per-model decoder norms and shares, cross-model cosines, and the latent classes.

Everything here uses the decoder as trained (normalised activation space, each latent's decoder flattened over hooks).
For N models the first is the base and the last the final fine-tune; a latent is *present* in model m when its decoder
norm there is at least ``(1 - t) / t`` of its largest one (t = ``analyze.rank.exclusive_threshold``), which for a pair reproduces
the published relative-norm cut: rel_norm > t is ft-exclusive, rel_norm < 1 - t base-exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

CLASSES = ("ft_exclusive", "base_exclusive", "partial", "shifted", "shared", "dead")
"""Latent classes. `partial` (N > 2 only): present in some models but neither base- nor ft-exclusive."""
EXCLUSIVE_CLASSES = ("ft_exclusive", "base_exclusive", "partial")


@dataclass
class Geometry:
    """Decoder-only quantities per latent (classes other than `dead` need no data)."""

    model_names: list[str]
    W_dec_MFX: Float[Tensor, "M F X"]
    """Decoder vectors per model, normalised space, flattened over hooks."""
    norms_FM: Float[Tensor, "F M"]
    share_FM: Float[Tensor, "F M"]
    cos_pairs: dict[str, Tensor]
    """Cosine between two models' decoders, keyed ``cos_<a>__<b>``."""
    present_FM: Tensor
    klass: np.ndarray
    """Class name per latent (before the data-dependent `dead` test)."""
    ref_F: Tensor
    """Index of the model with the largest decoder norm."""
    low_F: Tensor
    """Index of the model with the smallest decoder norm."""

    @property
    def n_latents(self) -> int:
        return int(self.norms_FM.shape[0])

    @property
    def rel_norm_F(self) -> Tensor:
        """||d_ft|| / (||d_base|| + ||d_ft||) with base = first, ft = last model."""
        n = self.norms_FM
        return n[:, -1] / (n[:, 0] + n[:, -1]).clamp_min(1e-12)

    @property
    def cos_F(self) -> Tensor:
        """Decoder cosine between the first and the last model."""
        return self.cos_pairs[f"cos_{self.model_names[0]}__{self.model_names[-1]}"]

    @property
    def exclusivity_F(self) -> Tensor:
        """max share - min share (for a pair |2 rel_norm - 1|): 0 for evenly shared, 1 for fully exclusive."""
        return self.share_FM.max(1).values - self.share_FM.min(1).values

    def diff_FX(self) -> Float[Tensor, "F X"]:
        """Decoder difference d_ft - d_base (last minus first model)."""
        return self.W_dec_MFX[-1] - self.W_dec_MFX[0]

    def direction_FX(self) -> Float[Tensor, "F X"]:
        """The direction each latent claims the fine-tune added: d_ref for exclusive latents, d_ft - d_base otherwise."""
        exclusive = torch.from_numpy(np.isin(self.klass, EXCLUSIVE_CLASSES))
        ref = self.W_dec_MFX[self.ref_F, torch.arange(self.n_latents)]
        return torch.where(exclusive[:, None], ref, self.diff_FX())

    def ratio_models(self) -> tuple[Tensor, Tensor]:
        """(numerator, denominator) model index per latent for the Latent Scaling ratios nu = beta_num / beta_den."""
        exclusive = torch.from_numpy(np.isin(self.klass, EXCLUSIVE_CLASSES))
        M = len(self.model_names)
        num = torch.where(exclusive, self.low_F, torch.zeros_like(self.low_F))
        den = torch.where(exclusive, self.ref_F, torch.full_like(self.ref_F, M - 1))
        return num, den


def decoder_geometry(cc, model_names: list[str], exclusive_threshold: float, shifted_cosine: float) -> Geometry:
    """Norms, shares, cosines and classes of every latent of `cc` (models in run order, first = base)."""
    cfg = cc.cfg
    M, F = cfg.n_models, cfg.n_latents
    if len(model_names) != M:
        raise ValueError(f"{len(model_names)} model names for a {M}-model crosscoder")
    W_MFX = cc.W_dec_FMLD.detach().float().permute(1, 0, 2, 3).reshape(M, F, -1).cpu()
    norms_FM = cc.decoder_norms_FM().detach().float().cpu()
    share_FM = norms_FM / norms_FM.sum(1, keepdim=True).clamp_min(1e-12)
    unit_MFX = W_MFX / W_MFX.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos_pairs = {}
    for a in range(M):
        for b in range(a + 1, M):
            cos_pairs[f"cos_{model_names[a]}__{model_names[b]}"] = (unit_MFX[a] * unit_MFX[b]).sum(-1)
    max_F = norms_FM.max(1).values
    ratio = (1 - exclusive_threshold) / exclusive_threshold
    present_FM = (norms_FM >= ratio * max_F[:, None]) & (max_F[:, None] > 0)
    cos_F = cos_pairs[f"cos_{model_names[0]}__{model_names[-1]}"]

    klass = np.full(F, "shared", dtype=object)
    all_present = present_FM.all(1)
    first, last = present_FM[:, 0], present_FM[:, -1]
    others = present_FM[:, 1:].any(1)
    klass[(~all_present & ~first & last).numpy()] = "ft_exclusive"
    klass[(~all_present & first & ~others).numpy()] = "base_exclusive"
    klass[(~all_present & ~(~first & last) & ~(first & ~others)).numpy()] = "partial"
    klass[(all_present & (cos_F < shifted_cosine)).numpy()] = "shifted"
    klass[(max_F <= 0).numpy()] = "dead"
    return Geometry(
        model_names=list(model_names),
        W_dec_MFX=W_MFX,
        norms_FM=norms_FM,
        share_FM=share_FM,
        cos_pairs=cos_pairs,
        present_FM=present_FM,
        klass=klass,
        ref_F=norms_FM.argmax(1),
        low_F=norms_FM.argmin(1),
    )
