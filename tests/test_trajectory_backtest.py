"""Backtests of the n+1 forecast on synthetic series: the forecast only sees 0..n, is scored against n+1, the
per-latent forecasts match latents across crosscoders, and the early-warning lead."""

from __future__ import annotations

import numpy as np
import pytest

from crosscoder.analysis.trajectory.backtest import (
    early_warning,
    forecast_latents,
    forecast_trait,
    match_latents,
    score_trait_forecasts,
    top_signal_latents,
)
from crosscoder.analysis.trajectory.forecast import ForecastError
from crosscoder.analysis.trajectory.stats import SeriesStats

STEPS = [0.0, 8.0, 16.0, 24.0, 32.0, 40.0, 48.0]


def _sigmoid_series() -> tuple[list[float], list[float]]:
    """A signal growing linearly and a behaviour that follows it through a saturating curve."""
    signal = [0.5 * k for k in range(7)]
    behaviour = [float(1 / (1 + np.exp(-(s - 1.5) * 3))) for s in signal]
    return signal, behaviour


def test_forecasts_see_only_the_past_and_are_scored_on_the_next_checkpoint() -> None:
    signal, beh = _sigmoid_series()
    forecasts = []
    for n in range(2, 6):
        f = forecast_trait("t", STEPS[: n + 1], signal[: n + 1], beh[: n + 1], signal[: n + 1], STEPS[n + 1],
                           clip=(0.0, 1.0))  # fmt: skip
        assert (f.origin, f.target) == (n, n + 1) and f.actual is None
        assert f.persistence == beh[n] and 0.0 <= f.predicted <= 1.0
        assert f.signal_predicted == pytest.approx(signal[n + 1])  # a linear signal is extrapolated exactly
        forecasts.append(f)
    # changing the future changes no forecast
    future = [*beh[:3], 0.0, 0.0, 0.0, 0.0]
    again = forecast_trait("t", STEPS[:3], signal[:3], future[:3], signal[:3], STEPS[3], clip=(0.0, 1.0))
    assert again.predicted == forecasts[0].predicted
    maes = score_trait_forecasts(forecasts, beh)
    assert maes["n_forecasts"] == 4 and all(f.actual == beh[f.target] for f in forecasts)
    assert maes["persistence_mae"] == pytest.approx(np.mean([abs(beh[n + 1] - beh[n]) for n in range(2, 6)]))
    assert maes["forecast_mae"] == pytest.approx(np.mean([abs(f.predicted - beh[f.target]) for f in forecasts]))
    # the last origin of a series has no n+1: it is forecast but not scored
    last = forecast_trait("t", STEPS, signal, beh, signal, 56.0, clip=(0.0, 1.0))
    assert score_trait_forecasts([last], beh)["n_forecasts"] == 0 and last.actual is None


def test_forecast_refuses_too_few_checkpoints() -> None:
    with pytest.raises(ForecastError, match="at least 3 checkpoints"):
        forecast_trait("t", STEPS[:2], [0, 1], [0, 0.1], [0, 1], 16.0)


def _stats(names: list[str], units: np.ndarray, norms: np.ndarray, contrib: np.ndarray) -> SeriesStats:
    F, K = norms.shape
    return SeriesStats(names, "h", 0, norms, norms / (norms[:, :1] + norms), np.ones((F, K)), np.zeros((F, K)),
                       np.zeros(F), {"assistant": np.ones(F)}, units, contrib={"t": {"assistant": contrib}})  # fmt: skip


def test_latent_forecasts_and_matching() -> None:
    rng = np.random.default_rng(0)
    units = rng.normal(size=(6, 16))
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    norms = np.array([[1.0, 1.1, 1.2]] * 6)
    contrib = np.zeros((6, 3))
    contrib[4] = [0.0, 0.2, 0.4]
    contrib[1] = [0.0, -0.1, -0.3]
    prev = _stats(["base", "c1", "c2"], units, norms, contrib)
    assert top_signal_latents(prev, "t", 2) == [4, 1]
    fc = forecast_latents(prev, STEPS[:3], STEPS[3], "t", top=2)
    assert [f.latent for f in fc] == [4, 1]
    assert fc[0].dec_norm == pytest.approx(1.3) and fc[0].contrib == pytest.approx(0.6)
    # the next crosscoder has the same latents in another order; latent 4 is found as 0
    perm = [4, 2, 3, 0, 5, 1]
    nxt_contrib = np.zeros((6, 4))
    nxt_contrib[0, 3] = 0.55
    nxt = _stats(["base", "c1", "c2", "c3"], units[perm], np.full((6, 4), 1.25), nxt_contrib)
    match_latents(fc, prev, nxt, "t")
    assert fc[0].actual_latent == 0 and fc[0].match_cosine == pytest.approx(1.0)
    assert fc[0].actual_contrib == pytest.approx(0.55) and fc[0].actual_dec_norm == pytest.approx(1.25)
    assert fc[1].actual_latent == 5
    unrelated = _stats(["base", "c1", "c2", "c3"], -units, np.ones((6, 4)), np.zeros((6, 4)))
    fresh = forecast_latents(prev, STEPS[:3], STEPS[3], "t", top=1)
    match_latents(fresh, prev, unrelated, "t")
    assert fresh[0].actual_latent is None and fresh[0].actual_dec_norm is None


def test_early_warning_lead() -> None:
    ew = early_warning([False, True, True, True, True], [0.0, 0.0, 0.1, 0.6, 1.0])
    assert (ew.flagged_at, ew.behaviour_half_at, ew.lead_checkpoints) == (1, 3, 2)
    never = early_warning([False, False, False], [0.0, 0.5, 1.0])
    assert never.flagged_at is None and never.lead_checkpoints is None and never.behaviour_half_at == 1
