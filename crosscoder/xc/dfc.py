"""Dedicated Feature Crosscoder (``architecture: dfc``): exclusivity by construction, not by decoder norms.

The dictionary is partitioned (arXiv 2602.11729): the last ``M * n_ex`` latents form one block per model, and only
that model encodes from and decodes to its block (``n_ex = round(dfc_exclusive * n_latents)``); every other latent
is shared (and, with ``n_shared``, the first ones are tied as usual). The partition is a mask ``allowed_FM`` on the
encoder and decoder blocks ``W_enc_FMLD[j, m]`` and ``W_dec_FMLD[j, m]``: forbidden blocks start at zero and a
gradient hook zeroes their gradient, so Adam never moves them (its update of a parameter whose gradient was always
zero is zero). A ft-only latent therefore has relative decoder norm exactly 1: what it explains the base model cannot
be said to have.

Sparsity is BatchTopK's (fast sparse path included: the masks act on the parameters' gradients, which both paths
produce in the same layout). A saved DFC whose forbidden blocks are not zero is refused on load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crosscoder.errors import ConfigError, DataError
from crosscoder.xc.architectures import BatchTopK, register

if TYPE_CHECKING:
    from crosscoder.xc.config import CrosscoderConfig
    from crosscoder.xc.model import Crosscoder


def exclusive_blocks(cfg: CrosscoderConfig) -> list[range]:
    """The latents exclusive to each model, in model order (the last ``M * n_ex`` latents)."""
    F, M = cfg.n_latents, cfg.n_models
    n_ex = max(1, round(cfg.dfc_exclusive * F))
    start = F - M * n_ex
    if start < cfg.n_shared or M < 2:
        raise ConfigError(
            f"crosscoder.dfc_exclusive: {M} models x {n_ex} exclusive latents leave {start} for {cfg.n_shared} tied "
            f"shared ones (and dfc needs >= 2 models); lower dfc_exclusive or n_shared, or raise n_latents"
        )
    return [range(start + m * n_ex, start + (m + 1) * n_ex) for m in range(M)]


def allowed_mask(cfg: CrosscoderConfig) -> Tensor:
    """``[F, M]``: 1 where latent j may encode from / decode to model m, 0 in the other models' exclusive blocks."""
    mask_FM = torch.ones(cfg.n_latents, cfg.n_models)
    for m, block in enumerate(exclusive_blocks(cfg)):
        mask_FM[block.start : block.stop] = 0.0
        mask_FM[block.start : block.stop, m] = 1.0
    return mask_FM


@register("dfc")
class DedicatedFeatures(BatchTopK):
    """BatchTopK over a dictionary partitioned into per-model exclusive blocks and a shared rest."""

    allowed_FM: Tensor

    def __init__(self, cfg: CrosscoderConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("allowed_FM", allowed_mask(cfg), persistent=False)
        """1 where a latent may read / write a model (derived from the config, so not saved)."""

    def _mask(self, g_FMLD: Tensor) -> Tensor:
        return g_FMLD * self.allowed_FM.to(g_FMLD)[:, :, None, None]

    def attach(self, cc: Crosscoder) -> None:
        """Zero the forbidden encoder and decoder blocks and keep them zero (their gradients are masked)."""
        with torch.no_grad():
            cc.W_dec_FMLD.copy_(self._mask(cc.W_dec_FMLD))
            cc.W_enc_FMLD.copy_(self._mask(cc.W_enc_FMLD))
        cc.W_dec_FMLD.register_hook(self._mask)
        cc.W_enc_FMLD.register_hook(self._mask)

    def check_weights(self, cc: Crosscoder, source: str) -> None:
        forbidden_FM = (self.allowed_FM == 0).to(cc.W_dec_FMLD.device)
        for name, W in (("W_dec_FMLD", cc.W_dec_FMLD), ("W_enc_FMLD", cc.W_enc_FMLD)):
            if bool((W.detach().abs().sum(dim=(2, 3)) * forbidden_FM).any()):
                raise DataError(
                    f"{source}: the dfc {name} has weights in another model's exclusive block; the file is corrupt "
                    "or was saved with another crosscoder.dfc_exclusive"
                )
