"""Normalisation scalars: per model and hook, the factor that makes the mean residual norm equal sqrt(d_model).

Estimated from a uniform streaming sample of training-eligible rows (the sink position excluded), so it needs one pass
and constant memory. Accumulators are kept per shard, so an interrupted harvest resumes without losing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crosscoder.data.masks import Role


@dataclass
class NormStats:
    """Running sums of ||x|| and ||x||^2 over sampled rows, per model and hook."""

    sum_norm_ML: np.ndarray
    sum_sq_ML: np.ndarray
    count: int = 0

    @classmethod
    def zeros(cls, n_models: int, n_hooks: int) -> NormStats:
        return cls(np.zeros((n_models, n_hooks)), np.zeros((n_models, n_hooks)), 0)

    def add(self, x_NMLD: Tensor) -> None:
        """Add the rows of `x_NMLD` to the sums."""
        if x_NMLD.shape[0] == 0:
            return
        norms_NML = x_NMLD.to(torch.float64).norm(dim=-1)
        self.sum_norm_ML += norms_NML.sum(0).numpy()
        self.sum_sq_ML += (norms_NML**2).sum(0).numpy()
        self.count += int(x_NMLD.shape[0])

    def merge(self, other: NormStats) -> NormStats:
        return NormStats(
            self.sum_norm_ML + other.sum_norm_ML, self.sum_sq_ML + other.sum_sq_ML, self.count + other.count
        )

    def to_json(self) -> dict[str, Any]:
        return {"sum_norm_ML": self.sum_norm_ML.tolist(), "sum_sq_ML": self.sum_sq_ML.tolist(), "count": self.count}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> NormStats:
        return cls(
            np.asarray(obj["sum_norm_ML"], dtype=np.float64),
            np.asarray(obj["sum_sq_ML"], dtype=np.float64),
            int(obj["count"]),
        )

    def summary(self, d_model: int) -> dict[str, Any]:
        """Mean norm, RMS norm and the scale sqrt(d_model) / mean norm, per model and hook."""
        if self.count == 0:
            raise ValueError("no rows sampled")
        mean = self.sum_norm_ML / self.count
        rms = np.sqrt(self.sum_sq_ML / self.count)
        return {
            "scale_ML": (math.sqrt(d_model) / mean).tolist(),
            "mean_norm_ML": mean.tolist(),
            "rms_norm_ML": rms.tolist(),
            "sample_rows": self.count,
            "convention": "scale_ML[m][l] * x makes E||x|| = sqrt(d_model) (sink position excluded)",
        }


def sample_for_norm(role_N: Tensor, rate: float, generator: torch.Generator) -> Tensor:
    """Boolean mask of rows in the normalisation sample: non-sink, non-pad rows kept with probability `rate`."""
    eligible = (role_N != int(Role.SINK)) & (role_N != int(Role.PAD))
    if rate >= 1.0:
        return eligible
    return eligible & (torch.rand(role_N.shape[0], generator=generator) < rate)
