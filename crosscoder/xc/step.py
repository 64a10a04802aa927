"""One optimizer step of the crosscoder trainer, and the schedules it follows.

:func:`train_step` is the whole step as :func:`crosscoder.xc.trainer.train` runs it — schedules, forward and loss,
backward, NaN guard, gradient clipping, fused Adam, gradient-buffer recycling, dead-latent counters and the BatchTopK
threshold — and what ``python -m crosscoder.bench xc-step`` times, so the benchmark measures the trainer's step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from crosscoder.errors import NumericsError
from crosscoder.xc.architectures import BatchTopK
from crosscoder.xc.config import TrainerConfig
from crosscoder.xc.distributed import DistInfo, all_reduce_mean_, all_reduce_sum_
from crosscoder.xc.loss import LossTerms
from crosscoder.xc.metrics import DeadTracker
from crosscoder.xc.model import Crosscoder


def lr_at(step: int, cfg: TrainerConfig) -> float:
    """Linear warmup, constant, then linear or cosine decay to 0 over the last decay_fraction of the run."""
    total = cfg.total_steps
    lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
    decay_steps = int(cfg.decay_fraction * total) if cfg.decay != "none" else 0
    start = total - decay_steps
    if decay_steps and step >= start:
        frac = (step - start + 1) / decay_steps  # reaches 1 (lr 0) after the last step
        lr *= 1.0 - frac if cfg.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr


def k_at(step: int, k: int, cfg: TrainerConfig) -> int:
    """k annealed linearly from k_anneal_start to k over k_anneal_steps."""
    if cfg.k_anneal_start <= 0 or cfg.k_anneal_steps <= 0 or step >= cfg.k_anneal_steps:
        return k
    return round(cfg.k_anneal_start + (k - cfg.k_anneal_start) * step / cfg.k_anneal_steps)


def coeff_at(step: int, coeff: float, cfg: TrainerConfig) -> float:
    """Sparsity coefficient warmed up linearly from 0 over l1_warmup_steps."""
    return coeff * min(1.0, (step + 1) / cfg.l1_warmup_steps) if cfg.l1_warmup_steps else coeff


def clip_grad_(params: list[nn.Parameter], max_norm: float) -> Tensor:
    """Global gradient norm; gradients are rescaled only when it exceeds ``max_norm`` (0 = never).

    Unlike ``clip_grad_norm_`` this skips the multiply (a full read+write of every gradient) on steps that need no
    clipping, which is most of them.
    """
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]))
    if max_norm > 0 and bool(norm > max_norm):
        torch._foreach_mul_(grads, max_norm / (float(norm) + 1e-6))
    return norm


def clip_into_optimizer_(opt: torch.optim.Optimizer, max_norm: float) -> Tensor:
    """:func:`clip_grad_` for the trainer: the global gradient norm, and when it exceeds ``max_norm`` the fused Adam
    kernel itself rescales the gradients as it reads them (``grad_scale``, the interface torch's GradScaler uses),
    which saves a read and a write of every gradient; other optimizers get the separate multiply.
    Call :func:`finish_optimizer_step` after ``opt.step()``."""
    params = [p for g in opt.param_groups for p in g["params"]]
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]))
    if max_norm > 0 and bool(norm > max_norm):
        if isinstance(opt, torch.optim.Adam) and all(g.get("fused") for g in opt.param_groups):
            # Adam divides each gradient by grad_scale: g / ((norm + 1e-6) / max_norm) = g * max_norm / (norm + 1e-6)
            scale = torch.tensor((float(norm) + 1e-6) / max_norm, device=grads[0].device)
            opt.grad_scale = scale  # type: ignore[attr-defined]
        else:
            torch._foreach_mul_(grads, max_norm / (float(norm) + 1e-6))
    return norm


def finish_optimizer_step(opt: torch.optim.Optimizer) -> None:
    """Drop a ``grad_scale`` set by :func:`clip_into_optimizer_` (it holds for one step only)."""
    opt.__dict__.pop("grad_scale", None)


def make_optimizer(cc: Crosscoder, cfg: TrainerConfig, device: torch.device) -> torch.optim.Adam:
    """Adam over the crosscoder's parameters; the fused kernel (one pass per tensor) on fp32 CPU / CUDA tensors."""
    params = list(cc.parameters())
    fused = all(p.dtype == torch.float32 for p in params) and device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=cfg.eps, fused=fused)


class StepModule(nn.Module):
    """The training forward as a module, so DistributedDataParallel can wrap it (its forward is the loss)."""

    def __init__(self, cc: Crosscoder, dist: DistInfo) -> None:
        super().__init__()
        self.cc = cc
        self.reduce_sum: Callable[[Tensor], Tensor] | None = (
            (lambda t: all_reduce_sum_(t, dist)) if dist.enabled else None
        )

    def forward(
        self, x_n_BX: Tensor, k: int, coeff: float, dead_F: Tensor | None, aux_k: int, aux_coeff: float
    ) -> LossTerms:
        return self.cc.loss_terms(
            x_n_BX,
            k=k,
            sparsity_coeff=coeff,
            dead_F=dead_F,
            aux_k=aux_k,
            aux_coeff=aux_coeff,
            reduce_sum=self.reduce_sum,
        )


@dataclass
class StepOutput:
    """What one optimizer step produced; ``loss`` and counters are already reduced over DDP ranks."""

    terms: LossTerms
    """This rank's loss terms (local batch), for the metric window."""
    loss: Tensor
    """Loss, mean over ranks (detached)."""
    grad_norm: Tensor
    """Global gradient norm before clipping."""
    lr: float
    k: int
    coeff: float
    """Sparsity coefficient of this step (after its warmup)."""
    tokens: int
    """Tokens of the global batch."""


@dataclass
class StepContext:
    """What every step needs besides its batch: the model, its optimizer and the run's settings."""

    cc: Crosscoder
    module: nn.Module
    """:class:`StepModule` over ``cc``, DDP-wrapped under torchrun."""
    opt: torch.optim.Optimizer
    cfg: TrainerConfig
    dist: DistInfo
    dead: DeadTracker
    autocast: AbstractContextManager[object]
    last_checkpoint: Path | None = None
    """Named by the NaN error (the trainer updates it)."""


def train_step(ctx: StepContext, x_n_BX: Tensor, step: int) -> StepOutput:
    """One optimizer step on a normalised (local) batch; raises NumericsError before applying a NaN/inf step."""
    cc, cfg, dist = ctx.cc, ctx.cfg, ctx.dist
    lr = lr_at(step, cfg)
    for g in ctx.opt.param_groups:
        g["lr"] = lr
    k = k_at(step, cc.cfg.k, cfg)
    coeff = coeff_at(step, cc.sparsity.coeff(), cfg)
    dead_F = ctx.dead.dead_mask() if cfg.aux_k > 0 and cc.sparsity.uses_k else None
    with ctx.autocast:
        terms: LossTerms = ctx.module(x_n_BX, k, coeff, dead_F, min(cfg.aux_k, cc.cfg.n_latents), cfg.aux_k_coeff)
    terms.loss.backward()
    loss = all_reduce_mean_(terms.loss.detach().clone(), dist)
    gnorm = clip_into_optimizer_(ctx.opt, cfg.grad_clip)
    if not (bool(torch.isfinite(loss)) and bool(torch.isfinite(gnorm))):
        finish_optimizer_step(ctx.opt)
        where = (
            f"last good checkpoint: {ctx.last_checkpoint}" if ctx.last_checkpoint else "no checkpoint was written yet"
        )
        raise NumericsError(
            f"loss or gradient became NaN/inf at step {step} (loss {float(loss):.4g}, grad norm {float(gnorm):.4g}); "
            f"lower trainer.lr or keep grad_clip on; {where}"
        )
    try:
        ctx.opt.step()
    finally:
        finish_optimizer_step(ctx.opt)
    cc.recycle_grads()
    ctx.opt.zero_grad(set_to_none=True)
    fired_F = all_reduce_sum_(terms.fired_F.clone(), dist)
    n_global = x_n_BX.shape[0] * dist.world_size
    ctx.dead.update(fired_F, n_global)
    if isinstance(cc.sparsity, BatchTopK) and terms.min_score is not None:
        cc.sparsity.update_threshold(all_reduce_mean_(terms.min_score.float().clone(), dist))
    return StepOutput(terms, loss, gnorm, lr, k, coeff, n_global)
