"""The dashboards' pass over the activation cache: activation histograms and quantile-band samples per latent.

Each latent's activation range (0, max] (max from the statistics pass) is cut into `n_bands` equal bands; every
active (token, latent) entry gets a random key, and the `per_band` entries with the largest keys in each
(latent, band) are kept: a uniform random sample of the tokens in that band, in one streaming pass (the running top-k
of `crosscoder.analysis.stats.kernels.TopExamples` over `F * n_bands` groups).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crosscoder.analysis.stats.kernels import ActivePairs, TopExamples, encode_active

if TYPE_CHECKING:
    from crosscoder.data.protocols import Activations
    from crosscoder.xc.model import Crosscoder


@dataclass
class BandPass:
    """What `band_pass` accumulates (tensors on the CPU)."""

    max_F: Tensor
    hist_FB: Tensor
    """Counts of non-zero activations in `n_bins` equal bins of (0, max_F]."""
    samples: TopExamples
    """Random keys and global rows per (latent * n_bands + band)."""
    n_bands: int

    def band_rows(self, j: int, band: int) -> list[int]:
        """Global rows sampled from band `band` of latent `j`."""
        return self.samples.for_latent(j * self.n_bands + band)[1]


@torch.no_grad()
def band_pass(
    cc: Crosscoder, acts: Activations, max_F: Tensor, *, n_rows: int, n_bins: int, n_bands: int, per_band: int, seed: int,
    batch_size: int = 4096,
) -> BandPass:  # fmt: skip
    """Histograms and band samples over the first `n_rows` rows of `acts` (the rows of the statistics pass)."""
    F = int(max_F.shape[0])
    gen = torch.Generator().manual_seed(seed)
    hist = torch.zeros(F * n_bins, dtype=torch.long)
    samples = TopExamples(per_band, F * n_bands)
    safe_max = max_F.clamp_min(1e-12)
    row = 0
    device = next(cc.parameters()).device
    for batch in acts.iter_rows(batch_size):
        if row >= n_rows:
            break
        keep = min(batch.x_BMLD.shape[0], n_rows - row)
        valid = batch.train_mask_B[:keep].bool().to(device)
        pairs = encode_active(cc, batch.x_BMLD[:keep].to(device)).select_rows(valid)
        cols, vals = pairs.cols_N.cpu(), pairs.vals_N.float().cpu()
        frac = (vals / safe_max[cols]).clamp(0, 1 - 1e-6)
        hist += torch.bincount(cols * n_bins + (frac * n_bins).long(), minlength=F * n_bins)
        groups = cols * n_bands + (frac * n_bands).long()
        keys = torch.rand(vals.shape[0], generator=gen)
        samples.update(ActivePairs(pairs.rows_N.cpu(), groups, keys, keep, F * n_bands), row)
        row += batch.x_BMLD.shape[0]
    return BandPass(max_F.clone(), hist.view(F, n_bins), samples, n_bands)
