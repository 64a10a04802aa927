"""Selection of the active latents for the sparse path: per-token top-k, batch-wide top-k, and ReLU support.

Top-k over F latents is the step's largest cost after the encoder GEMM when done row by row (``torch.topk`` copies
and partially sorts every row). Both selections here first take the maximum of each block of ``BLOCK`` consecutive
scores (one vectorised pass), keep the blocks with the k largest maxima, and run ``topk`` on those blocks only.
This is exact: a block holding one of the k largest values has a maximum at least that value, so if it were not
among the k best blocks there would be k blocks each holding a larger value. (With ties any valid top-k set may be
returned, as with ``torch.topk``.) The batch-wide selection also filters those blocks by the k-th largest block
maximum, a lower bound of the k-th largest value, so its final ``topk`` sees about k values instead of k * BLOCK.
Tests check the results against ``torch.topk`` on the full scores. Selection runs on one thread (see
:func:`crosscoder.xc.pattern.one_thread`).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.xc.pattern import SparsePattern, one_thread

BLOCK = 32
"""Scores per block of the pre-selection."""
MIN_BLOCKS_PER_PICK = 4
"""The pre-selection runs only when there are at least this many blocks per selected value (else plain topk)."""


def _top_block_indices(score_RC: Tensor, k: int, block: int) -> tuple[Tensor, Tensor]:
    """Indices (into each row of ``score_RC``) and values of the k largest entries per row, via block maxima."""
    R, C = score_RC.shape
    if block <= 0 or C % block or C // block < MIN_BLOCKS_PER_PICK * k:
        top = score_RC.topk(k, dim=-1, sorted=False)
        return top.indices, top.values
    blocks_RNB = score_RC.view(R, C // block, block)
    best_RK = blocks_RNB.amax(-1).topk(k, dim=-1, sorted=False).indices
    cand_RKB = blocks_RNB.gather(1, best_RK.unsqueeze(-1).expand(R, k, block))
    top = cand_RKB.reshape(R, k * block).topk(k, dim=-1, sorted=False)
    return best_RK.gather(1, top.indices // block) * block + top.indices % block, top.values


def topk_select(score_BF: Float[Tensor, "B F"], k: int, block: int = BLOCK) -> SparsePattern:
    """Per-token top-k of score_BF."""
    with one_thread(score_BF.device):
        idx_BK, _ = _top_block_indices(score_BF, k, block)
    return SparsePattern.from_topk(idx_BK, score_BF.shape[1])


def batchtopk_select(score_BF: Float[Tensor, "B F"], n_keep: int, block: int = BLOCK) -> tuple[SparsePattern, Tensor]:
    """Top n_keep entries of score_BF over the whole batch; also returns the kept scores (any order)."""
    B, n_lat = score_BF.shape
    n_keep = min(n_keep, B * n_lat)
    flat = score_BF.reshape(-1)
    with one_thread(flat.device):
        if block <= 0 or flat.numel() % block or flat.numel() // block < MIN_BLOCKS_PER_PICK * n_keep:
            top = flat.topk(n_keep, sorted=False)
            return SparsePattern.from_flat(top.indices, B, n_lat), top.values
        blocks_RB = flat.view(-1, block)
        best = blocks_RB.amax(1).topk(n_keep, sorted=False)
        cand_KB = blocks_RB[best.indices]
        r_C, c_C = (cand_KB >= best.values.min()).nonzero(as_tuple=True)  # >= the k-th value: a superset of the top
        top = cand_KB[r_C, c_C].topk(n_keep, sorted=False)
        flat_N = best.indices[r_C[top.indices]] * block + c_C[top.indices]
    return SparsePattern.from_flat(flat_N, B, n_lat), top.values


def relu_select(pre_BF: Float[Tensor, "B F"]) -> SparsePattern:
    """Entries with pre > 0 (the support of ReLU), row-major; a boolean ``pre_BF`` is taken as that mask."""
    positive_BF = pre_BF if pre_BF.dtype == torch.bool else pre_BF > 0
    rows_N, cols_N = torch.nonzero(positive_BF, as_tuple=True)
    return SparsePattern.from_sorted(rows_N, cols_N, pre_BF.shape[0], pre_BF.shape[1])
