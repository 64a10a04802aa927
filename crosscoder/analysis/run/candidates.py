"""The candidate steps: evidence, next-token shift, said signal, labels and causal checks for the ranked latents."""

from __future__ import annotations

from crosscoder.analysis.causal.runner import mean_normalised_inputs
from crosscoder.analysis.causal.steer import steer_candidates
from crosscoder.analysis.evidence.gather import CandidateDirections, add_lens_and_contexts, candidate_directions
from crosscoder.analysis.evidence.next_token import NextTokenReading, next_token_shift
from crosscoder.analysis.evidence.said import said_diffs
from crosscoder.analysis.labels.assign import label_candidate, prepare_labels
from crosscoder.analysis.labels.describe import describe
from crosscoder.analysis.rank.table import candidate_rows
from crosscoder.analysis.records.candidate import Candidate
from crosscoder.analysis.run.context import AnalysisContext


def build_candidates(ctx: AnalysisContext) -> list[Candidate]:
    """The table's candidates with their full evidence (candidates.json), best first."""
    cfg, models = ctx.cfg, ctx.lms
    candidates = candidate_rows(ctx.df)
    if not candidates:
        return []
    dirs = candidate_directions(ctx.cc, ctx.lens_idx, [c.latent for c in candidates])
    with ctx.timed("evidence"):
        add_lens_and_contexts(candidates, dirs, models, ctx.cc, ctx.acts, ctx.stats, cfg.evidence)
    reading = NextTokenReading()
    nt = cfg.next_token
    if nt.n_candidates > 0:
        with ctx.timed("next_token"):
            contexts = {c.latent: c.top_examples for c in candidates}
            reading = next_token_shift(models, ctx.acts, contexts, dirs.latents[: nt.n_candidates],
                                       n_contexts=nt.contexts, k=cfg.evidence.logit_lens_k, max_prefix=nt.prefix_tokens,
                                       n_continue=nt.continue_tokens, n_expand=nt.openings)  # fmt: skip
        for c in candidates:
            c.next_token_shift = reading.shifts.get(c.latent)
    if cfg.labels.enabled and ctx.traits:
        label_and_steer(ctx, candidates, reading, dirs)
    for c in candidates:  # after steering: the steered generations join the description
        c.description = describe(c)
    return candidates


def label_and_steer(
    ctx: AnalysisContext, candidates: list[Candidate], reading: NextTokenReading, dirs: CandidateDirections
) -> None:
    """Labels (said signal, trait evidence), then the causal checks, whose steered generations join the labels."""
    cfg, models = ctx.cfg, ctx.lms
    said_diff = {}
    if reading.shifts and cfg.labels.said:
        with ctx.timed("said"):
            said_diff = said_diffs(models[-1], ctx.hooks[ctx.lens_idx], reading.said)
    with ctx.timed("labels"):
        basis = prepare_labels(ctx.cc, models, ctx.hooks, ctx.lens_idx, ctx.traits, dirs, said_diff, cfg.labels)
    ctx.label_threshold = basis.threshold(cfg.labels)
    ctx.label_warnings = basis.warnings(cfg.labels)
    ctx.trait_profiles = [p.to_json() for p in basis.profiles.values()]
    for n, c in enumerate(candidates):
        label_candidate(c, n, basis, cfg.labels)
    if cfg.steering.enabled and cfg.steering.n_candidates > 0:
        with ctx.timed("steering"):
            mean_xn_MLD = mean_normalised_inputs(ctx.stats, ctx.cc)
            steered = steer_candidates(ctx.cc, models, ctx.hooks, ctx.lens_idx, mean_xn_MLD, candidates, basis,
                                       cfg.steering, cfg.labels, cfg.seed)  # fmt: skip
            for n in steered:  # the steered generations join the lexical evidence
                label_candidate(candidates[n], n, basis, cfg.labels)
