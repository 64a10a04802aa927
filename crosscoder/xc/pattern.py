"""The active (token, latent) pairs of a batch, in the layouts the sparse kernels need.

Kernels are chosen by device: ``"cpu"`` uses MKL sparse CSR products written into reusable buffers, ``"gpu"`` uses
gathers and ``embedding_bag`` (plain CUDA kernels; the caching allocator makes allocation cheap there). Both give
the same values; :func:`use_backend` forces one (tests run the GPU kernels on CPU tensors with it).

Building and indexing a pattern (sorts, counts and gathers over N indices) runs on one thread on CPU
(:func:`one_thread`): these are small, and a parallel region ends at a barrier that, when other processes keep the
cores busy, waits for a descheduled thread. Measured on 2 busy cores: torch's parallel radix sort of 32,768 int64
keys took 600 ms on 2 threads and 0.3 ms on one; a 32,768-element gather 17 ms against well under 1 ms.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

BACKENDS = ("cpu", "gpu")
_forced: list[str] = []


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Within the block, patterns use backend ``name`` whatever their device (for tests and benchmarks)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown sparse backend {name!r}; choose one of {BACKENDS}")
    _forced.append(name)
    try:
        yield
    finally:
        _forced.pop()


def backend_for(device: torch.device) -> str:
    """The sparse kernels used on ``device``: ``"cpu"`` on CPU, ``"gpu"`` elsewhere (unless forced)."""
    if _forced:
        return _forced[-1]
    return "cpu" if device.type == "cpu" else "gpu"


@contextlib.contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
    """torch ops on one thread within the block (CPU only; restores the thread count, exceptions included)."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@dataclass
class SparsePattern:
    """The active (token, latent) pairs of a batch, N = number of pairs.

    Entries are sorted row-major (by token, then latent), so they also form the CSR layout of the B x F activation
    matrix; ``perm_N`` re-orders them latent-major (the CSR layout of its transpose) for per-latent gradient sums.
    """

    rows_N: Int[Tensor, " N"]
    """Token index of each entry (non-decreasing)."""
    cols_N: Int[Tensor, " N"]
    """Latent index of each entry."""
    crow_B1: Int[Tensor, " B1"]
    """CSR row pointer: entries of token b are crow[b]:crow[b+1]."""
    perm_N: Int[Tensor, " N"]
    """Entry order grouped by latent (stable)."""
    lat_crow_F1: Int[Tensor, " F1"]
    """Row pointer of the latent-major layout: latent j's entries are perm[lat_crow[j]:lat_crow[j+1]]."""
    n_tokens: int
    n_latents: int
    backend: str = "cpu"
    """Kernel family, from :func:`backend_for` (see the module docstring)."""

    @classmethod
    def from_sorted(cls, rows_N: Tensor, cols_N: Tensor, n_tokens: int, n_latents: int) -> SparsePattern:
        """Build from entries already sorted row-major."""
        with one_thread(rows_N.device):
            counts_B = torch.bincount(rows_N, minlength=n_tokens)
            crow_B1 = torch.zeros(n_tokens + 1, dtype=torch.long, device=rows_N.device)
            torch.cumsum(counts_B, 0, out=crow_B1[1:])
            perm_N = torch.argsort(cols_N, stable=True)
            lat_crow_F1 = torch.zeros(n_latents + 1, dtype=torch.long, device=rows_N.device)
            torch.cumsum(torch.bincount(cols_N, minlength=n_latents), 0, out=lat_crow_F1[1:])
        backend = backend_for(rows_N.device)
        return cls(rows_N, cols_N, crow_B1, perm_N, lat_crow_F1, n_tokens, n_latents, backend)

    @classmethod
    def from_topk(cls, idx_BK: Int[Tensor, "B K"], n_latents: int) -> SparsePattern:
        """Per-token selection: token b keeps latents idx_BK[b]."""
        B, K = idx_BK.shape
        with one_thread(idx_BK.device):
            cols_N = idx_BK.sort(dim=-1, stable=True).values.reshape(-1)
            rows_N = torch.arange(B, device=idx_BK.device).repeat_interleave(K)
        return cls.from_sorted(rows_N, cols_N, B, n_latents)

    @classmethod
    def from_flat(cls, flat_N: Int[Tensor, " N"], n_tokens: int, n_latents: int) -> SparsePattern:
        """Batch-wide selection given flat indices b * F + j (any order)."""
        with one_thread(flat_N.device):
            flat_N = flat_N.sort(stable=True).values
        return cls.from_sorted(flat_N // n_latents, flat_N % n_latents, n_tokens, n_latents)

    @property
    def n_active(self) -> int:
        return int(self.rows_N.numel())

    @property
    def lat_offsets_F(self) -> Tensor:
        """Start of each latent's group in perm order (empty groups allowed)."""
        return self.lat_crow_F1[:-1]

    def gather(self, dense_BF: Tensor) -> Tensor:
        """Values of a B x F matrix at the pattern's entries."""
        with one_thread(dense_BF.device):
            return dense_BF[self.rows_N, self.cols_N]

    def scatter(self, values_N: Tensor) -> Tensor:
        """Dense B x F matrix holding values_N at the entries (zeros elsewhere); differentiable."""
        out = values_N.new_zeros(self.n_tokens, self.n_latents)
        return out.index_put((self.rows_N, self.cols_N), values_N)

    def csr(self, values_N: Tensor) -> Tensor:
        """The B x F matrix with values_N at the entries, as a sparse CSR tensor (row-major entry order)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                self.crow_B1, self.cols_N, values_N, (self.n_tokens, self.n_latents), check_invariants=False
            )

    def csr_t(self, values_N: Tensor) -> Tensor:
        """The F x B transpose of :meth:`csr` (latent-major), as a sparse CSR tensor."""
        with one_thread(values_N.device):
            rows_N, vals_N = self.rows_N[self.perm_N], values_N[self.perm_N]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                self.lat_crow_F1, rows_N, vals_N, (self.n_latents, self.n_tokens), check_invariants=False
            )
