"""The per-latent table: one row per latent (columns in docs/ANALYSIS_FORMAT.md; written by
`crosscoder.analysis.records.table`), and the candidates it ranks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crosscoder.analysis.config import RankConfig
from crosscoder.analysis.rank.attribution import (
    attribution_SF,
    control_attribution_SF,
    mark_dead,
    net_attribution_SF,
    rank_candidates,
    scaling_columns,
    score_latents,
)
from crosscoder.analysis.records.candidate import ROW_KEYS, Candidate
from crosscoder.analysis.stats.baseline import meandiff_cosines
from crosscoder.analysis.stats.collect import SLICES, LatentStats
from crosscoder.analysis.stats.geometry import Geometry, decoder_geometry
from crosscoder.analysis.stats.scaling import ScalingResult, latent_scaling

if TYPE_CHECKING:
    from crosscoder.xc.model import Crosscoder


def build_table(
    geo: Geometry,
    st: LatentStats,
    sc: ScalingResult,
    *,
    dead_max_freq: float,
    exclusivity_weight: float,
    n_candidates: int,
) -> pd.DataFrame:
    """Assemble every per-latent column (labels start as empty and are filled in by the labelling step)."""
    names = geo.model_names
    F = geo.n_latents
    cols: dict[str, Any] = {"latent": np.arange(F, dtype=np.int64)}
    for m, name in enumerate(names):
        cols[f"dec_norm_{name}"] = geo.norms_FM[:, m].numpy()
    for m, name in enumerate(names):
        cols[f"share_{name}"] = geo.share_FM[:, m].numpy()
    cols["rel_norm"] = geo.rel_norm_F.numpy()
    cols["cos"] = geo.cos_F.numpy()
    for key, v in geo.cos_pairs.items():
        cols[key] = v.numpy()
    cols["exclusivity"] = geo.exclusivity_F.numpy()
    cols["present_in"] = np.array(
        ["|".join(n for m, n in enumerate(names) if bool(p[m])) for p in geo.present_FM], dtype=object
    )
    freq, mean_act = st.freq_SF().numpy(), st.mean_act_SF().numpy()
    for s, name in enumerate(SLICES):
        cols[f"freq_{name}"] = freq[s]
    for s, name in enumerate(SLICES):
        cols[f"mean_act_{name}"] = mean_act[s]
    cols["max_act"] = st.max_F.numpy()
    attr_t = attribution_SF(geo, st)
    attr = attr_t.numpy()
    for s, name in enumerate(SLICES):
        cols[f"attr_{name}"] = attr[s]
    ctrl_t = control_attribution_SF(geo, st)
    if ctrl_t is not None:  # with a control fine-tune: its attribution, and the score without it for comparison
        ctrl = ctrl_t.numpy()
        for s, name in enumerate(SLICES):
            cols[f"attr_control_{name}"] = ctrl[s]
        cols["score_uncontrolled"] = score_latents(geo, st, attr_t, exclusivity_weight)[0]
    diff_norm = geo.diff_FX().norm(dim=-1).numpy()
    mean_f_all = (st.sum_act_SF[0] / max(float(st.count_S[0]), 1.0)).numpy()
    cols["diff_mass"] = (diff_norm * mean_f_all).astype(np.float32)
    cols.update(scaling_columns(sc, names))
    klass = mark_dead(geo, st, dead_max_freq)
    cols["class"] = klass
    score, best_slice = score_latents(geo, st, net_attribution_SF(attr_t, ctrl_t), exclusivity_weight)
    cols["score"] = score
    cols["score_slice"] = best_slice
    rank, is_cand = rank_candidates(klass, sc.artifact, score, cols["diff_mass"], n_candidates)
    cols["rank"] = rank
    cols["is_candidate"] = is_cand
    cols["label"] = np.array([""] * F, dtype=object)
    cols["label_confidence"] = np.full(F, np.nan)
    cols["runner_up"] = np.array([""] * F, dtype=object)
    cols["description"] = np.array([""] * F, dtype=object)
    df = pd.DataFrame(cols)
    return df


def class_counts(df: pd.DataFrame) -> dict[str, int]:
    from crosscoder.analysis.stats.geometry import CLASSES

    counts = df["class"].value_counts().to_dict()
    return {c: int(counts.get(c, 0)) for c in CLASSES}


@dataclass
class LatentTable:
    """The latent table and the decoder geometry it was built from."""

    df: pd.DataFrame
    geo: Geometry


def latent_table(cc: Crosscoder, st: LatentStats, names: list[str], cfg: RankConfig, lens_idx: int) -> LatentTable:
    """Every per-latent column: geometry and classes, Latent Scaling, attribution and score, the ranking, and the
    decoder differences' cosines with the mean activation difference at the lens hook (`cos_meandiff_*`)."""
    geo = decoder_geometry(cc, names, cfg.exclusive_threshold, cfg.shifted_cosine)
    sc = latent_scaling(geo, st, cfg.nu_err_max, cfg.nu_recon_max)
    df = build_table(geo, st, sc, dead_max_freq=cfg.dead_max_freq, exclusivity_weight=cfg.exclusivity_weight,
                     n_candidates=cfg.n_candidates)  # fmt: skip
    W_raw_MFX = (
        (cc.W_dec_FMLD.detach() / cc.scale_ML[None, :, :, None])
        .permute(1, 0, 2, 3)
        .reshape(len(names), cc.cfg.n_latents, -1)
        .cpu()
    )
    diff_FX = W_raw_MFX[-1] - W_raw_MFX[0]
    for key, col in meandiff_cosines(st, diff_FX, cc.cfg.n_hooks, cc.cfg.d_model, lens_idx).items():
        df.insert(df.columns.get_loc("score"), key, col)
    return LatentTable(df, geo)


def apply_labels(df: pd.DataFrame, candidates: list[Candidate]) -> None:
    """Copy each candidate's description and, when labelled, its label, confidence and runner-up into its table row
    (in place)."""
    for c in candidates:
        mask = df["latent"] == c.latent
        df.loc[mask, "description"] = c.description
        if c.label is not None:
            df.loc[mask, "label"] = c.label
            df.loc[mask, "label_confidence"] = c.label_confidence
            df.loc[mask, "runner_up"] = c.runner_up


def candidate_rows(df: pd.DataFrame) -> list[Candidate]:
    """The table's candidates, best first, as `Candidate` records (evidence to be filled in)."""
    cand = df[df["is_candidate"]].sort_values("rank")
    return [Candidate.from_row(row) for row in cand[list(ROW_KEYS)].to_dict("records")]
