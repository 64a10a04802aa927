"""The n+1 forecast math: linear extrapolation with its uncertainty, persistence, the calibrated (signal ->
behaviour) forecast, early-warning indices, and the refusals (too few checkpoints, steps not increasing)."""

from __future__ import annotations

import numpy as np
import pytest

from crosscoder.analysis.trajectory.forecast import (
    ForecastError,
    behaviour_linear,
    calibrate,
    calibrated_forecast,
    check_steps,
    first_flagged,
    half_level_at,
    linear_extrapolation,
    mae,
    persistence,
)
from crosscoder.errors import ConfigError


def test_linear_extrapolation_is_exact_on_a_line_and_uses_only_the_window() -> None:
    steps = [0, 8, 16, 24, 32]
    # a kink before the window: only the last three points (a line of slope 0.5 per step) count
    values = [5.0, -3.0, 2.0, 6.0, 10.0]
    p = linear_extrapolation(steps, values, 40, window=3)
    assert p.scalar() == pytest.approx((14.0, 0.0))
    wide = linear_extrapolation(steps, values, 40, window=5)
    assert float(wide.value) != pytest.approx(14.0) and float(wide.std) > 0


def test_linear_extrapolation_uncertainty_grows_with_noise_and_distance() -> None:
    steps = [0, 1, 2, 3]
    smooth = linear_extrapolation(steps, [0.0, 1.0, 2.0, 3.1], 4, window=4)
    noisy = linear_extrapolation(steps, [0.0, 1.5, 1.5, 3.1], 4, window=4)
    far = linear_extrapolation(steps, [0.0, 1.5, 1.5, 3.1], 10, window=4)
    assert 0 < float(smooth.std) < float(noisy.std) < float(far.std)
    # the textbook prediction standard error of a least-squares line
    t, y = np.array(steps, float), np.array([0.0, 1.5, 1.5, 3.1])
    slope, icpt = np.polyfit(t, y, 1)
    s = np.sqrt(((y - (icpt + slope * t)) ** 2).sum() / 2)
    se = s * np.sqrt(1 + 1 / 4 + (4 - t.mean()) ** 2 / ((t - t.mean()) ** 2).sum())
    assert noisy.scalar() == pytest.approx((icpt + slope * 4, se))


def test_extrapolation_is_vectorised_over_latents() -> None:
    steps = [0, 10, 20]
    norms_JK = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5], [2.0, 1.0, 0.0]])
    p = linear_extrapolation(steps, norms_JK, 30)
    assert p.value.tolist() == pytest.approx([4.0, 0.5, -1.0])
    single = [linear_extrapolation(steps, row, 30).scalar()[0] for row in norms_JK]
    assert p.value.tolist() == pytest.approx(single)


def test_window_of_two_falls_back_to_the_last_change() -> None:
    p = linear_extrapolation([0, 5, 10], [0.0, 1.0, 3.0], 15, window=2)
    assert p.scalar() == pytest.approx((5.0, 2.0))


def test_persistence_and_behaviour_linear_baselines() -> None:
    beh = [0.0, 0.1, 0.4, 0.8]
    assert persistence(beh).scalar() == pytest.approx((0.8, 0.4))
    # the linear baseline overshoots a bounded score and is clipped to its range
    p = behaviour_linear([0, 1, 2, 3], beh, 4, clip=(0.0, 1.0))
    assert float(p.value) == 1.0
    # least squares through (1, 0.1), (2, 0.4), (3, 0.8): slope 0.35 around (2, 0.4333)
    assert float(behaviour_linear([0, 1, 2, 3], beh, 4).value) == pytest.approx(0.4 + 0.1 / 3 + 2 * 0.35)


def test_calibrated_forecast_maps_the_extrapolated_signal_through_the_fit() -> None:
    steps = [0, 8, 16, 24]
    signal = [0.0, 1.0, 2.0, 3.0]
    behaviour = [0.05, 0.25, 0.45, 0.65]  # behaviour = 0.05 + 0.2 * signal exactly
    pred, sig, cal = calibrated_forecast(steps, signal, behaviour, 32)
    assert (cal.intercept, cal.slope) == pytest.approx((0.05, 0.2))
    assert sig.scalar() == pytest.approx((4.0, 0.0))
    assert pred.scalar() == pytest.approx((0.85, 0.0), abs=1e-12)
    # noisy calibration widens the uncertainty; clipping keeps a rate in [0, 1]
    pred2, _, cal2 = calibrated_forecast(steps, signal, [0.0, 0.4, 0.3, 0.9], 32, clip=(0.0, 1.0))
    assert cal2.residual_std > 0 and float(pred2.std) >= cal2.residual_std
    assert 0.0 <= float(pred2.value) <= 1.0


def test_calibrate_with_a_flat_signal_predicts_the_mean() -> None:
    cal = calibrate([1.0, 1.0, 1.0], [0.1, 0.2, 0.3])
    assert cal.slope == 0.0 and cal.intercept == pytest.approx(0.2)


def test_too_few_checkpoints_are_refused_saying_how_many() -> None:
    with pytest.raises(ForecastError, match="at least 3 checkpoints.*got 2"):
        linear_extrapolation([0, 8], [0.0, 1.0], 16, window=3)
    with pytest.raises(ForecastError, match="at least 4 checkpoints"):
        calibrated_forecast([0, 8, 16], [0, 1, 2], [0, 0.1, 0.2], 24, window=4)
    with pytest.raises(ForecastError, match="window 1"):
        linear_extrapolation([0, 8, 16], [0, 1, 2], 24, window=1)
    assert issubclass(ForecastError, ConfigError)


def test_steps_that_do_not_increase_are_refused_naming_the_checkpoint() -> None:
    with pytest.raises(ForecastError, match="checkpoint c3: step 16 is not after the previous checkpoint's 24"):
        check_steps([0, 8, 24, 16], names=["base", "c1", "c2", "c3"])
    with pytest.raises(ForecastError, match="checkpoint 2"):
        linear_extrapolation([0, 8, 8], [0, 1, 2], 16)
    with pytest.raises(ForecastError, match="not after the last"):
        linear_extrapolation([0, 8, 16], [0, 1, 2], 16)


def test_early_warning_indices() -> None:
    assert half_level_at([0.1, 0.1, 0.2, 0.5, 0.9, 1.0]) == 4  # rise 0.9: half way is 0.55, first reached at 0.9
    assert half_level_at([0.0, 0.0, 0.5, 1.0]) == 2
    assert half_level_at([0.3, 0.2, 0.1]) is None
    assert first_flagged([False, False, True, True]) == 2 and first_flagged([False]) is None
    assert mae([1.0, 2.0], [1.5, 1.0]) == pytest.approx(0.75)
