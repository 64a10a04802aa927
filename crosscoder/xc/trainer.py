"""Training loop of the crosscoder: Adam with warmup/decay, sparsity warmup, k annealing, auxiliary-k loss,
gradient clipping, NaN guard, atomic resumable checkpoints, per-model metrics, W&B + JSONL, torchrun DDP.

The trainer never touches a language model: it consumes ``batches_from(start_step)``, an iterator of raw activation
batches ``x_BMLD`` whose first item is the batch of step ``start_step``; resuming calls it with the checkpoint's step,
which makes a resumed run see exactly the batches of an uninterrupted one. Under DDP each rank's iterator may yield
either the global batch (the rank takes its slice) or its local share (batch_size / world_size rows).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from crosscoder.errors import ConfigError, DataError, NumericsError
from crosscoder.xc import checkpoint as ckpt
from crosscoder.xc.architectures import BatchTopK
from crosscoder.xc.config import LoggingConfig, TrainerConfig
from crosscoder.xc.distributed import (
    DistInfo,
    all_reduce_mean_,
    all_reduce_sum_,
    barrier,
    cleanup,
    global_batch_selection,
    init_distributed,
    local_batch,
)
from crosscoder.xc.logger import RunLogger
from crosscoder.xc.metrics import (
    DeadTracker,
    MetricWindow,
    decoder_norm_histograms,
    flops_per_token,
    measure_gemm_gflops,
)
from crosscoder.xc.model import Crosscoder

log = logging.getLogger("crosscoder.xc")
_DDP_ARGS = inspect.signature(DistributedDataParallel.__init__).parameters

# Trainer fields that change the optimisation: a resumed run must use the checkpoint's values.
_RESUME_FIELDS = (
    "batch_size", "lr", "betas", "eps", "warmup_steps", "decay", "decay_fraction", "l1_warmup_steps",
    "k_anneal_start", "k_anneal_steps", "aux_k", "aux_k_coeff", "dead_tokens", "grad_clip", "seed", "init_from_data",
)  # fmt: skip


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    final_dir: Path
    metrics_path: Path
    last_checkpoint: Path | None
    steps: int
    tokens: int
    elapsed_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    """Metrics of the last logging window: fve/<model>, mse/<model>, l0, dead_frac, dense_frac, tokens_per_s, mfu..."""

    def fve(self) -> dict[str, float]:
        """Per-model FVE of the last logging window."""
        return {
            k[4:]: v for k, v in self.metrics.items() if k.startswith("fve/") and k.count("/") == 1 and k != "fve/min"
        }


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


class _Step(nn.Module):
    """The training step as a module, so DistributedDataParallel can wrap it (its forward is the loss)."""

    def __init__(self, cc: Crosscoder, dist: DistInfo) -> None:
        super().__init__()
        self.cc = cc
        self.reduce_sum: Callable[[Tensor], Tensor] | None = (
            (lambda t: all_reduce_sum_(t, dist)) if dist.enabled else None
        )

    def forward(
        self, x_n_BX: Tensor, k: int, coeff: float, dead_F: Tensor | None, aux_k: int, aux_coeff: float
    ) -> dict[str, Tensor]:
        return self.cc.loss_terms(
            x_n_BX,
            k=k,
            sparsity_coeff=coeff,
            dead_F=dead_F,
            aux_k=aux_k,
            aux_coeff=aux_coeff,
            reduce_sum=self.reduce_sum,
        )


def _check_compatible(cc: Crosscoder, cfg: TrainerConfig, dist: DistInfo) -> None:
    F = cc.cfg.n_latents
    if cc.sparsity.uses_k and cfg.k_anneal_start > F:
        raise ConfigError(
            f"trainer.k_anneal_start: {cfg.k_anneal_start} is larger than crosscoder.n_latents={F}; lower it"
        )
    if cfg.batch_size % dist.world_size:
        raise ConfigError(
            f"trainer.batch_size: {cfg.batch_size} does not split over {dist.world_size} DDP processes; use a multiple"
        )


def _check_resume(state: dict[str, Any], cfg: TrainerConfig, folder: Path) -> None:
    saved = state.get("trainer", {})
    for name in _RESUME_FIELDS:
        now = getattr(cfg, name)
        if name in saved and saved[name] != (list(now) if isinstance(now, (list, tuple)) else now):
            raise ConfigError(
                f"trainer.{name}: checkpoint {folder} was trained with {saved[name]!r} but the config says {now!r}; "
                "use the checkpoint's value or start a new run_dir with resume=false"
            )


def _next_batch(
    it: Iterator[Tensor], step: int, total: int, cfg: TrainerConfig, cc: Crosscoder, dist: DistInfo
) -> Tensor:
    try:
        x = next(it)
    except StopIteration:
        raise DataError(
            f"the activation batches ran out at step {step} of {total}: harvest more tokens or lower trainer.steps/tokens"
        ) from None
    x = local_batch(x, cfg.batch_size, dist).to(dist.device, torch.float32, non_blocking=True)
    want = cfg.batch_size // dist.world_size
    if x.shape[0] != want:
        raise DataError(
            f"activation batch at step {step} has {x.shape[0]} rows but trainer.batch_size={cfg.batch_size} "
            f"over {dist.world_size} process(es) needs {want}; make the loader's batch size match trainer.batch_size"
        )
    if not bool(torch.isfinite(x).all()):
        raise NumericsError(
            f"activation batch at step {step} contains NaN/inf values: rebuild or check the activation cache"
        )
    return cc.normalise(x)


def train(
    cc: Crosscoder,
    batches_from: Callable[[int], Iterator[Tensor]],
    cfg: TrainerConfig,
    log_cfg: LoggingConfig,
    run_dir: str | Path,
    *,
    run_info: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``cc`` in place; write metrics, checkpoints and ``final/`` under ``run_dir``.

    ``run_info`` (optional) may carry ``models`` (names, used in metric keys) and ``hooks``; it is also logged to W&B.
    """
    run_dir = Path(run_dir)
    run_info = dict(run_info or {})
    dist = init_distributed(cfg.device)
    try:
        _check_compatible(cc, cfg, dist)
        with global_batch_selection(cc, dist):  # BatchTopK keeps the top k * B of the global batch under DDP
            return _train(cc, batches_from, cfg, log_cfg, run_dir, run_info, dist)
    finally:
        cleanup(dist)


def _train(
    cc: Crosscoder,
    batches_from: Callable[[int], Iterator[Tensor]],
    cfg: TrainerConfig,
    log_cfg: LoggingConfig,
    run_dir: Path,
    run_info: dict[str, Any],
    dist: DistInfo,
) -> TrainResult:
    xc = cc.cfg
    M, L = xc.n_models, xc.n_hooks
    names = [str(n) for n in run_info.get("models", [])] or [f"m{i}" for i in range(M)]
    hooks = [str(h) for h in run_info.get("hooks", [])] or [f"h{i}" for i in range(L)]
    if len(names) != M or len(hooks) != L:
        raise ConfigError(
            f"run_info: {len(names)} model names / {len(hooks)} hooks for a crosscoder over {M} models x {L} hooks"
        )
    torch.manual_seed(cfg.seed)
    cc.to(dist.device).train()
    pnames = {i: n for i, (n, _) in enumerate(cc.named_parameters())}
    params = [p for _, p in cc.named_parameters()]
    fused = all(p.dtype == torch.float32 for p in params) and dist.device.type in ("cpu", "cuda")
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=cfg.eps, fused=fused)

    ckpt_root = run_dir / "checkpoints"
    latest = ckpt.latest_checkpoint(ckpt_root)
    start_step, tokens, wandb_id = 0, 0, None
    dead = DeadTracker(xc.n_latents, cfg.dead_tokens, dist.device)
    finished = (run_dir / "final" / "crosscoder.safetensors").exists()
    if (latest is not None or finished) and not cfg.resume:
        what = "checkpoints" if latest is not None else "a finished run (final/)"
        raise ConfigError(
            f"trainer.resume: {run_dir} already holds {what}; set resume=true to continue or use a new run_dir"
        )
    if latest is not None:
        scale_ML = cc.scale_ML.clone()
        state, trainer_tensors = ckpt.load_checkpoint(latest, cc, opt, pnames)
        _check_resume(state, cfg, latest)
        if not torch.allclose(scale_ML, cc.scale_ML, rtol=1e-6):
            raise DataError(
                f"the activation normalisation differs from checkpoint {latest}; resume with the same activation cache"
            )
        start_step, tokens, wandb_id = int(state["step"]), int(state["tokens"]), state.get("wandb_id")
        if "since_fired_F" not in trainer_tensors:
            raise DataError(f"checkpoint {latest} has no dead-latent counters; delete it to resume from an earlier one")
        dead.since_F.copy_(trainer_tensors["since_fired_F"].to(dist.device))
        log.info("resuming from %s (step %d)", latest, start_step)
    elif cfg.resume:
        log.info("resume=true but %s holds no checkpoint: starting at step 0", ckpt_root)

    config = {"crosscoder": asdict(xc), "trainer": asdict(cfg), "logging": asdict(log_cfg), "run_info": run_info}
    logger = RunLogger(
        run_dir, log_cfg, config, enabled=dist.is_main, resume_step=start_step if latest else None, wandb_id=wandb_id
    )
    step_mod: nn.Module = _Step(cc, dist)
    if dist.enabled:
        # DDP broadcasts rank 0's weights at start and all-reduces gradients in backward; buffers are kept in
        # step by the trainer itself (the BatchTopK threshold is all-reduced below), not re-broadcast each step.
        no_sync: dict[str, Any] = (
            {"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_ARGS else {"broadcast_buffers": False}
        )
        step_mod = DistributedDataParallel(step_mod, **no_sync)
    gemm = measure_gemm_gflops(dist.device) if log_cfg.measure_mfu else 0.0
    total = cfg.total_steps
    it = iter(batches_from(start_step))
    window = MetricWindow(M, L, xc.d_model, xc.n_latents, dist.device)
    metrics: dict[str, float] = {}
    last_ckpt = latest
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.autocast_bf16 else contextlib.nullcontext()
    bar = tqdm(
        total=total, initial=start_step, disable=not (dist.is_main and log_cfg.progress), desc="crosscoder", unit="step"
    )
    t_start = time.perf_counter()
    final_dir = run_dir / "final"
    try:
        for step in range(start_step, total):
            x_n = _next_batch(it, step, total, cfg, cc, dist)
            if step == 0 and cfg.init_from_data:
                cc.init_from_batch(x_n, lambda t: all_reduce_mean_(t.clone(), dist))
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            k = k_at(step, xc.k, cfg)
            coeff = coeff_at(step, cc.sparsity.coeff(), cfg)
            dead_F = dead.dead_mask() if cfg.aux_k > 0 and cc.sparsity.uses_k else None
            with autocast:
                out = step_mod(x_n, k, coeff, dead_F, min(cfg.aux_k, xc.n_latents), cfg.aux_k_coeff)
            out["loss"].backward()
            loss = all_reduce_mean_(out["loss"].detach().clone(), dist)
            gnorm = clip_grad_(params, cfg.grad_clip)
            if not (bool(torch.isfinite(loss)) and bool(torch.isfinite(gnorm))):
                where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
                raise NumericsError(
                    f"loss or gradient became NaN/inf at step {step} (loss {float(loss):.4g}, grad norm {float(gnorm):.4g}); "
                    f"lower trainer.lr or keep grad_clip on; {where}"
                )
            opt.step()
            opt.zero_grad(set_to_none=True)
            fired_F = all_reduce_sum_(out["fired_F"].clone(), dist)
            n_global = x_n.shape[0] * dist.world_size
            dead.update(fired_F, n_global)
            tokens += n_global
            if isinstance(cc.sparsity, BatchTopK) and "min_score" in out:
                cc.sparsity.update_threshold(all_reduce_mean_(out["min_score"].float().clone(), dist))
            window.update(x_n, out)
            done = step + 1
            bar.update(1)
            if done % cfg.log_every == 0 or done == total:
                lr = opt.param_groups[0]["lr"]
                metrics = _log_window(window, dist, names, hooks, log_cfg, cc, lr, k, coeff, loss, gnorm, dead, gemm)
                logger.metrics(done, tokens, metrics)
                bar.set_postfix(
                    fve=f"{metrics['fve/min']:.3f}", l0=f"{metrics['l0']:.1f}", tok_s=f"{metrics['tokens_per_s']:.0f}"
                )
            if dist.is_main and ((log_cfg.hist_every and done % log_cfg.hist_every == 0) or done == total):
                logger.histograms(done, decoder_norm_histograms(cc.decoder_norms_FM(), names))
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < total:
                if dist.is_main:
                    state = {
                        "tokens": tokens,
                        "trainer": asdict(cfg),
                        "wandb_id": logger.wandb_id,
                        "run_info": run_info,
                    }
                    last_ckpt = ckpt.save_checkpoint(
                        ckpt_root, done, cc, opt, pnames, {"since_fired_F": dead.since_F}, state, cfg.keep_checkpoints
                    )
                barrier(dist)
        if dist.is_main:
            cc.save(final_dir)
            logger.log_crosscoder(final_dir, {"fve": {k: v for k, v in metrics.items() if k.startswith("fve/")}})
        logger.summary(metrics)
        barrier(dist)
    finally:
        bar.close()
        logger.close()
    elapsed = time.perf_counter() - t_start
    cc.eval()
    return TrainResult(run_dir, final_dir, logger.path, last_ckpt, total, tokens, elapsed, metrics)


def _log_window(
    window: MetricWindow,
    dist: DistInfo,
    names: list[str],
    hooks: list[str],
    log_cfg: LoggingConfig,
    cc: Crosscoder,
    lr: float,
    k: int,
    coeff: float,
    loss: Tensor,
    gnorm: Tensor,
    dead: DeadTracker,
    gemm: float,
) -> dict[str, float]:
    m = window.flush(dist, names, hooks, log_cfg.dense_frequency)
    xc = cc.cfg
    gflops = m["tokens_per_s"] * flops_per_token(xc.d_in, xc.n_latents, k, cc.fast) / 1e9
    m.update({"loss": float(loss), "grad_norm": float(gnorm), "lr": lr, "k": float(k), "sparsity_coeff": coeff})
    m.update({"dead_frac": dead.dead_fraction(), "gflops": gflops})
    if gemm > 0:
        m["mfu"] = gflops / (gemm * dist.world_size)
    if cc.threshold is not None:
        m["threshold"] = float(cc.threshold)
    return m
