"""The first evidence of every candidate: its decoder directions' logit lens and its top-activating contexts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crosscoder.analysis.config import EvidenceConfig
from crosscoder.analysis.evidence.contexts import top_contexts
from crosscoder.analysis.evidence.lens import LogitLens
from crosscoder.analysis.records.candidate import Candidate
from crosscoder.analysis.stats.collect import LatentStats

if TYPE_CHECKING:
    from crosscoder.data.protocols import Activations
    from crosscoder.models.load import LoadedModel
    from crosscoder.xc.model import Crosscoder


@dataclass
class CandidateDirections:
    """Raw-space decoder directions of the candidates at the lens hook (rows in candidate order)."""

    latents: list[int]
    W_raw_NMD: Tensor
    """Each model's decoder vector, divided by that model's input scale."""

    @property
    def d_ft_ND(self) -> Tensor:
        """The last (ft) model's decoder."""
        return self.W_raw_NMD[:, -1]

    @property
    def d_diff_ND(self) -> Tensor:
        """d_ft - d_base."""
        return self.W_raw_NMD[:, -1] - self.W_raw_NMD[:, 0]


def candidate_directions(cc: Crosscoder, lens_idx: int, latents: list[int]) -> CandidateDirections:
    """The candidates' raw decoder directions at hook `lens_idx`."""
    W_raw_FMD = (cc.W_dec_FMLD.detach()[:, :, lens_idx] / cc.scale_ML[None, :, lens_idx, None]).float().cpu()
    return CandidateDirections(list(latents), W_raw_FMD[torch.tensor(latents, dtype=torch.long)])


def add_lens_and_contexts(
    candidates: list[Candidate], dirs: CandidateDirections, models: list[LoadedModel], cc: Crosscoder,
    acts: Activations, st: LatentStats, cfg: EvidenceConfig,
) -> None:  # fmt: skip
    """Fill each candidate's `logit_lens` (every model's decoder through that model, and the decoder difference
    through the ft model) and its `top_examples` (in place)."""
    lenses = [LogitLens(m) for m in models]
    by_model = {
        m.name: lens.top(dirs.W_raw_NMD[:, i], cfg.logit_lens_k)
        for i, (m, lens) in enumerate(zip(models, lenses, strict=True))
    }
    diff = lenses[-1].top(dirs.d_diff_ND, cfg.logit_lens_k)
    contexts = top_contexts(cc, acts, st, dirs.latents, models[0].tokenizer, n_examples=cfg.n_top_examples,
                            before=cfg.context_tokens)  # fmt: skip
    for n, c in enumerate(candidates):
        c.logit_lens = {**{name: tops[n] for name, tops in by_model.items()}, "diff": diff[n]}
        c.top_examples = contexts[c.latent]
