"""Matryoshka BatchTopK crosscoder (``architecture: matryoshka``): nested prefixes that each reconstruct on their own.

The latents are selected as in BatchTopK (top ``k * B`` scores of the batch). The loss adds, to the whole dictionary's
reconstruction error, that of every inner prefix ``[0, g_i)`` (``g_i = round(matryoshka_prefixes[i] * n_latents)``):

    loss = sum_{g in (g_1, ..., g_n, F)} || x - b_dec - sum_{j < g} f_j d_j ||^2  (per token, mean over the batch)

so the first latents must reconstruct on their own, which keeps general features from being split into, or absorbed
by, the specific ones later in the dictionary (Bussmann et al. 2025; Nabeshima 2024). The inner reconstructions are
built group by group (latents ``[g_{i-1}, g_i)``) and summed cumulatively: on the fast path each group is a sparse
decode of the selected entries in that group (its backward touches only them); the dense reference multiplies the
group's columns of ``f_BF``. tests/test_xc_arch.py checks both agree, values and gradients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from crosscoder.errors import ConfigError
from crosscoder.xc.architectures import BatchTopK, register
from crosscoder.xc.fast import SparsePattern, sparse_decode

if TYPE_CHECKING:
    from crosscoder.xc.config import CrosscoderConfig


def prefix_sizes(cfg: CrosscoderConfig) -> list[int]:
    """The inner prefix widths g_1 < ... < g_n (< n_latents)."""
    sizes = [round(f * cfg.n_latents) for f in cfg.matryoshka_prefixes]
    if any(g < 1 for g in sizes) or sizes != sorted(set(sizes)) or (sizes and sizes[-1] >= cfg.n_latents):
        raise ConfigError(
            f"crosscoder.matryoshka_prefixes: {list(cfg.matryoshka_prefixes)} of {cfg.n_latents} latents give widths "
            f"{sizes}; they must be distinct, >= 1 and below n_latents: use fewer prefixes or more latents"
        )
    return sizes


@register("matryoshka")
class Matryoshka(BatchTopK):
    """BatchTopK selection; the loss adds the reconstruction error of every inner prefix of the dictionary."""

    def __init__(self, cfg: CrosscoderConfig) -> None:
        super().__init__(cfg)
        self.prefixes = prefix_sizes(cfg)

    def extra_loss(
        self, x_n_BX: Tensor, f: Tensor, pattern: SparsePattern | None, W_dec_FX: Tensor, b_dec_X: Tensor
    ) -> Tensor:
        B = x_n_BX.shape[0]
        partial_BX = b_dec_X.expand_as(x_n_BX)
        total = x_n_BX.new_zeros(())
        lo = 0
        for hi in self.prefixes:
            partial_BX = partial_BX + self._group_decode(f, pattern, W_dec_FX, lo, hi)
            total = total + (x_n_BX - partial_BX).pow(2).sum() / B
            lo = hi
        return total

    @staticmethod
    def _group_decode(f: Tensor, pattern: SparsePattern | None, W_dec_FX: Tensor, lo: int, hi: int) -> Tensor:
        """sum over latents j in [lo, hi) of f_j d_j, ``[B, X]``."""
        if pattern is None:  # dense reference: f is f_BF
            return f[:, lo:hi] @ W_dec_FX[lo:hi]
        keep_N = (pattern.cols_N >= lo) & (pattern.cols_N < hi)
        sub = SparsePattern.from_sorted(pattern.rows_N[keep_N], pattern.cols_N[keep_N], pattern.n_tokens,
                                        pattern.n_latents)  # fmt: skip
        return sparse_decode(f[keep_N], W_dec_FX, sub)
