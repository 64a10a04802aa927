"""trajectory.json and forecast.json of a checkpoint-series analysis (docs/TRAJECTORY.md, "Files").

trajectory.json: the steps, per trait the signal at every checkpoint (reconstructed and true mean shift on the
persona vector, per token slice) with the latents carrying it, and per latent (candidates and those top latents)
its row at every checkpoint: decoder norm, relative norm, cosine to the base decoder, firing on that checkpoint,
attribution of that checkpoint's shift, contribution to each trait's signal.

forecast.json: the forecast at the next checkpoint from the last `window` checkpoints — per latent its decoder norm,
cosine to base and signal contribution, per trait its signal, and the behavioural expression of the series' trait
(when its behaviour record is known), each with an uncertainty and, where the record has that checkpoint, the actual
value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crosscoder.analysis.trajectory.backtest import SIGNAL_SLICE, forecast_trait
from crosscoder.analysis.trajectory.forecast import Prediction, check_window, linear_extrapolation
from crosscoder.analysis.trajectory.stats import SeriesStats

if TYPE_CHECKING:
    from crosscoder.analysis.config import TrajectoryConfig
    from crosscoder.personas.organisms.behaviour import SeriesBehaviour

JSON = dict[str, Any]


def _floats(a: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=np.float64)]


def top_latents(stats: SeriesStats, trait: str, n: int) -> list[int]:
    """The `n` latents with the largest |contribution| to the trait's signal at the last checkpoint."""
    c = stats.contrib[trait][SIGNAL_SLICE][:, -1]
    return [int(j) for j in np.argsort(-np.abs(c), kind="stable")[:n]]


def _latent_row(stats: SeriesStats, j: int, row: pd.Series) -> JSON:
    best = np.fmax(*(np.nan_to_num(a[j], nan=-np.inf) for a in stats.attr_FK.values()))
    return {
        "latent": j, "rank": int(row["rank"]) or None, "series_rank": int(row["series_rank"]) or None,
        "class": str(row["class"]), "label": str(row["label"]) or None, "peak_at": str(row["peak_at"]),
        "dec_norm": _floats(stats.dec_norm_FK[j]), "rel_norm": _floats(stats.rel_norm_FK[j]),
        "cos_base": _floats(stats.cos_base_FK[j]), "freq_on": _floats(stats.freq_on_FK[j]),
        "attr": _floats(best), "contrib": {t: _floats(c[SIGNAL_SLICE][j]) for t, c in stats.contrib.items()},
    }  # fmt: skip


def trajectory_record(steps: list[float], source: str, stats: SeriesStats, df: pd.DataFrame, top: int) -> JSON:
    """trajectory.json."""
    tops = {t: top_latents(stats, t, top) for t in stats.signal}
    chosen = sorted({int(j) for j in df.loc[df["is_candidate"], "latent"]} | {j for v in tops.values() for j in v})
    rows = df.set_index("latent")
    return {
        "models": list(stats.model_names), "steps": list(steps), "steps_source": source, "hook": stats.hook,
        "n_rows": dict(stats.n_rows), "signal_slice": SIGNAL_SLICE,
        "traits": {t: {"signal": {s: _floats(v) for s, v in stats.signal[t].items()},
                       "activation_signal": {s: _floats(v) for s, v in stats.activation_signal[t].items()},
                       "top_latents": tops[t]} for t in stats.signal},
        "latents": [_latent_row(stats, j, rows.loc[j]) for j in chosen],
    }  # fmt: skip


def _pred(p: Prediction, i: int | None = None, actual: float | None = None) -> JSON:
    v, s = (p.value, p.std) if i is None else (p.value[i], p.std[i])
    return {"predicted": float(v), "std": float(s), "actual": actual}


def _behaviour_forecast(steps: list[float], stats: SeriesStats, cfg: TrajectoryConfig, beh: SeriesBehaviour,
                        next_step: float) -> JSON | None:  # fmt: skip
    if beh.trait not in stats.signal:
        return None
    by_step = {float(k): v for k, v in zip(beh.steps(), beh.values(cfg.measure), strict=True)}
    values = [by_step[s] for s in steps]
    clip = (0.0, 1.0) if cfg.measure == "keyword_rate" else (None, None)
    sig, act = stats.signal[beh.trait][SIGNAL_SLICE], stats.activation_signal[beh.trait][SIGNAL_SLICE]
    f = forecast_trait(beh.trait, steps, list(sig), values, list(act), next_step, cfg.window, clip)
    return {
        "trait": beh.trait, "measure": cfg.measure, "prompt_set": "heldout", "values": values,
        "predicted": f.predicted, "std": f.std, "persistence": f.persistence, "behaviour_linear": f.behaviour_linear,
        "activation_predicted": f.activation_predicted, "calibration": f.calibration, "actual": by_step.get(float(next_step)),
    }  # fmt: skip


def forecast_record(steps: list[float], stats: SeriesStats, traj: JSON, cfg: TrajectoryConfig,
                    beh: SeriesBehaviour | None) -> JSON:  # fmt: skip
    """forecast.json: the next checkpoint from the last `cfg.window` checkpoints of the run."""
    check_window(len(steps), cfg.window)
    next_step = cfg.next_step if cfg.next_step is not None else steps[-1] + (steps[-1] - steps[-2])
    latents = []
    for trait, t in traj["traits"].items():
        idx = t["top_latents"]
        if not idx:
            continue
        norm = linear_extrapolation(steps, stats.dec_norm_FK[idx], next_step, cfg.window)
        cos = linear_extrapolation(steps, stats.cos_base_FK[idx], next_step, cfg.window)
        con = linear_extrapolation(steps, stats.contrib[trait][SIGNAL_SLICE][idx], next_step, cfg.window)
        latents += [{"latent": j, "trait": trait, "dec_norm": _pred(norm, i), "cos_base": _pred(cos, i),
                     "contrib": _pred(con, i)} for i, j in enumerate(idx)]  # fmt: skip
    traits = {
        t: {"signal": _pred(linear_extrapolation(steps, stats.signal[t][SIGNAL_SLICE], next_step, cfg.window)),
            "activation_signal": _pred(linear_extrapolation(steps, stats.activation_signal[t][SIGNAL_SLICE],
                                                            next_step, cfg.window))}
        for t in stats.signal
    }  # fmt: skip
    return {
        "window": cfg.window, "from_checkpoint": stats.model_names[-1], "steps": list(steps), "next_step": next_step,
        "note": "the crosscoder was fitted on these checkpoints only; actual values appear where a record has the "
                "next checkpoint (python -m crosscoder.bench trajectory backtests with crosscoders per prefix)",
        "latents": latents, "traits": traits,
        "behaviour": _behaviour_forecast(steps, stats, cfg, beh, next_step) if beh is not None else None,
    }  # fmt: skip
