"""Training metrics: per-model FVE / MSE, L0, dead and dense latents, decoder-norm ratios, throughput and MFU.

All reconstruction metrics are computed in the normalised space over a logging window of steps:

    FVE_m = 1 - sum ||x_m - xhat_m||^2 / sum ||x_m - mean(x_m)||^2

with the sums over the window's tokens (and, for several hooks, over hooks; per-hook values are logged too).
Sums are kept in float64 so the variance (sum x^2 - n mean^2) does not cancel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from crosscoder.xc.distributed import DistInfo, all_reduce_sum_
from crosscoder.xc.loss import LossTerms


def flops_per_token(d_in: int, n_latents: int, k: float, sparse: bool) -> float:
    """FLOP model of one training step per token, X = d_in (models x hooks x d_model), F = n_latents.

    * Dense: 10*X*F = encoder forward 2XF + decoder forward 2XF + dL/df 2XF + dL/dW_dec 2XF + dL/dW_enc 2XF
      (no dL/dx is needed).
    * Sparse, with k active latents per token (TopK's k; L1's measured L0): 2*X*F + 8*k*X = the dense encoder
      forward (the selection needs every pre-activation) + 2kX each for the decode, dL/df at the active pairs,
      dL/dW_dec and dL/dW_enc of the active rows.

    The sparse count, divided into the measured fp32 GEMM rate, is the "sparse bound" the step benchmark reports
    (crosscoder.bench.xc_step); element-wise work, selection and the optimizer are not counted.
    """
    return 2.0 * d_in * n_latents + 8.0 * k * d_in if sparse else 10.0 * d_in * n_latents


def measure_gemm_gflops(device: str | torch.device = "cpu", n: int = 1024, min_seconds: float = 0.2) -> float:
    """This machine's fp32 GEMM rate (GFLOP/s) on n x n matrices, best of repeated runs for min_seconds."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b  # warm-up
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return 2.0 * n**3 / best / 1e9


class DeadTracker:
    """Tokens since each latent last fired; dead = not fired in the last ``dead_tokens`` tokens."""

    def __init__(self, n_latents: int, dead_tokens: int, device: torch.device) -> None:
        self.dead_tokens = dead_tokens
        self.since_F = torch.zeros(n_latents, dtype=torch.float64, device=device)

    def update(self, fired_F: Tensor, n_tokens: int) -> None:
        """``fired_F``: tokens each latent fired on in this (global) batch."""
        self.since_F += n_tokens
        self.since_F[fired_F > 0] = 0

    def dead_mask(self) -> Tensor:
        return self.since_F >= self.dead_tokens

    def dead_fraction(self) -> float:
        return float(self.dead_mask().double().mean())


class MetricWindow:
    """Sums over the steps of one logging window; :meth:`flush` returns the metrics and starts a new window."""

    def __init__(self, n_models: int, n_hooks: int, d_model: int, n_latents: int, device: torch.device) -> None:
        self.shape = (n_models, n_hooks, d_model)
        self.n_latents = n_latents
        self.device = device
        self.reset()

    def reset(self) -> None:
        M, L, D = self.shape
        f64, dev = torch.float64, self.device
        self.sq_err_ML = torch.zeros(M, L, dtype=f64, device=dev)
        self.x_sum_MLD = torch.zeros(M, L, D, dtype=f64, device=dev)
        self.x_sq_ML = torch.zeros(M, L, dtype=f64, device=dev)
        self.fired_F = torch.zeros(self.n_latents, dtype=f64, device=dev)
        self.scalars = torch.zeros(5, dtype=f64, device=dev)  # tokens, l0, recon*tokens, penalty*tokens, aux*tokens
        self.steps = 0
        self.t0 = time.perf_counter()

    @torch.no_grad()
    def update(self, x_n_BX: Tensor, out: LossTerms) -> None:
        """Add one step (local batch) of normalised inputs and :meth:`Crosscoder.loss_terms` statistics."""
        B = x_n_BX.shape[0]
        x = x_n_BX.view(B, *self.shape).double()
        self.sq_err_ML += out.sq_err_ML.double()
        self.x_sum_MLD += x.sum(0)
        self.x_sq_ML += x.pow(2).sum(dim=(0, 3))
        self.fired_F += out.fired_F.double()
        terms = [float(B), out.l0, out.recon * B, out.penalty * B, out.aux * B]
        self.scalars += torch.stack([torch.as_tensor(t, dtype=torch.float64, device=self.device) for t in terms])
        self.steps += 1

    def flush(self, dist: DistInfo, names: list[str], hooks: list[str], dense_frequency: float) -> dict[str, float]:
        """All-reduce the window's sums over ranks and turn them into metrics (then reset)."""
        flat = torch.cat(
            [self.sq_err_ML.flatten(), self.x_sum_MLD.flatten(), self.x_sq_ML.flatten(), self.fired_F, self.scalars]
        )
        all_reduce_sum_(flat, dist)
        M, L, D = self.shape
        sizes = [M * L, M * L * D, M * L, self.n_latents, 5]
        sq_err_ML, x_sum, x_sq_ML, fired_F, scalars = torch.split(flat, sizes)
        sq_err_ML, x_sq_ML = sq_err_ML.view(M, L), x_sq_ML.view(M, L)
        n = float(scalars[0])
        var_ML = x_sq_ML - x_sum.view(M, L, D).pow(2).sum(-1) / n
        elapsed = time.perf_counter() - self.t0
        metrics: dict[str, float] = {
            "recon": float(scalars[2]) / n,
            "penalty": float(scalars[3]) / n,
            "aux": float(scalars[4]) / n,
            "l0": float(scalars[1]) / n,
            "dense_frac": float((fired_F / n > dense_frequency).double().mean()),
            "window_tokens": n,
            "tokens_per_s": n / max(elapsed, 1e-9),
        }
        fve_M = 1.0 - sq_err_ML.sum(1) / var_ML.sum(1).clamp_min(1e-12)
        for m, name in enumerate(names):
            metrics[f"fve/{name}"] = float(fve_M[m])
            metrics[f"mse/{name}"] = float(sq_err_ML[m].sum()) / (n * L * D)
            if L > 1:
                for l_, hook in enumerate(hooks):
                    metrics[f"fve/{name}/{hook}"] = float(1.0 - sq_err_ML[m, l_] / var_ML[m, l_].clamp_min(1e-12))
        metrics["fve/min"] = float(fve_M.min())
        self.reset()
        return metrics


@dataclass
class NormHistogram:
    """Histogram of one model's share of the decoder norm, ||d_m|| / sum_m' ||d_m'||, over latents."""

    name: str
    edges: list[float]
    counts: list[int]
    exclusive_frac: float
    """Fraction of latents whose share is > 0.9 (model-exclusive)."""


def decoder_norm_histograms(norms_FM: Tensor, names: list[str], bins: int = 50) -> list[NormHistogram]:
    """Decoder-norm-ratio histograms. With 2 models only the second model's share (the relative norm) is given:
    near 1 = exclusive to it, near 0 = exclusive to the first, ~0.5 = shared."""
    share_FM = (norms_FM / norms_FM.sum(1, keepdim=True).clamp_min(1e-12)).detach().double().cpu()
    models = [1] if norms_FM.shape[1] == 2 else list(range(norms_FM.shape[1]))
    out = []
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    for m in models:
        counts = torch.histc(share_FM[:, m], bins=bins, min=0.0, max=1.0)
        out.append(
            NormHistogram(
                name=names[m],
                edges=edges.tolist(),
                counts=[int(c) for c in counts.tolist()],
                exclusive_frac=float((share_FM[:, m] > 0.9).double().mean()),
            )
        )
    return out
