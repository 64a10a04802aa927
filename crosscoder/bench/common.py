"""What every benchmark shares: a thread-count guard, the machine record, and GEMM probes.

Every benchmark JSON carries a :class:`Machine` record (torch threads, cores, load average, torch version) and the
GEMM rate measured in the same run, so a throughput can be read as a share of what this machine could do that hour.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` torch threads (None or 0: keep the current count); the count is restored on exit,
    exceptions included, so a benchmark stage never leaves its setting to the next one. Yields the count in use."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (None where the OS has none)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


@dataclass
class Machine:
    """Where and how a benchmark ran."""

    torch_version: str = torch.__version__
    threads: int = field(default_factory=torch.get_num_threads)
    """torch intra-op threads during the measurement."""
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    cpu: str = field(default_factory=lambda: platform.processor() or platform.machine())
    load_avg_start: list[float] | None = field(default_factory=load_average)
    """Load averages when the benchmark started (other processes share the CPU)."""
    load_avg_end: list[float] | None = None
    """Load averages when it ended (filled by :meth:`finish`)."""
    gemm_gflops: float = 0.0
    """fp32 GEMM rate of a 1024^3 product measured at the start (best of runs for 0.2 s)."""

    def finish(self) -> Machine:
        self.load_avg_end = load_average()
        return self


def square_gemm_gflops(device: torch.device, n: int = 1024, min_seconds: float = 0.2) -> float:
    """fp32 n x n GEMM rate (GFLOP/s), best of repeated runs for min_seconds."""
    from crosscoder.xc.metrics import measure_gemm_gflops

    return measure_gemm_gflops(device, n=n, min_seconds=min_seconds)


class EncoderGemmProbe:
    """The crosscoder's encoder GEMM, b + x_BX @ W^T with W stored [F, X] (as the training step runs it), timed
    alone: the rate this machine reaches on exactly the product the sparse bound counts.

    ``W_FX`` and ``out`` may be borrowed from the model being timed (its encoder and its pre-activation buffer), so
    the probe adds no memory; the product only overwrites ``out``."""

    def __init__(
        self,
        batch: int,
        d_in: int,
        n_latents: int,
        device: torch.device,
        dtype: torch.dtype,
        W_FX: torch.Tensor | None = None,
        out: torch.Tensor | None = None,
    ) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, d_in, generator=gen).to(device, dtype)
        self.W_FX = torch.randn(n_latents, d_in, generator=gen).to(device, dtype) if W_FX is None else W_FX.detach()
        self.b_F = torch.zeros(n_latents, device=device, dtype=dtype)
        self.out = torch.empty(batch, n_latents, device=device, dtype=dtype) if out is None else out
        if tuple(self.W_FX.shape) != (n_latents, d_in) or tuple(self.out.shape) != (batch, n_latents):
            raise ValueError("EncoderGemmProbe: borrowed tensors have the wrong shapes")
        self.flop = 2.0 * batch * d_in * n_latents
        self.device = device
        self()  # warm-up

    def __call__(self) -> float:
        """One timed product; returns GFLOP/s."""
        _sync(self.device)
        t0 = time.perf_counter()
        torch.addmm(self.b_F, self.x, self.W_FX.t(), out=self.out)
        _sync(self.device)
        return self.flop / (time.perf_counter() - t0) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
