"""Build the dashboards of an analysis (step `dashboards` of `crosscoder.analysis.run`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crosscoder.analysis.dashboards.collect import band_pass
from crosscoder.analysis.dashboards.config import DashboardConfig
from crosscoder.analysis.dashboards.records import LatentDashboard
from crosscoder.analysis.evidence.contexts import top_contexts
from crosscoder.analysis.evidence.gather import candidate_directions
from crosscoder.analysis.evidence.lens import LogitLens
from crosscoder.analysis.stats.collect import LatentStats
from crosscoder.errors import ConfigError
from crosscoder.io import atomic_write_json

if TYPE_CHECKING:
    from crosscoder.data.protocols import Activations
    from crosscoder.models.load import LoadedModel
    from crosscoder.xc.model import Crosscoder

log = logging.getLogger(__name__)

FOLDER = "dashboards"
DATA_FILE = "latents.json"
PAGE_FILE = "dashboards.html"


def choose_latents(df: pd.DataFrame, cfg: DashboardConfig, n_latents: int) -> list[int]:
    """`cfg.latents`, else every live latent: candidates by rank, then the rest by density, capped at max_latents."""
    if cfg.latents:
        bad = [j for j in cfg.latents if j >= n_latents]
        if bad:
            raise ConfigError(f"analyze.dashboards.latents: {bad} out of range; the crosscoder has {n_latents} latents")
        return list(dict.fromkeys(int(j) for j in cfg.latents))
    live = df[df["freq_all"] > 0]
    ranked = live[live["rank"] > 0].sort_values("rank")
    rest = live[live["rank"] <= 0].sort_values("freq_all", ascending=False)
    chosen = [int(j) for j in pd.concat([ranked, rest])["latent"]]
    return chosen[: cfg.max_latents] if cfg.max_latents > 0 else chosen


def _num(value: object) -> float:
    x = float(value)  # type: ignore[arg-type]
    return x if np.isfinite(x) else 0.0


def build_dashboards(
    cc: Crosscoder, acts: Activations, st: LatentStats, df: pd.DataFrame, models: list[LoadedModel],
    lens_idx: int, cfg: DashboardConfig, out_dir: Path, seed: int = 0,
) -> list[LatentDashboard]:  # fmt: skip
    """Dashboards of the chosen latents, written to `<out_dir>/dashboards/` (latents.json and the HTML page)."""
    from crosscoder.analysis.dashboards.page import write_page

    latents = choose_latents(df, cfg, cc.cfg.n_latents)
    bp = band_pass(cc, acts, st.max_F, n_rows=st.n_rows, n_bins=cfg.n_bins, n_bands=cfg.n_bands,
                   per_band=cfg.per_band, seed=seed)  # fmt: skip
    tok = models[0].tokenizer
    ctx_args = {"n_examples": cfg.n_top, "before": cfg.context_tokens, "after": 3}
    top = top_contexts(cc, acts, st, latents, tok, **ctx_args)  # type: ignore[arg-type]
    bands = []
    for b in range(cfg.n_bands):
        picks: dict[int, tuple[list[float], list[int]]] = {}
        for j in latents:
            rows = bp.band_rows(j, b)
            picks[j] = ([0.0] * len(rows), rows)
        band_args = {**ctx_args, "n_examples": cfg.per_band}
        bands.append(top_contexts(cc, acts, st, latents, tok, picks=picks, **band_args))  # type: ignore[arg-type]
    dirs = candidate_directions(cc, lens_idx, latents)
    lenses = [LogitLens(m) for m in models]
    by_row = df.set_index("latent")
    out = []
    for a in range(0, len(latents), 256):  # the lens logits are [chunk, vocab]
        part = slice(a, a + 256)
        lens_by = {m.name: lens.top(dirs.W_raw_NMD[part, i], cfg.lens_k)
                   for i, (m, lens) in enumerate(zip(models, lenses, strict=True))}  # fmt: skip
        diff = lenses[-1].top(dirs.d_diff_ND[part], cfg.lens_k)
        for n, j in enumerate(latents[part]):
            row = by_row.loc[j]
            out.append(LatentDashboard(
                latent=j, cls=str(row["class"]), label=str(row.get("label", "") or ""), rank=int(row["rank"]),
                density=_num(row["freq_all"]), max_act=_num(st.max_F[j]), mean_act=_num(st.mean_act_SF()[0, j]),
                rel_norm=_num(row["rel_norm"]), cos=_num(row["cos"]), hist=[int(c) for c in bp.hist_FB[j]],
                top=top[j], bands=[[e for e in band[j]] for band in bands],
                lens={**{name: tops[n] for name, tops in lens_by.items()}, "diff": diff[n]},
            ))  # fmt: skip
    folder = out_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    density = df["freq_all"].to_numpy(dtype=float)
    atomic_write_json(folder / DATA_FILE, {
        "models": [m.name for m in models], "n_latents": int(cc.cfg.n_latents), "n_bands": cfg.n_bands,
        "n_live": int((density > 0).sum()), "density_all": [round(float(x), 8) for x in density],
        "latents": [d.to_json() for d in out],
    })  # fmt: skip
    write_page(folder)
    log.info("dashboards of %d latents written to %s", len(out), folder)
    return out
