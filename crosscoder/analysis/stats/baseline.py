"""The activation-difference baseline: mean (model - base) activation per position class, with its logit lens.

Position classes: all analysed tokens, the first assistant tokens of each answer, and the last assistant token. For
each later model m the mean of ``x_m - x_base`` (raw space, lens hook) is read through model m's final norm and
unembedding. The crosscoder's candidates should beat or explain it; their decoder differences' cosines with these
means are also reported per latent (``cos_meandiff_<position>`` columns).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from crosscoder.analysis.evidence.lens import LogitLens
from crosscoder.analysis.stats.collect import BASELINE_POSITIONS, LatentStats


def mean_diffs(st: LatentStats, n_hooks: int, d_model: int) -> Tensor:
    """Mean raw difference ``[P, M, L, D]`` (model m minus the first model) per position class."""
    n_P = st.base_count_P.clamp_min(1)[:, None, None]
    return (st.base_diff_PMX / n_P).float().view(len(BASELINE_POSITIONS), st.n_models, n_hooks, d_model)


def baseline_report(
    st: LatentStats, lenses: list[LogitLens], model_names: list[str], hooks: list[str], lens_hook: int, k: int
) -> dict[str, Any]:
    """baseline.json content (see docs/ANALYSIS_FORMAT.md)."""
    L = len(hooks)
    D = st.d_in // L
    diff_PMLD = mean_diffs(st, L, D)
    norm_PM = (st.base_norm_PM / st.base_count_P.clamp_min(1)[:, None]).float()
    out: dict[str, Any] = {
        "models": model_names,
        "lens_model": model_names[-1],
        "hook": hooks[lens_hook],
        "positions": {},
        "per_model": {},
    }
    for p, pc in enumerate(BASELINE_POSITIONS):
        n = int(st.base_count_P[p])
        for m in range(1, len(model_names)):
            v_D = diff_PMLD[p, m, lens_hook]
            entry: dict[str, Any] = {
                "n_tokens": n,
                "diff_norm": float(v_D.norm()),
                "rel_diff_norm": float(v_D.norm() / norm_PM[p, 0].clamp_min(1e-12)) if n else None,
                "logit_lens": lenses[m].top(v_D[None], k)[0].to_json() if n else {"promoted": [], "suppressed": []},
            }
            out["per_model"].setdefault(model_names[m], {})[pc] = entry
            if m == len(model_names) - 1:
                out["positions"][pc] = entry
    return out


def meandiff_cosines(
    st: LatentStats, diff_FX: Tensor, n_hooks: int, d_model: int, lens_hook: int
) -> dict[str, np.ndarray]:
    """Cosine of each latent's decoder difference (lens hook) with the last model's mean difference per position."""
    diff_PMLD = mean_diffs(st, n_hooks, d_model)
    d_FD = diff_FX.view(-1, n_hooks, d_model)[:, lens_hook].float()
    d_FD = d_FD / d_FD.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = {}
    for p, pc in enumerate(BASELINE_POSITIONS):
        v = diff_PMLD[p, -1, lens_hook]
        out[f"cos_meandiff_{pc}"] = (
            (d_FD @ (v / v.norm().clamp_min(1e-12))).numpy() if float(v.norm()) > 0 else np.full(d_FD.shape[0], np.nan)
        )
    return out


def to_float_list(t: torch.Tensor) -> list[float]:
    return [float(x) for x in t]
