"""Causal validation of candidates: steer the base model along a latent's ft decoder direction, ablate it in the ft model.

Trait expression is `crosscoder.personas.score.trait_score` on the trait's evaluation questions: answers are generated
with the edit active, and the projection of the (edited) model's answer activations on the trait's unit persona
vector is read at the score hook (default: the last layer, so the effect has to propagate through the network);
keyword rates of the answers are reported too. Steering strength s adds ``s * max_act_j * d_j,ft`` (raw space) at
the lens hook, i.e. s = 1 is the latent at its largest activation seen on the cache.

`CausalRunner.run` checks many candidates in a few large batches (`crosscoder.analysis.causal.batched`); `steer` and
`ablate` are the per-call reference path.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from crosscoder.analysis.causal.batched import CausalJob, run_batched
from crosscoder.analysis.causal.hooks import ablation_edit, edit_residual, steer_vector
from crosscoder.analysis.records.causal import AblationRecord, Generation, SteeringRecord
from crosscoder.errors import ConfigError

if TYPE_CHECKING:
    from crosscoder.analysis.stats.collect import LatentStats
    from crosscoder.models.load import LoadedModel
    from crosscoder.personas.traits import Trait
    from crosscoder.personas.vectors import PersonaVectors
    from crosscoder.xc.model import Crosscoder

log = logging.getLogger(__name__)


def _score(
    model: LoadedModel,
    trait: Trait,
    questions: list[str],
    max_new_tokens: int,
    vectors: PersonaVectors,
    hook: str,
    seed: int,
) -> Any:
    from crosscoder.personas.score import trait_score

    return trait_score(
        model, trait, questions=questions, max_new_tokens=max_new_tokens, seed=seed, vectors=vectors, hook=hook
    )


class CausalRunner:
    """Steering and ablation of candidates, caching the unedited scores per (model, trait).

    `run` scores many candidates at once (batched, see `crosscoder.analysis.causal.batched`); `steer` / `ablate`
    are the per-call reference path (one ``generate`` call per latent and strength).
    """

    def __init__(self, cc: Crosscoder, models: list[LoadedModel], lens_hook_idx: int, hooks: list[str], mean_xn_MLD: Tensor, *,
                 questions: int, max_new_tokens: int, score_hook: str | None, seed: int,
                 max_rows: int = 64) -> None:  # fmt: skip
        if max_rows < 1:
            raise ConfigError(f"CausalRunner.max_rows: must be >= 1, got {max_rows}")
        self.cc, self.models, self.li, self.hooks = cc, models, lens_hook_idx, hooks
        self.hook = hooks[lens_hook_idx]
        self.mean_xn_MLD = mean_xn_MLD
        self.n_q, self.max_new, self.seed = questions, max_new_tokens, seed
        self.score_hook = score_hook
        self.max_rows = max_rows
        """Rows (question x edit) per batched generate call."""
        self.stats: dict[str, float] = {}
        """Throughput of the last batched `run` (rows, calls, new_tokens, seconds, tokens_per_s)."""
        self._plain: dict[tuple[int, str], Any] = {}

    def score_hook_for(self, model: LoadedModel) -> str:
        """The hook whose activations are projected on the persona vector (default: the last layer's output)."""
        return self.score_hook or f"blocks.{model.n_layers - 1}.hook_resid_post"

    def direction(self, latent: int) -> Tensor:
        """The latent's raw-space ft decoder direction at the lens hook (steering adds ``s * max_act *`` this)."""
        m_ft = len(self.models) - 1
        return (self.cc.W_dec_FMLD.detach()[latent, m_ft, self.li] / self.cc.scale_ML[m_ft, self.li]).float()

    def plain_score(self, m: int, trait: Trait, vectors: PersonaVectors) -> Any:
        key = (m, trait.name)
        if key not in self._plain:
            model = self.models[m]
            self._plain[key] = _score(
                model, trait, trait.eval_questions[: self.n_q], self.max_new, vectors, self.score_hook_for(model),
                self.seed,
            )  # fmt: skip
        return self._plain[key]

    def run(
        self, jobs: list[CausalJob], *, batched: bool = True, progress: bool = True
    ) -> list[tuple[SteeringRecord, AblationRecord]]:
        """(steering record, ablation record) per job: batched, or one `steer` + `ablate` call per job."""
        if batched:
            return run_batched(self, jobs, progress=progress)
        return [
            (
                self.steer(j.latent, j.trait, j.vectors_base, list(j.strengths), j.max_act),
                self.ablate(j.latent, j.trait, j.vectors_ft),
            )
            for j in jobs
        ]

    def steer(
        self, latent: int, trait: Trait, vectors_base: PersonaVectors, strengths: list[float], max_act: float
    ) -> SteeringRecord:
        """Steer the base (first) model; returns the candidate's `steering` record."""
        base = self.models[0]
        d_raw = self.direction(latent)
        plain = self.plain_score(0, trait, vectors_base)
        steered = []
        for s in strengths:
            with edit_residual(base, self.hook, steer_vector(d_raw * max_act, s)):
                steered.append(
                    _score(
                        base, trait, plain.questions, self.max_new, vectors_base, self.score_hook_for(base), self.seed
                    )  # fmt: skip
                )
        return steering_record(self, trait, plain, strengths, steered)

    def ablate(self, latent: int, trait: Trait, vectors_ft: PersonaVectors) -> AblationRecord:
        """Ablate the latent in the ft (last) model; returns the candidate's `ablation` record."""
        m_ft = len(self.models) - 1
        ft = self.models[m_ft]
        before = self.plain_score(m_ft, trait, vectors_ft)
        edit = ablation_edit(self.cc, latent, m_ft, self.li, self.mean_xn_MLD)
        with edit_residual(ft, self.hook, edit):
            after = _score(ft, trait, before.questions, self.max_new, vectors_ft, self.score_hook_for(ft), self.seed)
        return ablation_record(self, trait, before, after)


def _pairs(scored: Any) -> list[tuple[str, str]]:
    return list(zip(scored.questions, scored.generations, strict=True))[:2]


def steering_record(
    runner: CausalRunner, trait: Trait, plain: Any, strengths: list[float], steered: list[Any]
) -> SteeringRecord:
    """A candidate's `steering` record from the unsteered and per-strength scores (`TraitScore` or `Scored`)."""
    base = runner.models[0]
    return SteeringRecord(
        trait=trait.name,
        model=base.name,
        hook=runner.hook,
        score_hook=runner.score_hook_for(base),
        strengths=[0.0, *[float(s) for s in strengths]],
        trait_score=[plain.projection, *[ts.projection for ts in steered]],
        keyword_rate=[plain.keyword_rate, *[ts.keyword_rate for ts in steered]],
        generations=[
            Generation(q, t, strength=s) for s, ts in zip(strengths, steered, strict=True) for q, t in _pairs(ts)
        ],
        unsteered=[Generation(q, t) for q, t in _pairs(plain)],
    )


def ablation_record(runner: CausalRunner, trait: Trait, before: Any, after: Any) -> AblationRecord:
    """A candidate's `ablation` record from the ft model's scores without and with the ablation."""
    return AblationRecord(
        trait=trait.name,
        model=runner.models[-1].name,
        score_before=before.projection,
        score_after=after.projection,
        drop=before.projection - after.projection,
        keyword_rate_before=before.keyword_rate,
        keyword_rate_after=after.keyword_rate,
        generations=[Generation(q, t) for q, t in _pairs(after)],
    )


def mean_normalised_inputs(st: LatentStats, cc: Crosscoder) -> Tensor:
    """Mean normalised activation ``[M, L, D]`` over the analysed tokens (for the ablation's encoder estimate)."""
    cfg = cc.cfg
    n = float(st.count_S[0]) if float(st.count_S[0]) > 0 else 1.0
    return (st.sum_x_MX / n).float().view(cfg.n_models, cfg.n_hooks, cfg.d_model).to(torch.float32)
