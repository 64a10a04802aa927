"""The per-latent table: one row per latent, written as Parquet, CSV and JSON (columns in docs/ANALYSIS_FORMAT.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crosscoder.analysis.rank.attribution import (
    attribution_SF,
    control_attribution_SF,
    mark_dead,
    net_attribution_SF,
    rank_candidates,
    scaling_columns,
    score_latents,
)
from crosscoder.analysis.stats.collect import SLICES, LatentStats
from crosscoder.analysis.stats.geometry import Geometry
from crosscoder.analysis.stats.scaling import ScalingResult
from crosscoder.io import atomic_path, atomic_write_text


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
    df = pd.DataFrame(cols)
    return df


def class_counts(df: pd.DataFrame) -> dict[str, int]:
    from crosscoder.analysis.stats.geometry import CLASSES

    counts = df["class"].value_counts().to_dict()
    return {c: int(counts.get(c, 0)) for c in CLASSES}


def _clean(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def table_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN -> null, numpy scalars -> Python; rank 0 -> null)."""
    out = []
    cols = list(df.columns)
    for row in df.itertuples(index=False, name=None):
        rec = {c: _clean(v) for c, v in zip(cols, row, strict=True)}
        rec["rank"] = rec["rank"] or None
        out.append(rec)
    return out


def write_table(df: pd.DataFrame, out_dir: Path) -> None:
    """latents.parquet, latents.csv and latents.json in `out_dir`, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "latents.parquet") as tmp:
        df.to_parquet(tmp, index=False)
    atomic_write_text(out_dir / "latents.csv", df.to_csv(index=False))
    atomic_write_text(out_dir / "latents.json", json.dumps(table_records(df), separators=(",", ":")) + "\n")
