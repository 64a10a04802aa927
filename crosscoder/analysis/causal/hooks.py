"""Causal checks: steer a model along a latent's decoder direction, or ablate the latent, only inside a context manager.

Hooks are PyTorch forward hooks on the HF decoder layer behind the hook point (output for ``hook_resid_post``, input
for ``hook_resid_pre``), so both HF ``generate`` and the TransformerBridge (which runs the same modules) see them;
a separate HookedTransformer gets a TransformerLens hook as well. Every hook is removed when the ``with`` block
exits, also on an exception, and no weight is ever modified.

Ablation of latent j in model m subtracts ``f_j(x) d_j,m`` at the hook, with ``f_j`` estimated from model m's own
activation: ``relu(<W_enc[m, :, j], x_n> + sum_{m' != m} <W_enc[m', :, j], mean x_n,m'> + b_enc_j)`` -- the other
models' encoder inputs, which a single forward pass cannot see, are replaced by their mean over the cache.

`edit_residual_rows` applies a different edit to each batch row (`RowEdit`: a steering add, an ablation, or
nothing), so many steering strengths, latents and plain rows can share one batched ``generate`` call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.errors import ModelError
from crosscoder.models.residual import Edit, edit_residual, steer_vector

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel
    from crosscoder.xc.model import Crosscoder

__all__ = ["Edit", "RowEdit", "RowEdits", "ablate_latent", "ablation_edit", "ablation_row", "edit_residual",
           "edit_residual_rows", "steer_row", "steer_vector"]  # fmt: skip


def ablate_latent(w_enc_D: Tensor, enc_offset: float, scale: float, d_dec_raw_D: Tensor) -> Edit:
    """An edit subtracting ``f_hat(x) * d`` with ``f_hat = relu(<w_enc, x * scale> + enc_offset)``."""
    w = w_enc_D.detach().float() * scale
    d = d_dec_raw_D.detach().float()

    def edit(x: Tensor) -> Tensor:
        f = torch.relu(x.float() @ w.to(x.device) + enc_offset)
        return (x.float() - f[..., None] * d.to(x.device)).to(x.dtype)

    return edit


def _ablation_params(
    cc: Crosscoder, latent: int, model_idx: int, hook_idx: int, mean_xn_MLD: Tensor
) -> tuple[Tensor, float, float, Tensor]:
    """(w_enc_D, enc_offset, scale, d_dec_raw_D) of the ablation of `latent` (arguments of `ablate_latent`)."""
    W_enc = cc.W_enc_MLDF.detach()[..., latent]  # [M, L, D]
    offset = float(cc.b_enc_F.detach()[latent])
    M, L = W_enc.shape[0], W_enc.shape[1]
    for m in range(M):
        for li in range(L):
            if (m, li) != (model_idx, hook_idx):
                offset += float((W_enc[m, li] * mean_xn_MLD[m, li]).sum())
    scale = float(cc.scale_ML[model_idx, hook_idx])
    d_raw = cc.W_dec_FMLD.detach()[latent, model_idx, hook_idx] / scale
    return W_enc[model_idx, hook_idx], offset, scale, d_raw


def ablation_edit(cc: Crosscoder, latent: int, model_idx: int, hook_idx: int, mean_xn_MLD: Tensor) -> Edit:
    """The ablation edit of `latent` in model `model_idx` at hook `hook_idx` (see the module docstring)."""
    return ablate_latent(*_ablation_params(cc, latent, model_idx, hook_idx, mean_xn_MLD))


@dataclass(frozen=True)
class RowEdit:
    """One batch row's edit: ``x + add_D - relu(<w_D, x> + offset) * d_D``; a field left None drops its term."""

    add_D: Tensor | None = None
    """Steering vector added at every position (already multiplied by the strength)."""
    w_D: Tensor | None = None
    """Ablation: encoder weights times the normalisation scale (the latent's estimate reads raw activations)."""
    offset: float = 0.0
    """Ablation: encoder bias plus the other models' mean encoder inputs."""
    d_D: Tensor | None = None
    """Ablation: raw-space decoder direction subtracted ``f_hat`` times."""


def steer_row(direction_D: Float[Tensor, " D"], strength: float) -> RowEdit:
    """The row form of `steer_vector`: add ``strength * direction`` at every position."""
    return RowEdit(add_D=strength * direction_D.detach().float())


def ablation_row(cc: Crosscoder, latent: int, model_idx: int, hook_idx: int, mean_xn_MLD: Tensor) -> RowEdit:
    """The row form of `ablation_edit`."""
    w_enc_D, offset, scale, d_raw_D = _ablation_params(cc, latent, model_idx, hook_idx, mean_xn_MLD)
    return RowEdit(w_D=w_enc_D.detach().float() * scale, offset=offset, d_D=d_raw_D.detach().float())


class RowEdits:
    """An `Edit` applying row b's `RowEdit` to row b of ``x [B, ..., D]`` (any sequence length, e.g. KV-cached steps).

    Rows without a term get an exact zero for it, so a plain row passes through unchanged and a steered or ablated
    row gets the same values as the single-edit `steer_vector` / `ablate_latent`.
    """

    def __init__(self, rows: list[RowEdit], d_model: int) -> None:
        self.n_rows = len(rows)
        zero_D = torch.zeros(d_model)
        self.add_BD = torch.stack([r.add_D.float() if r.add_D is not None else zero_D for r in rows])
        self.ablates = any(r.d_D is not None for r in rows)
        self.w_BD = torch.stack([r.w_D.float() if r.w_D is not None else zero_D for r in rows])
        self.d_BD = torch.stack([r.d_D.float() if r.d_D is not None else zero_D for r in rows])
        self.offset_B = torch.tensor([r.offset if r.d_D is not None else 0.0 for r in rows], dtype=torch.float32)

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[0] != self.n_rows:
            raise ModelError(
                f"per-row edit for {self.n_rows} rows got a batch of shape {tuple(x.shape)}; "
                "run the edited model on exactly the rows the edits were built for"
            )
        view = (self.n_rows, *([1] * (x.dim() - 2)), x.shape[-1])
        add = self.add_BD.to(x.device).view(view)
        if not self.ablates:
            return x + add.to(x.dtype)
        w_BD = self.w_BD.to(x.device)
        xf = x.float().reshape(self.n_rows, -1, x.shape[-1])  # [B, S, D]
        f_BS = torch.relu(torch.einsum("bsd,bd->bs", xf, w_BD) + self.offset_B.to(x.device)[:, None])
        f = f_BS.reshape(x.shape[:-1])[..., None]
        return (x.float() + add - f * self.d_BD.to(x.device).view(view)).to(x.dtype)


@contextmanager
def edit_residual_rows(model: LoadedModel, hook: str, rows: list[RowEdit]) -> Iterator[None]:
    """`edit_residual` with a per-row edit: inside the block every forward must see exactly ``len(rows)`` rows."""
    with edit_residual(model, hook, RowEdits(rows, int(model.d_model))):
        yield
