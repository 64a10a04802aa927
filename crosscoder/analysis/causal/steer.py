"""The causal checks of the top candidates: each is steered in the base model and ablated in the ft model, scored on
its best-matching trait (its label, or the best match below the threshold), all in a few batched generate calls."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from torch import Tensor

from crosscoder.analysis.causal.batched import CausalJob
from crosscoder.analysis.causal.runner import CausalRunner
from crosscoder.analysis.config import LabelConfig, SteeringConfig
from crosscoder.analysis.labels.assign import LabelBasis, vectors_for
from crosscoder.analysis.records.candidate import Candidate

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel
    from crosscoder.xc.model import Crosscoder

log = logging.getLogger(__name__)


def steer_candidates(
    cc: Crosscoder, models: list[LoadedModel], hooks: list[str], lens_idx: int, mean_xn_MLD: Tensor,
    candidates: list[Candidate], basis: LabelBasis, cfg: SteeringConfig, labels: LabelConfig, seed: int,
) -> list[int]:  # fmt: skip
    """Set `steering` and `ablation` of the first `cfg.n_candidates` candidates (in place); returns their indices.

    Each candidate needs a `best_trait` (labels ran first): its evaluation questions and persona vectors (base model
    for steering, ft model for ablation; computed and cached on first use) score the edits."""
    runner = CausalRunner(cc, models, lens_idx, hooks, mean_xn_MLD, questions=cfg.questions,
                          max_new_tokens=cfg.max_new_tokens, score_hook=None, seed=seed)  # fmt: skip
    steered = list(range(min(cfg.n_candidates, len(candidates))))
    n_q = labels.persona_questions or None
    jobs = []
    for n in steered:
        c = candidates[n]
        assert c.best_trait is not None, "steer_candidates runs after the labels"
        trait = basis.traits[c.best_trait]
        jobs.append(CausalJob(c.latent, trait, vectors_for(basis.vectors_base, models[0], trait, n_q),
                              vectors_for(basis.vectors_ft, models[-1], trait, n_q), list(cfg.strengths),
                              float(c.max_act or 0.0)))  # fmt: skip
    for n, (steering, ablation) in zip(steered, runner.run(jobs), strict=True):
        candidates[n].steering, candidates[n].ablation = steering, ablation
    s = runner.stats
    log.info("steering: %d latents, %d rows in %d generate calls, %d new tokens (%.1f tokens/s)", len(jobs),
             s.get("rows", 0), s.get("calls", 0), s.get("new_tokens", 0), s.get("tokens_per_s", 0.0))  # fmt: skip
    return steered
