"""Per-latent sums over tokens, with a sparse fast path and a plain-torch dense reference.

Latent statistics need, for every latent j, sums like ``S_j = sum_x f_j(x) y(x)`` (a vector per latent) over many
tokens. Dense, that is a ``[F, B] @ [B, X]`` GEMM per batch; but only a few latents fire per token, so the fast path
builds the transposed activation matrix as a sparse CSR tensor from the active (token, latent) pairs and multiplies
that instead (cost ~ active pairs x X). ``fast=False`` runs the dense reference; tests check they agree.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from crosscoder.xc.model import Crosscoder


@dataclass
class ActivePairs:
    """The non-zero entries of a latent activation matrix ``f_BF``: row (token), column (latent) and value."""

    rows_N: Int[Tensor, " n"]
    cols_N: Int[Tensor, " n"]
    vals_N: Float[Tensor, " n"]
    n_rows: int
    n_latents: int
    col_sorted: bool = False
    """True when the entries are sorted by latent (column), as `col_major` returns them."""

    @classmethod
    def from_dense(cls, f_BF: Float[Tensor, "B F"]) -> ActivePairs:
        rows_N, cols_N = f_BF.nonzero(as_tuple=True)
        return cls(rows_N, cols_N, f_BF[rows_N, cols_N], int(f_BF.shape[0]), int(f_BF.shape[1]))

    def select_rows(self, keep_B: Tensor) -> ActivePairs:
        """Pairs whose row is in the boolean mask `keep_B` (row indices unchanged)."""
        m = keep_B[self.rows_N]
        return ActivePairs(self.rows_N[m], self.cols_N[m], self.vals_N[m], self.n_rows, self.n_latents, self.col_sorted)

    def col_major(self) -> ActivePairs:
        """The same entries sorted by latent (stable, so rows stay ascending within a latent)."""
        if self.col_sorted:
            return self
        order = torch.argsort(self.cols_N, stable=True)
        return ActivePairs(
            self.rows_N[order], self.cols_N[order], self.vals_N[order], self.n_rows, self.n_latents, True
        )

    def transposed_csr(self) -> Tensor:
        """``f^T`` as a sparse CSR tensor ``[F, B]`` (built directly: no COO coalescing)."""
        cm = self.col_major()
        return _csr(cm.cols_N, cm.rows_N, cm.vals_N, self.n_latents, self.n_rows)

    def csr(self) -> Tensor:
        """``f`` as a sparse CSR tensor ``[B, F]`` (pairs from ``nonzero`` are already row-major)."""
        if self.col_sorted:
            raise ValueError("csr() needs row-major pairs; keep the ActivePairs from from_dense for decoding")
        return _csr(self.rows_N, self.cols_N, self.vals_N, self.n_rows, self.n_latents)

    def per_latent(self, weights_N: Tensor | None = None) -> Tensor:
        """Sum of `weights_N` (default 1) per latent, ``[F]``."""
        w = None if weights_N is None else weights_N.double()
        return torch.bincount(self.cols_N, weights=w, minlength=self.n_latents)

    def max_per_latent(self) -> Tensor:
        """Largest value per latent, ``[F]`` (0 where inactive)."""
        out = torch.zeros(self.n_latents, dtype=self.vals_N.dtype, device=self.vals_N.device)
        return out.scatter_reduce(0, self.cols_N, self.vals_N, reduce="amax", include_self=True)


def _csr(rows_N: Tensor, cols_N: Tensor, vals_N: Tensor, n_rows: int, n_cols: int) -> Tensor:
    """CSR tensor from entries sorted by row."""
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=rows_N.device)
    crow[1:] = torch.cumsum(torch.bincount(rows_N, minlength=n_rows), 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, cols_N, vals_N, (n_rows, n_cols), check_invariants=False)


def weighted_sum(f: Float[Tensor, "B F"] | ActivePairs, y_BX: Float[Tensor, "B X"]) -> Float[Tensor, "F X"]:
    """``sum_x f_j(x) y(x)`` for every latent j: ``f^T @ y``.

    `f` is the dense activation matrix (reference path, rows that should not count zeroed) or its active entries
    restricted to the rows that count (fast path: the sparse ``f^T`` (CSR) times `y_BX`).
    """
    if isinstance(f, ActivePairs):
        if f.vals_N.numel() == 0:
            return y_BX.new_zeros(f.n_latents, y_BX.shape[1])
        return torch.sparse.mm(f.transposed_csr(), y_BX)
    return f.T @ y_BX


def decode_normalised(
    f: Float[Tensor, "B F"] | ActivePairs, W_dec_FX: Float[Tensor, "F X"], b_dec_X: Float[Tensor, " X"]
) -> Float[Tensor, "B X"]:
    """Reconstruction in the normalised space, ``f @ W_dec + b_dec`` (a sparse product for `ActivePairs`)."""
    if isinstance(f, ActivePairs):
        if f.vals_N.numel() == 0:
            return b_dec_X.expand(f.n_rows, -1).clone()
        return torch.sparse.mm(f.csr(), W_dec_FX) + b_dec_X
    return torch.addmm(b_dec_X, f, W_dec_FX)


def topk_per_group(
    group_N: Int[Tensor, " n"], value_N: Float[Tensor, " n"], payload_N: Int[Tensor, " n"], k: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the `k` largest values of each group (entries sorted by group, then value descending)."""
    if group_N.numel() == 0:
        return group_N, value_N, payload_N
    order = torch.argsort(value_N, descending=True, stable=True)
    order = order[torch.argsort(group_N[order], stable=True)]
    g, v, p = group_N[order], value_N[order], payload_N[order]
    starts = torch.ones_like(g, dtype=torch.bool)
    starts[1:] = g[1:] != g[:-1]
    start_idx = torch.cummax(torch.where(starts, torch.arange(g.numel()), torch.zeros_like(g)), dim=0).values
    rank = torch.arange(g.numel()) - start_idx
    keep = rank < k
    return g[keep], v[keep], p[keep]


class TopExamples:
    """Running top-`k` activations per latent: values and global rows in ``[k, F]`` matrices, sorted descending."""

    def __init__(self, k: int, n_latents: int) -> None:
        self.k = k
        self.value_KF = torch.full((k, n_latents), -float("inf"))
        self.row_KF = torch.full((k, n_latents), -1, dtype=torch.long)

    def update(self, pairs: ActivePairs, row_offset: int) -> None:
        """Merge the active pairs of one batch whose rows start at global row `row_offset`."""
        thresh_F = self.value_KF[-1].to(pairs.vals_N.device)
        m = pairs.vals_N > thresh_F[pairs.cols_N]  # only entries that can enter a latent's top k
        if not bool(m.any()):
            return
        g, v, p = topk_per_group(pairs.cols_N[m], pairs.vals_N[m], pairs.rows_N[m] + row_offset, self.k)
        g, v, p = g.cpu(), v.float().cpu(), p.cpu()
        affected, slot = torch.unique_consecutive(g, return_inverse=True)  # g is sorted by latent
        starts = torch.zeros(len(affected), dtype=torch.long)
        starts[1:] = torch.cumsum(torch.bincount(slot), 0)[:-1]
        rank = torch.arange(len(g)) - starts[slot]
        new_val = torch.full((len(affected), self.k), -float("inf"))
        new_row = torch.full((len(affected), self.k), -1, dtype=torch.long)
        new_val[slot, rank] = v
        new_row[slot, rank] = p
        vals = torch.cat([self.value_KF[:, affected].T, new_val], dim=1)
        rows = torch.cat([self.row_KF[:, affected].T, new_row], dim=1)
        top_v, top_i = vals.topk(self.k, dim=1)
        self.value_KF[:, affected] = top_v.T
        self.row_KF[:, affected] = rows.gather(1, top_i).T

    def for_latent(self, j: int) -> tuple[list[float], list[int]]:
        """(values, global rows) of latent `j`, largest first."""
        ok = self.row_KF[:, j] >= 0
        return self.value_KF[ok, j].tolist(), self.row_KF[ok, j].tolist()


@torch.no_grad()
def encode_active(cc: Crosscoder, x_BMLD: Float[Tensor, "B M L D"]) -> ActivePairs:
    """The active (token, latent, value) entries of ``cc.encode(x_BMLD)`` without the dense ``[B, F]`` activations.

    TopK keeps the k best-scoring latents of each token and BatchTopK (inference) those whose score is above its
    threshold, so the entries come straight from the selection: no scatter into a dense mask, no dense ReLU, no
    ``nonzero`` over ``[B, F]``. Other mechanisms go through the dense ``encode`` (same result, no speed-up). The
    reference is ``ActivePairs.from_dense(cc.encode(x_BMLD))``; tests check the two agree.
    """
    from crosscoder.xc.architectures import BatchTopK, TopK

    sp = cc.sparsity
    if not isinstance(sp, TopK) or (isinstance(sp, BatchTopK) and sp.training):
        return ActivePairs.from_dense(cc.encode(x_BMLD))
    pre_BF = torch.addmm(cc.b_enc_F, cc.normalise(x_BMLD), cc.W_enc_XF)
    B, F = pre_BF.shape
    if isinstance(sp, BatchTopK):
        if float(sp.threshold) < 0:
            return ActivePairs.from_dense(cc.encode(x_BMLD))  # raises the untrained-threshold error
        score_BF = sp.score(pre_BF, cc._dec_norm_F(), cc.share_F)
        rows_N, cols_N = (score_BF > sp.threshold).nonzero(as_tuple=True)
    else:  # the mechanism's own per-token selection (row-major, latents ascending), as in training
        pattern = sp.select(pre_BF, cc._dec_norm_F(), cc.share_F, cc.cfg.k)
        rows_N, cols_N = pattern.rows_N, pattern.cols_N
    vals_N = torch.relu(pre_BF[rows_N, cols_N])
    keep = vals_N > 0
    return ActivePairs(rows_N[keep], cols_N[keep], vals_N[keep], B, F)
