"""Selection of the active latents for the sparse path: per-token top-k, batch-wide top-k, and ReLU support.

Top-k over F latents is the step's largest cost after the encoder GEMM when done row by row (``torch.topk`` copies
and partially sorts every row). Both selections here first take the maximum of each block of ``BLOCK`` consecutive
scores (one vectorised pass), keep the blocks with the k largest maxima, and run ``topk`` on those blocks only.
This is exact: a block holding one of the k largest values has a maximum at least that value, so if it were not
among the k best blocks there would be k blocks each holding a larger value. (With ties any valid top-k set may be
returned, as with ``torch.topk``.) The batch-wide selection also filters those blocks by the k-th largest block
maximum, a lower bound of the k-th largest value, so its final ``topk`` sees about k values instead of k * BLOCK;
the per-token selection applies the same filter row by row.
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
    """Indices (into each row of ``score_RC``) and values of the k largest entries per row, via block maxima.

    The k-th largest block maximum of a row is a lower bound of its k-th largest value (k blocks each hold a value
    at least that large), so only the entries of the k best blocks at or above it are candidates: about k per row.
    They are packed into a padded ``R x M`` table (M the largest candidate count of a row) for the final ``topk``.
    """
    R, C = score_RC.shape
    if block <= 0 or C % block or C // block < MIN_BLOCKS_PER_PICK * k:
        top = score_RC.topk(k, dim=-1, sorted=False)
        return top.indices, top.values
    n_blk = C // block
    best = score_RC.view(R, n_blk, block).amax(-1).topk(k, dim=-1, sorted=False)
    blk_N = (best.indices + torch.arange(R, device=score_RC.device)[:, None] * n_blk).reshape(-1)  # R*k block ids
    cand_NB = score_RC.reshape(R * n_blk, block).index_select(0, blk_N)
    n_C, c_C = (cand_NB >= best.values.amin(-1).repeat_interleave(k)[:, None]).nonzero(as_tuple=True)
    r_C = n_C // k
    count_R = torch.bincount(r_C, minlength=R)
    slot_C = torch.arange(r_C.numel(), device=r_C.device) - (count_R.cumsum(0) - count_R)[r_C]
    width = int(count_R.max())
    val_RM = score_RC.new_full((R, width), float("-inf"))
    val_RM[r_C, slot_C] = cand_NB[n_C, c_C]
    col_RM = torch.zeros((R, width), dtype=torch.long, device=score_RC.device)
    col_RM[r_C, slot_C] = (blk_N[n_C] - r_C * n_blk) * block + c_C
    top = val_RM.topk(k, dim=-1, sorted=False)
    return col_RM.gather(1, top.indices), top.values


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
