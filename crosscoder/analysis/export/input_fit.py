"""Least-squares predictions of a crosscoder's other inputs from one model's activation (the export's `fit` mode).

A crosscoder encodes all its inputs together, pre = sum_{o,l} u_ol W_enc[o,l] + b_enc (u = the normalised
activations, u_ol = s_ol x_ol). A single-model SAE sees only u_mh, so it must stand in for every other input. The
`fit` mode replaces each other input by its least-squares linear prediction from u_mh over the run's activation cache:

    u_ol ≈ u_mh A[o,l] + c[o,l],   A = (C_mm + λ I)^-1 C_m,ol,   c = μ_ol − μ_mh A

(C = covariances, μ = means, λ = `ridge` · tr(C_mm) / D). The SAE's encoder then is
W_enc' = s_mh (W_enc[m,h] + Σ_{(o,l)≠(m,h)} A[o,l] W_enc[o,l]) with b_enc' = b_enc + Σ c[o,l] W_enc[o,l]; it is the
best linear stand-in for the joint pre-activation. `mirror` is the special case A = I, c = 0 (other hooks zero),
`own` the case A = 0, c = 0. A fine-tune that shifts every activation by a constant (a planted direction) or
rotates it is predicted exactly; what the prediction cannot recover is the part of the other model's activation not
linearly determined by this one's, which is what a single-model SAE cannot see in any mode.

One pass over the cache accumulates the mean and Gram matrix of all M·L·D inputs (float64), so every (model, hook)
slice is fitted from the same statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.data.api import RowBatch
from crosscoder.data.protocols import Activations
from crosscoder.errors import DataError

RowFilter = Callable[[RowBatch], Tensor]
"""Chooses the rows of a batch to fit on (a bool mask of the batch); the default is the training rows."""


@dataclass
class InputMoments:
    """Mean and covariance of every normalised crosscoder input u (M·L·D values per token)."""

    mean_N: Float[Tensor, " N"]
    cov_NN: Float[Tensor, "N N"]
    n_rows: int
    shape: tuple[int, int, int]
    """(M, L, D): N = M·L·D, ordered as x_BMLD flattened."""


@dataclass
class InputFit:
    """The other inputs of a crosscoder predicted from input (m, h): u_ol ≈ u_mh A_MLDD[o,l] + c_MLD[o,l]."""

    m: int
    h: int
    A_MLDD: Float[Tensor, "M L D D"]
    """A[m,h] is the identity."""
    c_MLD: Float[Tensor, "M L D"]
    """c[m,h] is zero."""
    n_rows: int

    def predict(self, u_BD: Float[Tensor, "B D"]) -> Float[Tensor, "B M L D"]:
        """Every normalised input predicted from u_mh (input (m, h) itself is returned unchanged)."""
        return torch.einsum("bd,mlde->bmle", u_BD, self.A_MLDD) + self.c_MLD


def input_moments(
    acts: Activations, scale_ML: Tensor, keep: RowFilter | None = None, batch: int = 4096
) -> InputMoments:
    """Mean and covariance of the normalised inputs over the cache rows `keep` selects (default: training rows)."""
    M, L = scale_ML.shape
    D = int(acts.d_model)
    N = M * L * D
    s = scale_ML.double()[None, :, :, None]
    total = torch.zeros(N, dtype=torch.float64)
    gram = torch.zeros(N, N, dtype=torch.float64)
    n = 0
    for rb in acts.iter_rows(batch):
        mask = keep(rb) if keep is not None else rb.train_mask_B
        if not bool(mask.any()):
            continue
        z = (rb.x_BMLD[mask].double() * s).reshape(-1, N)
        total += z.sum(0)
        gram += z.T @ z
        n += z.shape[0]
    if n < 2:
        raise DataError(
            "the activation cache has fewer than 2 rows to fit the export's encoder on; harvest more tokens"
        )
    mean = total / n
    cov = gram / n - torch.outer(mean, mean)
    return InputMoments(mean, cov, n, (M, L, D))


def fit_inputs(moments: InputMoments, m: int, h: int, ridge: float = 1e-4) -> InputFit:
    """The least-squares prediction of every input from input (m, h) (see the module docstring)."""
    M, L, D = moments.shape
    idx = (m * L + h) * D
    own = slice(idx, idx + D)
    C_mm = moments.cov_NN[own, own]
    lam = ridge * float(torch.trace(C_mm)) / D
    C_mo = moments.cov_NN[own, :]  # [D, N]
    A_DN = torch.linalg.solve(C_mm + lam * torch.eye(D, dtype=C_mm.dtype), C_mo)
    c_N = moments.mean_N - moments.mean_N[own] @ A_DN
    A_MLDD = A_DN.reshape(D, M, L, D).permute(1, 2, 0, 3).contiguous()
    c_MLD = c_N.reshape(M, L, D).clone()
    A_MLDD[m, h] = torch.eye(D, dtype=A_MLDD.dtype)  # the input itself is passed through exactly
    c_MLD[m, h] = 0.0
    return InputFit(m, h, A_MLDD.float(), c_MLD.float(), moments.n_rows)
