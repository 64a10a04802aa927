"""Evidence, labels and causal checks for the ranked candidates (the content of candidates.json)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from crosscoder.analysis.causal.batched import CausalJob
from crosscoder.analysis.causal.runner import CausalRunner
from crosscoder.analysis.config import AnalyzeConfig
from crosscoder.analysis.evidence.contexts import top_contexts
from crosscoder.analysis.evidence.lens import LogitLens
from crosscoder.analysis.evidence.next_token import next_token_shift
from crosscoder.analysis.evidence.said import said_diffs, said_scores
from crosscoder.analysis.evidence.trait_prompts import pos_neg_acts
from crosscoder.analysis.labels.signals import check_persona_vectors, label_latent, trait_evidence
from crosscoder.analysis.labels.words import keyword_words, template_words, trait_words
from crosscoder.analysis.stats.collect import LatentStats

log = logging.getLogger(__name__)

_ROW_KEYS = (
    "latent",
    "rank",
    "score",
    "score_slice",
    "class",
    "rel_norm",
    "cos",
    "nu_err",
    "nu_recon",
    "ls_artifact",
    "freq_all",
    "max_act",
    "mean_act_all",
)


def _cos(a_ND: Tensor, v_D: Tensor) -> Tensor:
    a = a_ND / a_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return a @ (v_D / v_D.norm().clamp_min(1e-12))


def unique_alignment(a_ND: Tensor, unit_TD: Tensor) -> Tensor:
    """Each trait's coefficient ``[N, T]`` when each unit direction a_n is fit jointly by all unit persona vectors.

    Least squares a_n ~ sum_t beta_t v_t: beta_t is the part of the alignment with trait t that no other trait's
    vector explains (for a single trait it is the cosine). Persona vectors of related traits can be nearly collinear
    (sycophancy and over_enthusiastic ~0.94 on SmolLM2), so plain cosines cannot tell them apart; the joint fit
    gives a direction equal to one of them coefficient 1 for it and 0 for the other.
    """
    a = a_ND / a_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.linalg.lstsq(unit_TD.T.double(), a.T.double()).solution.T.float()  # [N, T]


def given_persona_vectors(model: Any, files: list[str]) -> dict[str, Any]:
    """{trait: PersonaVectors} from user files, each checked against `model` (the ft model)."""
    from crosscoder.personas.vectors import PersonaVectors

    given: dict[str, Any] = {}
    for path in files:
        pv = PersonaVectors.load(path)
        check_persona_vectors(pv, model)
        given[pv.trait] = pv
    return given


def _vectors_for(store: dict[str, Any], model: Any, trait: Any, max_questions: int | None) -> Any:
    """`store[trait.name]`, computed (all layers, cached on disk) and checked when missing."""
    from crosscoder.personas.vectors import compute_persona_vectors

    if trait.name not in store:
        store[trait.name] = compute_persona_vectors(model, trait, max_questions=max_questions)
        check_persona_vectors(store[trait.name], model)
    return store[trait.name]


def build_candidates(
    cfg: AnalyzeConfig, df: pd.DataFrame, st: LatentStats, cc: Any, acts: Any, models: list[Any], hooks: list[str],
    lens_idx: int, traits: dict[str, Any], pv_files: list[str], timings: dict[str, float], mean_xn_MLD: Tensor,
) -> list[dict[str, Any]]:  # fmt: skip
    """Assemble candidates.json and write labels back into `df` (in place)."""
    import time

    cand = df[df["is_candidate"]].sort_values("rank")
    latents = [int(j) for j in cand["latent"]]
    if not latents:
        return []
    M = len(models)
    W_raw_FMD = (cc.W_dec_FMLD.detach()[:, :, lens_idx] / cc.scale_ML[None, :, lens_idx, None]).float().cpu()
    idx = torch.tensor(latents)
    d_ft, d_diff = W_raw_FMD[idx, -1], W_raw_FMD[idx, -1] - W_raw_FMD[idx, 0]

    t0 = time.perf_counter()
    lenses = [LogitLens(m) for m in models]
    lens_out = {models[m].name: lenses[m].top(W_raw_FMD[idx, m], cfg.logit_lens_k) for m in range(M)}
    lens_out["diff"] = lenses[-1].top(d_diff, cfg.logit_lens_k)
    contexts = top_contexts(
        cc, acts, st, latents, models[0].tokenizer, n_examples=cfg.n_top_examples, before=cfg.context_tokens
    )
    timings["evidence"] = time.perf_counter() - t0
    shift: dict[int, dict[str, list[list[Any]]]] = {}
    if cfg.n_next_token > 0:
        t0 = time.perf_counter()
        shift = next_token_shift(models, acts, contexts, latents[: cfg.n_next_token], n_contexts=cfg.next_token_contexts,
                                 k=cfg.logit_lens_k, max_prefix=cfg.next_token_prefix,
                                 n_continue=cfg.next_token_continue, n_expand=cfg.next_token_openings)  # fmt: skip
        timings["next_token"] = time.perf_counter() - t0
    said_diff: dict[int, dict[str, Tensor]] = {}
    if shift and cfg.do_labels and cfg.label_said and traits:
        t0 = time.perf_counter()
        said_diff = said_diffs(models[-1], hooks[lens_idx], shift)
        timings["said"] = time.perf_counter() - t0
    for entry in shift.values():
        entry.pop("said_ids", None)  # token ids for the said signal only; candidates.json keeps the texts

    records = []
    for n, j in enumerate(latents):
        row = cand[cand["latent"] == j].iloc[0]
        rec = {k: _py(row[k]) for k in _ROW_KEYS}
        rec["top_examples"] = contexts[j]
        rec["logit_lens"] = {name: lo[n] for name, lo in lens_out.items()}
        rec["next_token_shift"] = shift.get(j)
        rec.update(
            label=None,
            label_confidence=None,
            best_trait=None,
            runner_up=None,
            runner_up_score=None,
            label_evidence={},
            pos_neg={},
            steering=None,
            ablation=None,
        )
        records.append(rec)

    if cfg.do_labels and traits:
        t0 = time.perf_counter()
        # ft persona vectors at the lens hook come from the pos/neg forward passes (user files win); full per-layer
        # vectors are computed only for the traits steering scores
        pv_ft: dict[str, Any] = given_persona_vectors(models[-1], pv_files)
        pv_base: dict[str, Any] = {}
        pn = pos_neg_acts(cc, models, hooks, traits, cfg.label_questions, lens_idx)
        template = template_words(models[-1].tokenizer)
        words = {t: trait_words(tr, template) for t, tr in traits.items()}
        said = {t: keyword_words(tr, template) for t, tr in traits.items()}
        patterns = {t: tr.keyword_regex() for t, tr in traits.items()}
        hook = hooks[lens_idx]
        vec = {t: pv_ft[t].for_hook(hook).float() if t in pv_ft else pn[t][2].float() for t in traits}
        unit = {t: v / v.norm().clamp_min(1e-12) for t, v in vec.items()}
        names = list(traits)
        unit_TD = torch.stack([unit[t] for t in names])
        cos_ft = {t: _cos(d_ft, unit[t]) for t in traits}
        cos_diff = {t: _cos(d_diff, unit[t]) for t in traits}
        beta_ft, beta_diff = unique_alignment(d_ft, unit_TD), unique_alignment(d_diff, unit_TD)
        spec_ft = {t: beta_ft[:, i] for i, t in enumerate(names)}
        spec_diff = {t: beta_diff[:, i] for i, t in enumerate(names)}
        said_T = said_scores(said_diff, torch.stack([pn[t].text_vector_D.float() for t in names]))
        timings["labels"] = time.perf_counter() - t0

        def relabel(n: int, steered: list[str], unsteered: list[str]) -> None:
            rec, j = records[n], latents[n]
            ev = {
                t: trait_evidence(
                    cos_ft=float(cos_ft[t][n]),
                    cos_diff=float(cos_diff[t][n]),
                    spec_ft=float(spec_ft[t][n]),
                    spec_diff=float(spec_diff[t][n]),
                    pos=float(pn[t][0][j]),
                    neg=float(pn[t][1][j]),
                    mean_act=float(rec["mean_act_all"] or 0.0),
                    lens=rec["logit_lens"]["diff"],
                    contexts=rec["top_examples"],
                    steered=steered,
                    unsteered=unsteered,
                    words=words[t],
                    cosine_full=cfg.label_cosine_full,
                    next_token=rec["next_token_shift"],
                    keywords=said[t] if traits[t].keywords else None,
                    pattern=patterns[t],
                    said=float(said_T[j][i]) if j in said_T else 0.0,
                    said_full=cfg.label_said_full,
                )  # fmt: skip
                for i, t in enumerate(names)
            }
            label, conf, runner, runner_s = label_latent(ev, cfg.label_weights, cfg.label_threshold)
            best = max(ev, key=lambda t: ev[t]["combined"]) if ev else None
            rec.update(label=label, label_confidence=conf, best_trait=best, runner_up=runner, runner_up_score=runner_s,
                       label_evidence=ev)  # fmt: skip
            rec["pos_neg"] = {t: {"pos_mean": float(pn[t][0][j]), "neg_mean": float(pn[t][1][j])} for t in traits}

        for n in range(len(latents)):
            relabel(n, [], [])

        if cfg.do_steering and cfg.n_steer > 0:
            t0 = time.perf_counter()
            runner = CausalRunner(cc, models, lens_idx, hooks, mean_xn_MLD, questions=cfg.steer_questions,
                                  max_new_tokens=cfg.steer_max_new_tokens, score_hook=None, seed=cfg.seed)  # fmt: skip
            steered_n = list(range(min(cfg.n_steer, len(latents))))
            jobs = []
            for n in steered_n:
                rec = records[n]
                trait = traits[rec["best_trait"]]  # the label, or the best match below the threshold
                nq = cfg.persona_questions or None
                jobs.append(CausalJob(latents[n], trait, _vectors_for(pv_base, models[0], trait, nq),
                                      _vectors_for(pv_ft, models[-1], trait, nq), list(cfg.steer_strengths),
                                      float(rec["max_act"] or 0.0)))  # fmt: skip
            for n, (steering, ablation) in zip(steered_n, runner.run(jobs), strict=True):
                rec = records[n]
                rec["steering"], rec["ablation"] = steering, ablation
                steered = [g["text"] for g in steering["generations"]]
                unsteered = [g["text"] for g in steering["unsteered"]]
                relabel(n, steered, unsteered)
            st_ = runner.stats
            log.info("steering: %d latents, %d rows in %d generate calls, %d new tokens (%.1f tokens/s)", len(jobs),
                     st_.get("rows", 0), st_.get("calls", 0), st_.get("new_tokens", 0), st_.get("tokens_per_s", 0.0))  # fmt: skip
            timings["steering"] = time.perf_counter() - t0

    for rec in records:
        mask = df["latent"] == rec["latent"]
        if rec["label"] is not None:
            df.loc[mask, "label"] = rec["label"]
            df.loc[mask, "label_confidence"] = rec["label_confidence"]
            df.loc[mask, "runner_up"] = rec["runner_up"]
    return records


def _py(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v
