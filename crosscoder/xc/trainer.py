"""Training loop of the crosscoder: Adam with warmup/decay, sparsity warmup, k annealing, auxiliary-k loss,
gradient clipping, NaN guard, atomic resumable checkpoints, per-model metrics, W&B + JSONL, torchrun DDP.

The step itself (schedules, loss, backward, clipping, Adam) is :func:`crosscoder.xc.step.train_step`; this module
sets a run up (:func:`_resume`, :func:`_step_module`), loops over the batches and logs and checkpoints (:class:`_Loop`).

The trainer never touches a language model: it consumes ``batches_from(start_step)``, an iterator of raw activation
batches ``x_BMLD`` whose first item is the batch of step ``start_step``; resuming calls it with the checkpoint's step,
which makes a resumed run see exactly the batches of an uninterrupted one. Under DDP each rank's iterator may yield
either the global batch (the rank takes its slice) or its local share (batch_size / world_size rows).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
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
from crosscoder.xc.config import CrosscoderConfig, LoggingConfig, TrainerConfig
from crosscoder.xc.distributed import (
    DistInfo,
    all_reduce_mean_,
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
from crosscoder.xc.step import (
    StepContext,
    StepModule,
    StepOutput,
    clip_grad_,
    coeff_at,
    k_at,
    lr_at,
    make_optimizer,
    train_step,
)

__all__ = ["TrainResult", "clip_grad_", "coeff_at", "k_at", "lr_at", "train"]

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


@dataclass
class _Resume:
    """Where a run starts: step 0, or the last checkpoint's step, tokens and W&B run."""

    start_step: int = 0
    tokens: int = 0
    wandb_id: str | None = None
    checkpoint: Path | None = None


def _run_names(run_info: dict[str, Any], xc: CrosscoderConfig) -> tuple[list[str], list[str]]:
    M, L = xc.n_models, xc.n_hooks
    names = [str(n) for n in run_info.get("models", [])] or [f"m{i}" for i in range(M)]
    hooks = [str(h) for h in run_info.get("hooks", [])] or [f"h{i}" for i in range(L)]
    if len(names) != M or len(hooks) != L:
        raise ConfigError(
            f"run_info: {len(names)} model names / {len(hooks)} hooks for a crosscoder over {M} models x {L} hooks"
        )
    return names, hooks


def _resume(
    cc: Crosscoder,
    opt: torch.optim.Optimizer,
    pnames: dict[int, str],
    cfg: TrainerConfig,
    run_dir: Path,
    dead: DeadTracker,
    is_main: bool = True,
) -> _Resume:
    """Load the last checkpoint into ``cc``, ``opt`` and ``dead`` when resuming; refuse to overwrite a run."""
    ckpt_root = run_dir / "checkpoints"
    latest = ckpt.latest_checkpoint(ckpt_root)
    finished = (run_dir / "final" / "crosscoder.safetensors").exists()
    if finished and not cfg.overwrite:
        raise ConfigError(
            f"trainer.resume: {run_dir} already holds a finished run (final/); use a new run_dir, "
            "or set trainer.overwrite=true to train it again"
        )
    if latest is not None and not cfg.resume:
        if not cfg.overwrite:
            raise ConfigError(
                f"trainer.resume: {run_dir} already holds checkpoints; set resume=true to continue, "
                "overwrite=true to start again, or use a new run_dir"
            )
        ckpt.clear_checkpoints(ckpt_root, is_main)  # overwrite=true: start again from step 0
        latest = None
    if latest is None:
        if cfg.resume:
            log.info("resume=true but %s holds no checkpoint: starting at step 0", ckpt_root)
        return _Resume()
    scale_ML = cc.scale_ML.clone()
    state, trainer_tensors = ckpt.load_checkpoint(latest, cc, opt, pnames)
    _check_resume(state, cfg, latest)
    if not torch.allclose(scale_ML, cc.scale_ML, rtol=1e-6):
        raise DataError(
            f"the activation normalisation differs from checkpoint {latest}; resume with the same activation cache"
        )
    if "since_fired_F" not in trainer_tensors:
        raise DataError(f"checkpoint {latest} has no dead-latent counters; delete it to resume from an earlier one")
    dead.since_F.copy_(trainer_tensors["since_fired_F"].to(dead.since_F.device))
    log.info("resuming from %s (step %d)", latest, int(state["step"]))
    return _Resume(int(state["step"]), int(state["tokens"]), state.get("wandb_id"), latest)


def _step_module(cc: Crosscoder, dist: DistInfo) -> nn.Module:
    module: nn.Module = StepModule(cc, dist)
    if dist.enabled:
        # DDP broadcasts rank 0's weights at start and all-reduces gradients in backward; buffers are kept in
        # step by the trainer itself (the BatchTopK threshold is all-reduced in the step), not re-broadcast each step.
        no_sync: dict[str, Any] = (
            {"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_ARGS else {"broadcast_buffers": False}
        )
        module = DistributedDataParallel(module, **no_sync)
    return module


@dataclass
class _Loop:
    """A running training loop: the step context plus what logging and checkpointing need."""

    ctx: StepContext
    log_cfg: LoggingConfig
    run_dir: Path
    run_info: dict[str, Any]
    logger: RunLogger
    names: list[str]
    hooks: list[str]
    pnames: dict[int, str]
    tokens: int
    gemm: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    def run(self, batches_from: Callable[[int], Iterator[Tensor]], start: int, bar: tqdm) -> None:
        ctx, xc, total = self.ctx, self.ctx.cc.cfg, self.ctx.cfg.total_steps
        it = iter(batches_from(start))
        window = MetricWindow(xc.n_models, xc.n_hooks, xc.d_model, xc.n_latents, ctx.dist.device)
        for step in range(start, total):
            x_n = _next_batch(it, step, total, ctx.cfg, ctx.cc, ctx.dist)
            if step == 0 and ctx.cfg.init_from_data:
                ctx.cc.init_from_batch(x_n, lambda t: all_reduce_mean_(t.clone(), ctx.dist))
            out = train_step(ctx, x_n, step)
            self.tokens += out.tokens
            window.update(x_n, out.terms)
            done = step + 1
            bar.update(1)
            if done % ctx.cfg.log_every == 0 or done == total:
                self.log(done, window, out, bar)
            if ctx.dist.is_main and (
                (self.log_cfg.hist_every and done % self.log_cfg.hist_every == 0) or done == total
            ):
                self.logger.histograms(done, decoder_norm_histograms(ctx.cc.decoder_norms_FM(), self.names))
            if ctx.cfg.checkpoint_every and done % ctx.cfg.checkpoint_every == 0 and done < total:
                self.checkpoint(done)

    def log(self, done: int, window: MetricWindow, out: StepOutput, bar: tqdm) -> None:
        """Flush the metric window (all ranks take part) and log it on rank 0."""
        self.metrics = _log_window(window, self.ctx, self.names, self.hooks, self.log_cfg, out, self.gemm)
        self.logger.metrics(done, self.tokens, self.metrics)
        m = self.metrics
        bar.set_postfix(fve=f"{m['fve/min']:.3f}", l0=f"{m['l0']:.1f}", tok_s=f"{m['tokens_per_s']:.0f}")

    def checkpoint(self, done: int) -> None:
        """Write a resumable checkpoint on rank 0 (the other ranks wait at the barrier)."""
        ctx = self.ctx
        if ctx.dist.is_main:
            state = {"tokens": self.tokens, "trainer": asdict(ctx.cfg), "wandb_id": self.logger.wandb_id}
            state["run_info"] = self.run_info
            trainer_tensors = {"since_fired_F": ctx.dead.since_F}
            ctx.last_checkpoint = ckpt.save_checkpoint(
                self.run_dir / "checkpoints", done, ctx.cc, ctx.opt, self.pnames, trainer_tensors, state,
                ctx.cfg.keep_checkpoints,
            )  # fmt: skip
        barrier(ctx.dist)


def _train(
    cc: Crosscoder,
    batches_from: Callable[[int], Iterator[Tensor]],
    cfg: TrainerConfig,
    log_cfg: LoggingConfig,
    run_dir: Path,
    run_info: dict[str, Any],
    dist: DistInfo,
) -> TrainResult:
    names, hooks = _run_names(run_info, cc.cfg)
    torch.manual_seed(cfg.seed)
    cc.to(dist.device).train()
    pnames = {i: n for i, (n, _) in enumerate(cc.named_parameters())}
    opt = make_optimizer(cc, cfg, dist.device)
    dead = DeadTracker(cc.cfg.n_latents, cfg.dead_tokens, dist.device)
    resume = _resume(cc, opt, pnames, cfg, run_dir, dead, dist.is_main)
    config = {"crosscoder": asdict(cc.cfg), "trainer": asdict(cfg), "logging": asdict(log_cfg), "run_info": run_info}
    resume_step = resume.start_step if resume.checkpoint else None
    logger = RunLogger(
        run_dir, log_cfg, config, enabled=dist.is_main, resume_step=resume_step, wandb_id=resume.wandb_id
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.autocast_bf16 else contextlib.nullcontext()
    ctx = StepContext(cc, _step_module(cc, dist), opt, cfg, dist, dead, autocast, resume.checkpoint)
    loop = _Loop(ctx, log_cfg, run_dir, run_info, logger, names, hooks, pnames, resume.tokens)
    loop.gemm = measure_gemm_gflops(dist.device) if log_cfg.measure_mfu else 0.0
    show = dist.is_main and log_cfg.progress
    bar = tqdm(total=cfg.total_steps, initial=resume.start_step, disable=not show, desc="crosscoder", unit="step")
    t_start = time.perf_counter()
    final_dir = run_dir / "final"
    try:
        loop.run(batches_from, resume.start_step, bar)
        if dist.is_main:
            cc.save(final_dir)
            logger.log_crosscoder(final_dir, {"fve": {k: v for k, v in loop.metrics.items() if k.startswith("fve/")}})
        logger.summary(loop.metrics)
        barrier(dist)
    finally:
        bar.close()
        logger.close()
    elapsed = time.perf_counter() - t_start
    cc.eval()
    return TrainResult(
        run_dir, final_dir, logger.path, ctx.last_checkpoint, cfg.total_steps, loop.tokens, elapsed, loop.metrics
    )


def _log_window(
    window: MetricWindow,
    ctx: StepContext,
    names: list[str],
    hooks: list[str],
    log_cfg: LoggingConfig,
    out: StepOutput,
    gemm: float,
) -> dict[str, float]:
    m = window.flush(ctx.dist, names, hooks, log_cfg.dense_frequency)
    cc, xc = ctx.cc, ctx.cc.cfg
    active = out.k if cc.sparsity.uses_k else m["l0"]  # L1's sparse path costs ~8*X per active latent
    gflops = m["tokens_per_s"] * flops_per_token(xc.d_in, xc.n_latents, active, cc.fast) / 1e9
    m.update({"loss": float(out.loss), "grad_norm": float(out.grad_norm), "lr": out.lr, "k": float(out.k)})
    m.update({"sparsity_coeff": out.coeff, "dead_frac": ctx.dead.dead_fraction(), "gflops": gflops})
    if gemm > 0:
        m["mfu"] = gflops / (gemm * ctx.dist.world_size)
    if cc.threshold is not None:
        m["threshold"] = float(cc.threshold)
    return m
