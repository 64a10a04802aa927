"""Forecasting checkpoint n+1 from checkpoints 0..n: the math, with no model or crosscoder in it.

Every quantity is a sequence over the checkpoints of a series (base = checkpoint 0), indexed by training step.

- :func:`linear_extrapolation`: a least-squares line through the last `window` points, evaluated at the next
  step, with the standard error of that prediction. Works on one series or many at once (per-latent decoder norms
  and shifts: shape ``[..., K]``).
- :func:`persistence`: n+1 predicted as n (a baseline).
- :func:`calibrated_forecast`: the crosscoder forecast of a behaviour. An internal signal (a crosscoder reading of
  the persona at each checkpoint) is extrapolated linearly over the window; a straight line fitted between that
  signal and the measured behaviour over *all* checkpoints 0..n maps it to behaviour. The uncertainty combines the
  calibration's residual spread and the extrapolation's.
- :func:`half_level_at` and :func:`first_flagged`: the early-warning indices.

The window counts checkpoints, base included; a forecast from fewer checkpoints than the window is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crosscoder.errors import ConfigError

DEFAULT_WINDOW = 3


class ForecastError(ConfigError):
    """A forecast that cannot be made from the checkpoints given (too few, steps not increasing)."""


@dataclass
class Prediction:
    """A predicted value (or array of values) at the next checkpoint, with a standard uncertainty."""

    value: NDArray[np.float64]
    std: NDArray[np.float64]

    def scalar(self) -> tuple[float, float]:
        """(value, std) of a single-series prediction."""
        return float(self.value), float(self.std)


def check_steps(steps: ArrayLike, names: list[str] | None = None) -> NDArray[np.float64]:
    """The steps as floats; refuses labels that are not strictly increasing, naming the checkpoint."""
    t = np.asarray(steps, dtype=np.float64)
    if t.ndim != 1 or not np.all(np.isfinite(t)):
        raise ForecastError(f"checkpoint steps must be a 1-D list of finite numbers, got {np.asarray(steps).tolist()}")
    for k in range(1, t.size):
        if t[k] <= t[k - 1]:
            who = names[k] if names and k < len(names) else f"checkpoint {k}"
            raise ForecastError(
                f"checkpoint {who}: step {t[k]:g} is not after the previous checkpoint's {t[k - 1]:g}; "
                "order the series by training step"
            )
    return t


def check_window(n_points: int, window: int) -> None:
    """Refuse a forecast from fewer checkpoints than the window."""
    if window < 2:
        raise ForecastError(f"forecast window {window}: must be >= 2 checkpoints (a line needs two points)")
    if n_points < window:
        raise ForecastError(
            f"forecast needs at least {window} checkpoints (the window, base included), got {n_points}; "
            f"add {window - n_points} checkpoint(s) or lower the window"
        )


def linear_extrapolation(
    steps: ArrayLike, values: ArrayLike, next_step: float, window: int = DEFAULT_WINDOW
) -> Prediction:
    """Least-squares line through the last `window` points of `values` (``[..., K]``), evaluated at `next_step`.

    The std is the prediction's standard error, s·sqrt(1 + 1/W + (t* − t̄)² / Sxx) with s² = RSS / (W − 2); with a
    window of 2 (no residual) it falls back to the last change |y_n − y_(n−1)|.
    """
    t = check_steps(steps)
    y = np.asarray(values, dtype=np.float64)
    if y.shape[-1] != t.size:
        raise ForecastError(f"{y.shape[-1]} values for {t.size} checkpoint steps; give one value per checkpoint")
    check_window(t.size, window)
    if next_step <= t[-1]:
        raise ForecastError(f"forecast step {next_step:g} is not after the last checkpoint's step {t[-1]:g}")
    tw, yw = t[-window:], y[..., -window:]
    tbar = tw.mean()
    sxx = float(((tw - tbar) ** 2).sum())
    slope = ((tw - tbar) * (yw - yw.mean(axis=-1, keepdims=True))).sum(axis=-1) / sxx
    pred = yw.mean(axis=-1) + slope * (next_step - tbar)
    if window > 2:
        fitted = yw.mean(axis=-1, keepdims=True) + slope[..., None] * (tw - tbar)
        s = np.sqrt(((yw - fitted) ** 2).sum(axis=-1) / (window - 2))
        std = s * math.sqrt(1 + 1 / window + (next_step - tbar) ** 2 / sxx)
    else:
        std = np.abs(yw[..., -1] - yw[..., -2])
    return Prediction(np.asarray(pred, dtype=np.float64), np.asarray(std, dtype=np.float64))


def persistence(values: ArrayLike) -> Prediction:
    """n+1 predicted as n; the std is the size of the last change."""
    y = np.asarray(values, dtype=np.float64)
    if y.shape[-1] < 2:
        raise ForecastError("persistence needs at least 2 checkpoints (for its uncertainty)")
    return Prediction(y[..., -1].copy(), np.abs(y[..., -1] - y[..., -2]))


def _clip(p: Prediction, lo: float | None, hi: float | None) -> Prediction:
    if lo is None and hi is None:
        return p
    return Prediction(np.clip(p.value, lo, hi), p.std)


def behaviour_linear(
    steps: ArrayLike, behaviour: ArrayLike, next_step: float, window: int = DEFAULT_WINDOW,
    clip: tuple[float | None, float | None] = (None, None),
) -> Prediction:  # fmt: skip
    """The behaviour-only baseline: linear extrapolation of the behavioural scores alone (clipped to their range)."""
    return _clip(linear_extrapolation(steps, behaviour, next_step, window), *clip)


@dataclass
class Calibration:
    """behaviour ≈ intercept + slope · signal, fitted over checkpoints 0..n."""

    intercept: float
    slope: float
    residual_std: float
    n_points: int


def calibrate(signal: ArrayLike, behaviour: ArrayLike) -> Calibration:
    """Least-squares line from signal to behaviour over all given checkpoints (a flat signal gives slope 0)."""
    x, y = np.asarray(signal, dtype=np.float64), np.asarray(behaviour, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ForecastError(
            f"calibration needs matching 1-D signal and behaviour of 2+ checkpoints, got {x.shape} / {y.shape}"
        )
    sxx = float(((x - x.mean()) ** 2).sum())
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / sxx) if sxx > 1e-24 else 0.0
    intercept = float(y.mean() - slope * x.mean())
    resid = y - (intercept + slope * x)
    dof = max(x.size - 2, 1)
    return Calibration(intercept, slope, float(np.sqrt((resid**2).sum() / dof)), int(x.size))


def calibrated_forecast(
    steps: ArrayLike, signal: ArrayLike, behaviour: ArrayLike, next_step: float, window: int = DEFAULT_WINDOW,
    clip: tuple[float | None, float | None] = (None, None),
) -> tuple[Prediction, Prediction, Calibration]:  # fmt: skip
    """(behaviour forecast, signal forecast, calibration) at `next_step` from checkpoints 0..n.

    The signal is extrapolated over the last `window` checkpoints; the calibration uses all of them.
    std = sqrt(residual_std² + (slope · signal_std)²).
    """
    sig = linear_extrapolation(steps, signal, next_step, window)
    cal = calibrate(signal, behaviour)
    value = cal.intercept + cal.slope * sig.value
    std = np.sqrt(cal.residual_std**2 + (cal.slope * sig.std) ** 2)
    return _clip(Prediction(np.asarray(value), np.asarray(std)), *clip), sig, cal


def half_level_at(behaviour: ArrayLike) -> int | None:
    """The first checkpoint whose behaviour has risen half way from the base's (index 0) to the final one's.

    None when the final level is not above the base's (nothing emerged)."""
    y = np.asarray(behaviour, dtype=np.float64)
    rise = y[-1] - y[0]
    if y.size < 2 or rise <= 0:
        return None
    hits = np.flatnonzero(y - y[0] >= 0.5 * rise)
    return int(hits[0])


def first_flagged(flags: list[bool]) -> int | None:
    """The first checkpoint index at which the persona was flagged (None if never)."""
    return next((k for k, f in enumerate(flags) if f), None)


def mae(predicted: ArrayLike, actual: ArrayLike) -> float:
    """Mean absolute error (NaN when empty)."""
    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if p.shape != a.shape:
        raise ForecastError(f"{p.shape} predictions for {a.shape} actual values")
    return float(np.abs(p - a).mean()) if p.size else float("nan")
