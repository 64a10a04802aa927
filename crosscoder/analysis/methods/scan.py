"""Candidates of any method as "latents": an encoder over paired activations, one pass over the cache, top contexts.

The shared labeller reads a crosscoder through three things: ``encode(x_BMLD) -> [B, F]`` (activations on the trait
prompts), ``cfg.n_latents`` and its parameters' device. `CandidateEncoder` gives a method's candidates that
interface: the diff-SAE's latents on x_ft - x_base, or a direction's projection ``relu(<x_ft - x_base, u>)`` at the
lens hook (mean differences, persona vectors). `scan_cache` runs it over the cache once (mean activation where it
fires, firing rate, top rows) and `candidate_contexts` turns the top rows into the labeller's `TopExample`s (one per
sequence, token by token), as `crosscoder.analysis.evidence.contexts` does for crosscoder latents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from crosscoder.analysis.records.candidate import TopExample
from crosscoder.analysis.stats.collect import slice_masks
from crosscoder.analysis.stats.kernels import ActivePairs, TopExamples

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from crosscoder.data.protocols import Activations


@dataclass
class EncoderShape:
    """The one config field the labeller reads from an encoder."""

    n_latents: int


class CandidateEncoder(nn.Module):
    """``encode(x_BMLD) -> [B, N]`` activations (>= 0) of N candidates, with the labeller's crosscoder interface."""

    def __init__(self, n: int, fn: Callable[[Tensor], Tensor], modules: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.cfg = EncoderShape(n)
        self.fn = fn
        self.parts = nn.ModuleList(modules or [])
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        """Gives `parameters()` a device when the encoder holds no weights of its own."""

    @torch.no_grad()
    def encode(self, x_BMLD: Tensor) -> Tensor:
        return self.fn(x_BMLD.to(self.anchor.device))


def projection_encoder(dirs_ND: Tensor, lens_idx: int) -> CandidateEncoder:
    """Activation of candidate n = ``relu(<x_last - x_first, u_n>)`` at the lens hook (u_n = the unit direction)."""
    u_ND = (dirs_ND / dirs_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)).float()

    def fn(x_BMLD: Tensor) -> Tensor:
        diff_BD = (x_BMLD[:, -1, lens_idx] - x_BMLD[:, 0, lens_idx]).float()
        return torch.relu(diff_BD @ u_ND.to(diff_BD.device).T)

    return CandidateEncoder(int(dirs_ND.shape[0]), fn)


@dataclass
class Scan:
    """Per-candidate statistics of one pass over the cache (valid rows only)."""

    n_rows: int
    fired_N: Tensor
    sum_N: Tensor
    max_N: Tensor
    top: TopExamples
    seq_R: np.ndarray = field(repr=False)
    pos_R: np.ndarray = field(repr=False)

    @property
    def mean_act_N(self) -> Tensor:
        """Mean activation where the candidate fires (0 where it never does)."""
        return (self.sum_N / self.fired_N.clamp_min(1)).float()

    @property
    def freq_N(self) -> Tensor:
        return (self.fired_N / max(self.n_rows, 1)).float()

    @property
    def mean_all_N(self) -> Tensor:
        """Mean activation over every valid row."""
        return (self.sum_N / max(self.n_rows, 1)).float()


@torch.no_grad()
def scan_cache(enc: CandidateEncoder, acts: Activations, *, max_rows: int, batch_size: int, top_k: int) -> Scan:
    """One pass of `enc` over the cache's rows (those the crosscoder trains on), in stored order."""
    N = enc.cfg.n_latents
    fired, total, peak = torch.zeros(N, dtype=torch.float64), torch.zeros(N, dtype=torch.float64), torch.zeros(N)
    top = TopExamples(top_k, N)
    seqs, poss, row, n_valid = [], [], 0, 0
    limit = acts.n_rows if max_rows <= 0 else min(max_rows, acts.n_rows)
    for batch in acts.iter_rows(batch_size):
        if row >= limit:
            break
        keep = min(batch.x_BMLD.shape[0], limit - row)
        valid_B = slice_masks(batch, 1)["all"][:keep]
        f_BN = enc.encode(batch.x_BMLD[:keep]).float().cpu() * valid_B[:, None]
        fired += (f_BN > 0).sum(0).double()
        total += f_BN.double().sum(0)
        peak = torch.maximum(peak, f_BN.max(0).values)
        top.update(ActivePairs.from_dense(f_BN).col_major(), row)
        seqs.append(batch.seq_B[:keep].numpy().astype(np.int64))
        poss.append(batch.pos_B[:keep].numpy().astype(np.int64))
        row += keep
        n_valid += int(valid_B.sum())
    return Scan(n_valid, fired, total, peak, top, np.concatenate(seqs or [np.zeros(0, np.int64)]),
                np.concatenate(poss or [np.zeros(0, np.int64)]))  # fmt: skip


@torch.no_grad()
def candidate_contexts(
    enc: CandidateEncoder, acts: Activations, scan: Scan, latents: list[int], tokenizer: Tokenizer, *,
    n_examples: int, before: int, after: int = 4,
) -> dict[int, list[TopExample]]:  # fmt: skip
    """Each candidate's top-activating contexts (one per sequence, best first), re-encoded token by token."""
    out: dict[int, list[TopExample]] = {j: [] for j in latents}
    for j in latents:
        values, rows = scan.top.for_latent(j)
        seen: set[int] = set()
        for value, r in zip(values, rows, strict=True):
            seq, pos = int(scan.seq_R[r]), int(scan.pos_R[r])
            if seq in seen or value <= 0:
                continue
            seen.add(seq)
            n_tok = len(acts.sequence_tokens(seq))
            lo, hi = max(0, pos - before), min(n_tok, pos + after + 1)
            first_row = r - (pos - lo)  # a sequence's rows are stored contiguously, in position order
            f_W = enc.encode(acts.rows.gather(np.arange(first_row, first_row + hi - lo)))[:, j].float().cpu()
            ids = acts.sequence_tokens(seq)[lo:hi]
            out[j].append(TopExample(seq=seq, pos=pos, tokens=[str(tokenizer.decode([t])) for t in ids],
                                     acts=[round(float(a), 4) for a in f_W], max_pos=pos - lo,
                                     max_act=round(float(value), 4)))  # fmt: skip
            if len(seen) >= n_examples:
                break
    return out
