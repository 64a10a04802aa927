"""The shared labeller for any method's direction candidates: the crosscoder pipeline's evidence and labels.

Each candidate becomes a `Candidate` record as if it were a crosscoder latent whose base decoder is zero and whose ft
decoder (and decoder difference) is the candidate's direction: the logit lens of that direction through each
model, its top contexts in the cache (`crosscoder.analysis.methods.scan`), the next-token shift and continuations at
those contexts, the said reading, the pos/neg activation on the trait prompts (through the method's own encoder) and
the persona-vector alignment of the direction, then `label_candidate`, unchanged. Steered generations a method made
itself (ADL) join the lexical evidence as a crosscoder's steering would. Every method is thus labelled by the same
code and thresholds (`analyze.labels`), never by a labeller of its own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor

from crosscoder.analysis.evidence.gather import CandidateDirections
from crosscoder.analysis.evidence.lens import LogitLens
from crosscoder.analysis.evidence.next_token import NextTokenReading, next_token_shift
from crosscoder.analysis.evidence.said import said_diffs
from crosscoder.analysis.labels.assign import label_candidate, prepare_labels
from crosscoder.analysis.methods.base import MethodCandidate, MethodRun
from crosscoder.analysis.methods.scan import CandidateEncoder, Scan, candidate_contexts
from crosscoder.analysis.records.candidate import Candidate
from crosscoder.analysis.records.causal import SteeringRecord

if TYPE_CHECKING:
    from crosscoder.xc.model import Crosscoder

log = logging.getLogger(__name__)


def _record(c: MethodCandidate, j: int, scan: Scan) -> Candidate:
    return Candidate(latent=j, rank=c.rank, score=c.score, score_slice=c.position or "all", klass=c.kind,
                     rel_norm=None, cos=None, nu_err=None, nu_recon=None, ls_artifact="",
                     freq_all=float(scan.freq_N[j]), max_act=float(scan.max_N[j]),
                     mean_act_all=float(scan.mean_act_N[j]))  # fmt: skip


def label_directions(
    run: MethodRun, cands: list[MethodCandidate], latents: list[int], enc: CandidateEncoder, scan: Scan,
    steering: dict[int, SteeringRecord] | None = None,
) -> None:  # fmt: skip
    """Label `cands` in place (``label``, ``label_confidence``, ``evidence``); candidate i is column `latents[i]` of
    `enc` and carries its raw direction at the lens hook in ``direction_D``."""
    if not cands:
        return
    cfg, models = run.analysis, run.lms
    dirs_ND = torch.stack([_direction(c) for c in cands])
    W_NMD = torch.zeros(len(cands), len(models), dirs_ND.shape[1])
    W_NMD[:, -1] = dirs_ND  # as a crosscoder latent with no base decoder: d_ft = d_ft - d_base = the direction
    dirs = CandidateDirections(list(latents), W_NMD)
    recs = [_record(c, j, scan) for c, j in zip(cands, latents, strict=True)]
    lenses = [LogitLens(m) for m in models]
    by_model = {m.name: lens.top(dirs_ND, cfg.evidence.logit_lens_k) for m, lens in zip(models, lenses, strict=True)}
    contexts = candidate_contexts(enc, run.acts, scan, list(latents), models[0].tokenizer,
                                  n_examples=cfg.evidence.n_top_examples, before=cfg.evidence.context_tokens)  # fmt: skip
    for n, rec in enumerate(recs):
        rec.logit_lens = {**{name: tops[n] for name, tops in by_model.items()}, "diff": by_model[models[-1].name][n]}
        rec.top_examples = contexts[rec.latent]
        if steering is not None and rec.latent in steering:
            rec.steering = steering[rec.latent]
    nt = cfg.next_token
    reading = NextTokenReading()
    if nt.n_candidates > 0:
        reading = next_token_shift(models, run.acts, contexts, list(latents)[: nt.n_candidates],
                                   n_contexts=nt.contexts, k=cfg.evidence.logit_lens_k, max_prefix=nt.prefix_tokens,
                                   n_continue=nt.continue_tokens, n_expand=nt.openings)  # fmt: skip
        for rec in recs:
            rec.next_token_shift = reading.shifts.get(rec.latent)
    if not (cfg.labels.enabled and run.traits):
        _copy_back(cands, recs)
        return
    said: dict[int, dict[str, Tensor]] = {}
    if reading.shifts and cfg.labels.said:
        said = said_diffs(models[-1], run.hooks[run.lens_idx], reading.said)
    # the labeller reads an encoder through the crosscoder interface (encode, cfg.n_latents, parameters)
    basis = prepare_labels(cast("Crosscoder", enc), models, run.hooks, run.lens_idx, run.traits, dirs, said,
                           cfg.labels)  # fmt: skip
    for n, rec in enumerate(recs):
        label_candidate(rec, n, basis, cfg.labels)
    _copy_back(cands, recs)


def _direction(c: MethodCandidate) -> Tensor:
    assert c.direction_D is not None, f"candidate {c.name} has no direction to label"
    return c.direction_D.detach().float().cpu()


def _copy_back(cands: list[MethodCandidate], recs: list[Candidate]) -> None:
    for c, rec in zip(cands, recs, strict=True):
        c.label, c.label_confidence, c.evidence = rec.label, rec.label_confidence, rec
