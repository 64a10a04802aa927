"""One pass over a run's cache: the mean ft - base difference per position class, and the mean residual norms.

The difference methods (`adl`, `persona_vectors`) read the same numbers: for each position class of
`crosscoder.analysis.stats.collect.slice_masks` (all, first_assistant, last_assistant) the mean of
``x_last - x_first`` at the lens hook over the valid rows of that class, and the first model's mean residual norm at
that hook (the unit of the steering strengths).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crosscoder.analysis.stats.collect import slice_masks

if TYPE_CHECKING:
    from crosscoder.data.protocols import Activations

POSITION_CLASSES = ("all", "first_assistant", "last_assistant")
"""The position classes a mean difference is measured on."""


@dataclass
class MeanDiffs:
    """Mean differences at the lens hook, raw residual space."""

    mean_CD: dict[str, Tensor]
    """Position class -> mean of x_last - x_first over its rows (absent when the class has no rows)."""
    count_C: dict[str, int]
    base_norm: float
    """Mean ||x_first|| over every valid row."""

    def relative_norm(self, cls: str) -> float:
        """||mean difference|| / mean base norm."""
        return float(self.mean_CD[cls].norm()) / max(self.base_norm, 1e-12)


@torch.no_grad()
def mean_differences(acts: Activations, lens_idx: int, *, first_assistant_tokens: int = 1,
                     batch_size: int = 4096, max_rows: int = 0) -> MeanDiffs:  # fmt: skip
    """The per-class mean difference between the last and the first model of `acts` at hook `lens_idx`."""
    D = acts.d_model
    sums = {c: torch.zeros(D, dtype=torch.float64) for c in POSITION_CLASSES}
    counts = dict.fromkeys(POSITION_CLASSES, 0)
    norm_sum, rows = 0.0, 0
    limit = acts.n_rows if max_rows <= 0 else min(max_rows, acts.n_rows)
    for batch in acts.iter_rows(batch_size):
        if rows >= limit:
            break
        keep = min(batch.x_BMLD.shape[0], limit - rows)
        x_BMD = batch.x_BMLD[:keep, :, lens_idx].double()
        diff_BD = x_BMD[:, -1] - x_BMD[:, 0]
        masks = slice_masks(batch, first_assistant_tokens)
        for c in POSITION_CLASSES:
            m_B = masks[c][:keep]
            sums[c] += diff_BD[m_B].sum(0)
            counts[c] += int(m_B.sum())
        valid = masks["all"][:keep]
        norm_sum += float(x_BMD[valid, 0].norm(dim=-1).sum())
        rows += keep
    means = {c: (sums[c] / counts[c]).float() for c in POSITION_CLASSES if counts[c] > 0}
    return MeanDiffs(means, counts, norm_sum / max(counts["all"], 1))
