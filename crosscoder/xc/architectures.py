"""Sparsity mechanisms of the crosscoder, as registered classes (``ARCHITECTURES[name]``).

Each mechanism turns pre-activations ``pre_BF`` (normalised space) into latent activations and defines its sparsity
penalty. They all see two per-latent vectors computed by the crosscoder:

* ``dec_norm_F``: sum over models and hooks of the decoder norms, sum_{m,l} ||d_{j,m,l}|| (normalised space);
* ``share_F``: the penalty scale, ``shared_penalty_scale`` for the designated shared latents and 1 for the others.

L1 and JumpReLU scale their penalty by ``share_F``; TopK and BatchTopK rank latents by the score
``relu(pre) * dec_norm / share`` (what a latent adds to the reconstruction, per unit of sparsity cost), so a shared
latent with a smaller penalty is cheaper to select. A new mechanism subclasses :class:`Sparsity` and registers itself
with ``@register("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor, nn

from crosscoder.errors import ModelError
from crosscoder.xc.pattern import SparsePattern
from crosscoder.xc.select import batchtopk_select, topk_select
from crosscoder.xc.workspace import Workspace

if TYPE_CHECKING:
    from crosscoder.xc.config import CrosscoderConfig
    from crosscoder.xc.model import Crosscoder

ARCHITECTURES: dict[str, type[Sparsity]] = {}


def register(name: str) -> Callable[[type[Sparsity]], type[Sparsity]]:
    """Class decorator adding a sparsity mechanism to :data:`ARCHITECTURES` under ``name``."""

    def deco(cls: type[Sparsity]) -> type[Sparsity]:
        cls.name = name
        ARCHITECTURES[name] = cls
        return cls

    return deco


class Sparsity(nn.Module):
    """Base class: dense activation (the reference path) and penalty; TopK-style classes add :meth:`select`."""

    name: ClassVar[str] = ""
    uses_k: ClassVar[bool] = False
    """True when the mechanism keeps k latents per token (selection by :meth:`select`, auxiliary-k loss)."""
    sparse_path: ClassVar[bool] = False
    """True when the mechanism has the sparse training path (crosscoder.fast_path): TopK-style and L1."""
    validates_k: ClassVar[bool] = False
    """True when the mechanism reads crosscoder.k (so k <= n_latents is checked)."""
    default_dec_init_norm: ClassVar[float] = 0.5
    """Decoder init norm per model and hook when crosscoder.dec_init_norm is 0."""

    def __init__(self, cfg: CrosscoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stats: dict[str, Tensor] = {}
        """Per-batch statistics of the last training forward (e.g. the BatchTopK threshold estimate)."""

    def activate(
        self, pre_BF: Float[Tensor, "B F"], dec_norm_F: Tensor, share_F: Tensor, k: int
    ) -> Float[Tensor, "B F"]:
        """Latent activations f_BF (dense); training-mode batch statistics go to ``self.stats``."""
        raise NotImplementedError

    def select(
        self, pre_BF: Float[Tensor, "B F"], dec_norm_F: Tensor, share_F: Tensor, k: int, ws: Workspace | None = None
    ) -> SparsePattern:
        """Active (token, latent) pairs for the fast path (TopK-style mechanisms only); ``ws`` holds scratch."""
        raise NotImplementedError(f"{self.name} has no sparse selection")

    def penalty(self, pre_BF: Tensor, f_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor) -> Tensor:
        """Sparsity penalty (mean over tokens) before its coefficient; 0 for TopK-style mechanisms."""
        return pre_BF.new_zeros(())

    def coeff(self) -> float:
        """The config's coefficient of :meth:`penalty`."""
        return 0.0

    @torch.no_grad()
    def init_from_batch(self, pre_BF: Tensor, reduce_mean: Callable[[Tensor], Tensor]) -> None:
        """Data-dependent initialisation from the first batch's pre-activations (no-op by default)."""

    def attach(self, cc: Crosscoder) -> None:
        """Called once by the crosscoder that owns the mechanism, after its weights exist: structural constraints on
        the weights (e.g. masked blocks, `crosscoder.xc.dfc`) go here. No-op by default."""

    def check_weights(self, cc: Crosscoder, source: str) -> None:
        """Refuse loaded weights that break the mechanism's structure (a one-line DataError naming `source`)."""

    def extra_loss(
        self, x_n_BX: Tensor, f: Tensor, pattern: SparsePattern | None, W_dec_FX: Tensor, b_dec_X: Tensor
    ) -> Tensor:
        """An extra training-loss term added to the reconstruction (e.g. `crosscoder.xc.matryoshka`'s nested prefixes);
        ``f`` is ``f_N`` at ``pattern``'s entries on the fast path, the dense ``f_BF`` otherwise (pattern None)."""
        return x_n_BX.new_zeros(())


@register("l1")
class L1(Sparsity):
    """ReLU with penalty sum_j f_j * share_j * sum_{m,l} ||d_{j,m,l}|| (Anthropic 2024 / Kissane)."""

    default_dec_init_norm = 0.08
    sparse_path = True

    def activate(self, pre_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor, k: int) -> Tensor:
        return torch.relu(pre_BF)

    def penalty(self, pre_BF: Tensor, f_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor) -> Tensor:
        return (f_BF @ (dec_norm_F * share_F)).mean()

    def coeff(self) -> float:
        return self.cfg.l1_coeff


@register("topk")
class TopK(Sparsity):
    """Keep the k latents of largest score relu(pre) * dec_norm / share for every token."""

    uses_k = True
    validates_k = True
    sparse_path = True

    def score(self, pre_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor, ws: Workspace | None = None) -> Tensor:
        """Ranking score; the weight is > 0, so ranking pre * w equals ranking relu(pre) * w on positive entries.

        With a workspace (training on CPU) the score is written into its reused ``score_BF`` buffer."""
        w_F = dec_norm_F.detach() / share_F
        if ws is None or pre_BF.device.type != "cpu":
            return pre_BF.detach() * w_F
        return torch.mul(pre_BF.detach(), w_F, out=ws.scratch("score_BF", tuple(pre_BF.shape), pre_BF))

    def select(
        self, pre_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor, k: int, ws: Workspace | None = None
    ) -> SparsePattern:
        return topk_select(self.score(pre_BF, dec_norm_F, share_F, ws), k)

    def activate(self, pre_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor, k: int) -> Tensor:
        idx_BK = self.score(pre_BF, dec_norm_F, share_F).topk(k, dim=-1, sorted=False).indices
        mask_BF = torch.zeros_like(pre_BF, dtype=torch.bool).scatter_(1, idx_BK, True)
        return torch.relu(pre_BF) * mask_BF


@register("batchtopk")
class BatchTopK(TopK):
    """Keep the k * B largest scores over the whole batch (Bussmann et al.; Minder et al. for crosscoders).

    Training tracks ``threshold``, an EMA of the smallest positive kept score; inference (eval mode) keeps every
    latent whose score exceeds it, so a token's activations no longer depend on the rest of its batch.
    """

    threshold: Tensor

    def __init__(self, cfg: CrosscoderConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("threshold", torch.tensor(-1.0))
        """Inference threshold on the score; < 0 until the first training step."""

    def _min_positive(self, kept_N: Tensor) -> Tensor:
        pos = kept_N[kept_N > 0]
        return pos.min() if pos.numel() else kept_N.new_zeros(())

    def select(
        self, pre_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor, k: int, ws: Workspace | None = None
    ) -> SparsePattern:
        pattern, kept_N = batchtopk_select(self.score(pre_BF, dec_norm_F, share_F, ws), k * pre_BF.shape[0])
        self.stats["min_score"] = self._min_positive(kept_N)
        return pattern

    def activate(self, pre_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor, k: int) -> Tensor:
        score_BF = self.score(pre_BF, dec_norm_F, share_F)
        if self.training:
            n_keep = min(k * pre_BF.shape[0], score_BF.numel())
            top = score_BF.reshape(-1).topk(n_keep, sorted=False)
            mask_BF = torch.zeros(score_BF.numel(), dtype=torch.bool, device=pre_BF.device)
            mask_BF = mask_BF.index_fill_(0, top.indices, True).view_as(score_BF)
            self.stats["min_score"] = self._min_positive(top.values)
        else:
            if float(self.threshold) < 0:
                raise ModelError(
                    "BatchTopK inference threshold was never estimated (untrained crosscoder): train it first, "
                    "or call .train() to select over the batch"
                )
            mask_BF = score_BF > self.threshold
        return torch.relu(pre_BF) * mask_BF

    @torch.no_grad()
    def update_threshold(self, min_score: Tensor) -> None:
        """EMA update with this step's smallest kept score (already averaged over DDP ranks)."""
        if float(self.threshold) < 0:
            self.threshold.copy_(min_score)
        else:
            m = self.cfg.threshold_momentum
            self.threshold.mul_(m).add_(min_score.to(self.threshold), alpha=1 - m)


class _JumpReLUFn(torch.autograd.Function):
    """f = pre * H(pre - t); d f / d t uses a rectangle kernel of width eps (straight-through estimator)."""

    @staticmethod
    def forward(ctx, pre_BF: Tensor, t_F: Tensor, eps: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(pre_BF, t_F)
        ctx.eps = eps
        return pre_BF * (pre_BF > t_F)

    @staticmethod
    def backward(ctx, g_BF: Tensor):  # type: ignore[override]
        pre_BF, t_F = ctx.saved_tensors
        eps = ctx.eps
        near_BF = ((pre_BF - t_F).abs() < eps / 2).to(g_BF.dtype)
        grad_t = -(t_F / eps) * (near_BF * g_BF).sum(0)
        return g_BF * (pre_BF > t_F), grad_t, None


class _StepFn(torch.autograd.Function):
    """H(pre - t), with the same straight-through gradient for t (none for pre)."""

    @staticmethod
    def forward(ctx, pre_BF: Tensor, t_F: Tensor, eps: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(pre_BF, t_F)
        ctx.eps = eps
        return (pre_BF > t_F).to(pre_BF.dtype)

    @staticmethod
    def backward(ctx, g_BF: Tensor):  # type: ignore[override]
        pre_BF, t_F = ctx.saved_tensors
        eps = ctx.eps
        near_BF = ((pre_BF - t_F).abs() < eps / 2).to(g_BF.dtype)
        return None, -(1.0 / eps) * (near_BF * g_BF).sum(0), None


@register("jumprelu")
class JumpReLU(Sparsity):
    """JumpReLU with learned per-latent thresholds and an L0 penalty (Rajamanoharan et al. 2024).

    Adam moves the log-threshold by about lr per step, far too slowly to find the right scale in a short run, so
    :meth:`init_from_batch` starts each threshold at the latent's (1 - k / n_latents) quantile on the first batch
    (about k active latents per token); the L0 penalty and the reconstruction then tune it.
    """

    validates_k = True

    def __init__(self, cfg: CrosscoderConfig) -> None:
        super().__init__(cfg)
        init = torch.full((cfg.n_latents,), float(cfg.jumprelu_threshold_init)).log()
        self.log_threshold_F = nn.Parameter(init)
        """log of the per-latent threshold (kept positive through the exponential)."""

    def activate(self, pre_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor, k: int) -> Tensor:
        out = _JumpReLUFn.apply(pre_BF, self.log_threshold_F.exp(), self.cfg.jumprelu_bandwidth)
        assert isinstance(out, Tensor)
        return out

    def penalty(self, pre_BF: Tensor, f_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor) -> Tensor:
        l0_BF = _StepFn.apply(pre_BF, self.log_threshold_F.exp(), self.cfg.jumprelu_bandwidth)
        assert isinstance(l0_BF, Tensor)
        return (l0_BF @ share_F).mean()

    def coeff(self) -> float:
        return self.cfg.l0_coeff

    @torch.no_grad()
    def init_from_batch(self, pre_BF: Tensor, reduce_mean: Callable[[Tensor], Tensor]) -> None:
        q = 1.0 - self.cfg.k / self.cfg.n_latents
        t_F = torch.quantile(pre_BF.float(), q, dim=0).clamp_min(self.cfg.jumprelu_threshold_init)
        self.log_threshold_F.copy_(reduce_mean(t_F.log()))
