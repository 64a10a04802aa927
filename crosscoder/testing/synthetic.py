"""Synthetic in-memory activation sets: for tests and the analysis benchmark (no harvest needed).

`InMemoryActs` duck-types `crosscoder.data.api.ActivationSet` (hooks, model_names, d_model, n_rows, n_seqs, scale_ML,
rows.gather, iter_rows, sequence_tokens, sequence_roles) over tensors held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from crosscoder.data.api import RowBatch
from crosscoder.data.masks import Role


class _Rows:
    def __init__(self, x_NMLD: torch.Tensor) -> None:
        self.x_NMLD = x_NMLD

    def gather(self, rows: np.ndarray) -> torch.Tensor:
        return self.x_NMLD[torch.from_numpy(np.sort(rows))]


@dataclass
class InMemoryActs:
    """Rows of paired activations with sequence / position / role metadata (stored order)."""

    x_NMLD: torch.Tensor
    seq_N: torch.Tensor
    pos_N: torch.Tensor
    role_N: torch.Tensor
    token_N: torch.Tensor
    turn_idx_N: torch.Tensor
    turn_rem_N: torch.Tensor
    hooks: list[str]
    model_names: list[str]
    scale_ML: torch.Tensor
    path: Path | None = None

    @property
    def rows(self) -> _Rows:
        return _Rows(self.x_NMLD)

    @property
    def d_model(self) -> int:
        return int(self.x_NMLD.shape[-1])

    @property
    def n_rows(self) -> int:
        return int(self.x_NMLD.shape[0])

    @property
    def n_seqs(self) -> int:
        return int(self.seq_N.max()) + 1

    def iter_rows(self, batch_size: int):
        for a in range(0, self.n_rows, batch_size):
            b = min(a + batch_size, self.n_rows)
            yield RowBatch(
                x_BMLD=self.x_NMLD[a:b],
                seq_B=self.seq_N[a:b],
                pos_B=self.pos_N[a:b],
                role_B=self.role_N[a:b],
                train_mask_B=self.role_N[a:b] != int(Role.SINK),
                token_B=self.token_N[a:b],
                turn_idx_B=self.turn_idx_N[a:b],
                turn_rem_B=self.turn_rem_N[a:b],
            )

    def sequence_tokens(self, seq: int) -> list[int]:
        return self.token_N[self.seq_N == seq].tolist()

    def sequence_roles(self, seq: int) -> list[int]:
        return self.role_N[self.seq_N == seq].tolist()


def chat_layout(n_seqs: int, seq_len: int) -> dict[str, torch.Tensor]:
    """Sequence metadata of `n_seqs` fake chats: sink, a user half and an assistant half per sequence."""
    seq = torch.arange(n_seqs).repeat_interleave(seq_len)
    pos = torch.arange(seq_len).repeat(n_seqs)
    half = seq_len // 2
    role = torch.where(pos < half, int(Role.USER), int(Role.ASSISTANT))
    role[pos == 0] = int(Role.SINK)
    turn_idx = torch.where(role == int(Role.ASSISTANT), pos - half, torch.where(role == int(Role.USER), pos - 1, -1))
    turn_rem = torch.where(
        role == int(Role.ASSISTANT), seq_len - 1 - pos, torch.where(role == int(Role.USER), half - 1 - pos, -1)
    )
    return {"seq_N": seq, "pos_N": pos, "role_N": role, "turn_idx_N": turn_idx, "turn_rem_N": turn_rem}


def synthetic_acts(
    n_seqs: int, seq_len: int, d: int, *, n_feats: int = 48, density: float = 0.08, planted: bool = True, vocab: int = 100,
    seed: int = 0, names: tuple[str, str] = ("base", "ft"), hook: str = "blocks.1.hook_resid_post",
) -> tuple[InMemoryActs, torch.Tensor]:  # fmt: skip
    """Sparse synthetic activations of a base/ft pair: shared features plus (if `planted`) one ft-only feature on ~10%
    of assistant tokens. Returns the set and the planted unit direction (raw space)."""
    g = torch.Generator().manual_seed(seed)
    meta = chat_layout(n_seqs, seq_len)
    N = n_seqs * seq_len
    dirs = torch.randn(n_feats, d, generator=g)
    dirs /= dirs.norm(dim=-1, keepdim=True)
    x_base = torch.empty(N, d)
    for a in range(0, N, 8192):  # chunked: the amplitude matrix is [rows, n_feats]
        b = min(a + 8192, N)
        on = (torch.rand(b - a, n_feats, generator=g) < density).float()
        x_base[a:b] = (on * (1 + 2 * torch.rand(b - a, n_feats, generator=g))) @ dirs + 0.02 * torch.randn(
            b - a, d, generator=g
        )
    x_ft = x_base.clone()
    v = torch.randn(d, generator=g)
    v /= v.norm()
    if planted:
        fire = (torch.rand(N, generator=g) < 0.1) & (meta["role_N"] == int(Role.ASSISTANT))
        x_ft += fire.float()[:, None] * (2.0 + torch.rand(N, generator=g)[:, None]) * v
    x = torch.stack([x_base, x_ft], dim=1)[:, :, None, :]
    x[meta["pos_N"] == 0] *= 50.0  # an attention-sink outlier that must be ignored
    token = torch.randint(0, vocab, (N,), generator=g)
    acts = InMemoryActs(
        x_NMLD=x,
        seq_N=meta["seq_N"],
        pos_N=meta["pos_N"],
        role_N=meta["role_N"],
        token_N=token,
        turn_idx_N=meta["turn_idx_N"],
        turn_rem_N=meta["turn_rem_N"],
        hooks=[hook],
        model_names=list(names),
        scale_ML=torch.ones(2, 1),
    )
    return acts, v
