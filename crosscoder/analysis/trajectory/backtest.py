"""Forecasts of checkpoint n+1 from the crosscoder fitted on checkpoints 0..n, and their scoring.

The caller hands each function only what was known at checkpoint n — the statistics of the crosscoder fitted on
0..n (`crosscoder.analysis.trajectory.stats`) and the behaviour measured on 0..n — and fills in the actual values of n+1
afterwards with :func:`score_trait_forecasts` / :func:`match_latents`, so n+1 never reaches a forecast.

- :func:`forecast_trait`: the trait's behavioural expression at n+1 — the crosscoder signal (the persona-vector
  projection of the reconstructed mean shift on assistant tokens) extrapolated over the window and mapped to
  behaviour by a line fitted over 0..n (`calibrated_forecast`); beside it the baselines *persistence* (n+1 = n) and
  *behaviour_linear* (the behavioural scores alone, extrapolated), and the same calibrated forecast from the true
  activation shift (no crosscoder) for reference.
- :func:`forecast_latents`: per latent, the decoder norm, the cosine to the base decoder and the contribution to
  the trait signal at n+1, for the latents that carry the trait signal at n.
- :func:`early_warning`: the first checkpoint at which the persona is flagged, and the first at which its behaviour
  reaches half its final rise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from crosscoder.analysis.trajectory.forecast import (
    DEFAULT_WINDOW,
    Calibration,
    behaviour_linear,
    calibrated_forecast,
    first_flagged,
    half_level_at,
    linear_extrapolation,
    mae,
    persistence,
)
from crosscoder.analysis.trajectory.stats import SeriesStats

SIGNAL_SLICE = "assistant"
"""The token slice whose signal forecasts behaviour (fixed before any benchmark was run)."""


@dataclass
class TraitForecast:
    """The forecast of one trait's behaviour at checkpoint `target` = `origin` + 1."""

    trait: str
    origin: int
    target: int
    target_step: float
    predicted: float
    std: float
    signal_predicted: float
    signal_std: float
    calibration: dict[str, float]
    persistence: float
    behaviour_linear: float
    activation_predicted: float
    actual: float | None = None
    actual_signal: float | None = None


def forecast_trait(
    trait: str,
    steps: list[float],
    signal: list[float],
    behaviour: list[float],
    activation_signal: list[float],
    target_step: float,
    window: int = DEFAULT_WINDOW,
    clip: tuple[float | None, float | None] = (None, None),
) -> TraitForecast:
    """Forecast from checkpoints 0..n (every list has n+1 entries)."""
    n = len(steps) - 1
    pred, sig, cal = calibrated_forecast(steps, signal, behaviour, target_step, window, clip)
    act, _, _ = calibrated_forecast(steps, activation_signal, behaviour, target_step, window, clip)
    return TraitForecast(
        trait=trait,
        origin=n,
        target=n + 1,
        target_step=float(target_step),
        predicted=pred.scalar()[0],
        std=pred.scalar()[1],
        signal_predicted=sig.scalar()[0],
        signal_std=sig.scalar()[1],
        calibration=_cal(cal),
        persistence=persistence(behaviour).scalar()[0],
        behaviour_linear=behaviour_linear(steps, behaviour, target_step, window, clip).scalar()[0],
        activation_predicted=act.scalar()[0],
    )


def _cal(c: Calibration) -> dict[str, float]:
    return {k: float(v) for k, v in asdict(c).items()}


def score_trait_forecasts(forecasts: list[TraitForecast], behaviour: list[float]) -> dict[str, float]:
    """Fill each forecast's actual value from the measured `behaviour` (whole series) and return the MAEs."""
    for f in forecasts:
        f.actual = float(behaviour[f.target]) if f.target < len(behaviour) else None
    scored = [f for f in forecasts if f.actual is not None]
    actual = [float(behaviour[f.target]) for f in scored]
    return {
        "forecast_mae": mae([f.predicted for f in scored], actual),
        "persistence_mae": mae([f.persistence for f in scored], actual),
        "behaviour_linear_mae": mae([f.behaviour_linear for f in scored], actual),
        "activation_mae": mae([f.activation_predicted for f in scored], actual),
        "n_forecasts": len(scored),
    }


@dataclass
class LatentForecast:
    """One latent's forecast at checkpoint `origin` + 1 (from the crosscoder fitted on 0..origin)."""

    latent: int
    origin: int
    dec_norm: float
    dec_norm_std: float
    cos_base: float
    cos_base_std: float
    contrib: float
    contrib_std: float
    actual_latent: int | None = None
    """The matching latent of the crosscoder fitted on 0..origin+1 (same base decoder), if any."""
    match_cosine: float | None = None
    actual_dec_norm: float | None = None
    actual_cos_base: float | None = None
    actual_contrib: float | None = None


def top_signal_latents(stats: SeriesStats, trait: str, top: int) -> list[int]:
    """The latents with the largest contribution to the trait signal at the last checkpoint."""
    c = stats.contrib[trait][SIGNAL_SLICE][:, -1]
    return [int(j) for j in np.argsort(-np.abs(c))[:top]]


def forecast_latents(
    stats: SeriesStats, steps: list[float], target_step: float, trait: str, window: int = DEFAULT_WINDOW, top: int = 10
) -> list[LatentForecast]:
    """Decoder norm, cosine to base and signal contribution at n+1 for the `top` latents carrying the trait at n."""
    idx = top_signal_latents(stats, trait, top)
    norm = linear_extrapolation(steps, stats.dec_norm_FK[idx], target_step, window)
    cos = linear_extrapolation(steps, stats.cos_base_FK[idx], target_step, window)
    con = linear_extrapolation(steps, stats.contrib[trait][SIGNAL_SLICE][idx], target_step, window)
    n = len(steps) - 1
    return [
        LatentForecast(
            j,
            n,
            float(norm.value[i]),
            float(norm.std[i]),
            float(np.clip(cos.value[i], -1, 1)),
            float(cos.std[i]),
            float(con.value[i]),
            float(con.std[i]),
        )  # fmt: skip
        for i, j in enumerate(idx)
    ]


def match_latents(
    forecasts: list[LatentForecast], prev: SeriesStats, nxt: SeriesStats, trait: str, min_cosine: float = 0.7
) -> None:
    """Fill the actual values at n+1 from the latent of `nxt` (the crosscoder fitted on 0..n+1) whose base decoder
    is closest to the forecast latent's in `prev` (fitted on 0..n); none when the best cosine is below `min_cosine`."""
    if not forecasts:
        return
    sims = prev.base_unit_FX[[f.latent for f in forecasts]] @ nxt.base_unit_FX.T
    target = len(nxt.model_names) - 1
    for f, row in zip(forecasts, sims, strict=True):
        j = int(np.argmax(row))
        if row[j] < min_cosine:
            continue
        f.actual_latent, f.match_cosine = j, float(row[j])
        f.actual_dec_norm = float(nxt.dec_norm_FK[j, target])
        f.actual_cos_base = float(nxt.cos_base_FK[j, target])
        f.actual_contrib = float(nxt.contrib[trait][SIGNAL_SLICE][j, target])


def latent_record(f: LatentForecast) -> dict[str, Any]:
    return asdict(f)


@dataclass
class EarlyWarning:
    """When a persona was first flagged and when its behaviour reached half its final rise (checkpoint indices)."""

    flagged_at: int | None
    behaviour_half_at: int | None
    lead_checkpoints: int | None
    """behaviour_half_at − flagged_at (positive: flagged before the behaviour)."""


def early_warning(flags: list[bool], behaviour: list[float]) -> EarlyWarning:
    flagged, half = first_flagged(flags), half_level_at(behaviour)
    lead = half - flagged if flagged is not None and half is not None else None
    return EarlyWarning(flagged, half, lead)
