"""Data-parallel training across processes started by ``torchrun`` or Slurm's ``srun`` (gloo on CPU, nccl on GPU).

``torchrun --nproc_per_node=N train.py ...`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT;
:func:`init_distributed` reads them and joins the process group. Where they are absent, a Slurm job step with
several tasks (``srun --ntasks=N``, or submitit with ``tasks_per_node > 1``) supplies them: :func:`slurm_dist_env`
maps SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID to the same variables, with the step's first node as
the rendezvous address and a port derived from the job and step ids. Without either (or with one process)
everything here is a no-op, so single-process code needs no special case. The trainer wraps its step in
``DistributedDataParallel`` (gradient all-reduce), all-reduces the dead-latent counters and the BatchTopK
threshold estimate, and logs / checkpoints on rank 0 only. BatchTopK selects over the global batch
(:func:`global_batch_selection`), so every architecture trains as one process would on the same global batch.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as tdist
from torch import Tensor

from crosscoder.errors import ConfigError
from crosscoder.xc.architectures import BatchTopK
from crosscoder.xc.pattern import SparsePattern
from crosscoder.xc.select import batchtopk_select
from crosscoder.xc.workspace import Workspace

if TYPE_CHECKING:
    from crosscoder.xc.model import Crosscoder

log = logging.getLogger(__name__)
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
PORT_BASE, PORT_SPAN = 20000, 20000


@dataclass
class DistInfo:
    """Where this process sits in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False
    """True when :func:`init_distributed` created the process group (and so :func:`cleanup` destroys it)."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list ("gpu[03-05,07],cpu1" -> "gpu03"), via scontrol when it is installed."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=10, check=True
        ).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    m = re.match(r"^([^,\[]+)(?:\[(\d+))?", nodelist)
    if not m:
        raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r} is not a Slurm node list; run under srun or torchrun")
    return m.group(1) + (m.group(2) or "")


def slurm_dist_env(env: Mapping[str, str]) -> dict[str, str]:
    """torch.distributed variables for a Slurm job step with several tasks; {} when there is nothing to map.

    Only a job *step* started by ``srun`` runs one process per task (SLURM_STEP_NUM_TASKS is set there); the batch
    script itself runs once, so a plain ``python train.py`` in an ``--ntasks=N`` allocation stays a single process.
    torchrun's own variables, when present, always win.
    """
    if "WORLD_SIZE" in env or "RANK" in env:
        return {}
    world = int(env.get("SLURM_STEP_NUM_TASKS", "1"))
    if world <= 1:
        if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
            log.warning(
                "Slurm allocated %s tasks but this process runs outside an srun step: training on one process; "
                "start it with `srun python train.py ...` for DDP",
                env["SLURM_NTASKS"],
            )
        return {}
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "localhost"
    job, step = int(env.get("SLURM_JOB_ID", "0")), int(env.get("SLURM_STEP_ID", "0") or 0)
    return {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(nodelist),
        "MASTER_PORT": env.get("MASTER_PORT") or str(PORT_BASE + (job * 17 + step) % PORT_SPAN),
    }


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the torchrun / srun process group if there is one; pick this rank's device (cuda:LOCAL_RANK on GPU)."""
    os.environ.update(slurm_dist_env(os.environ))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device: {device} requested but no GPU is available; set trainer.device=cpu")
    if world <= 1:
        return DistInfo(device=torch.device(device))
    dev = torch.device(f"cuda:{local_rank}") if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(dev)
    owns = False
    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if on_gpu else "gloo")
        owns = True
    return DistInfo(
        rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local_rank, device=dev, owns_group=owns
    )


def world_size_from_env() -> int:
    """The number of processes torchrun or an srun step started (1 outside them), without joining a group."""
    return int({**os.environ, **slurm_dist_env(os.environ)}.get("WORLD_SIZE", "1"))


def broadcast_flag(flag: bool, dist: DistInfo, src: int = 0) -> bool:
    """``src``'s value of a boolean on every rank (so a decision one rank takes is taken by all)."""
    if not dist.enabled:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64, device=dist.device)
    tdist.broadcast(t, src=src)
    return bool(t.item())


def all_reduce_sum_(t: Tensor, dist: DistInfo) -> Tensor:
    """In-place sum over ranks (no-op on one process)."""
    if dist.enabled:
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


def all_reduce_mean_(t: Tensor, dist: DistInfo) -> Tensor:
    """In-place mean over ranks (no-op on one process)."""
    if dist.enabled:
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        t /= dist.world_size
    return t


def broadcast_(t: Tensor, dist: DistInfo, src: int = 0) -> Tensor:
    """In-place broadcast from ``src`` (no-op on one process)."""
    if dist.enabled:
        tdist.broadcast(t, src=src)
    return t


def barrier(dist: DistInfo) -> None:
    if dist.enabled:
        tdist.barrier()


def local_batch(x: Tensor, batch_size: int, dist: DistInfo) -> Tensor:
    """This rank's rows of global batch ``x`` (or ``x`` itself when the iterator already yields the local share)."""
    local = batch_size // dist.world_size
    if dist.enabled and x.shape[0] == batch_size:
        return x[dist.rank * local : (dist.rank + 1) * local]
    return x


def _keep_top(vals_N: Tensor, threshold: Tensor, n_keep: int, dist: DistInfo) -> Tensor:
    """Mask of this rank's entries among exactly `n_keep` global ones: every score above the threshold, and as many
    scores equal to it as are still needed, taken rank by rank in entry order (exact ties come from duplicate rows)."""
    above, tied = vals_N > threshold, vals_N == threshold
    counts = torch.stack([above.sum(), tied.sum()])
    every = [torch.empty_like(counts) for _ in range(dist.world_size)]
    tdist.all_gather(every, counts)
    counts_W2 = torch.stack(every)
    need = n_keep - int(counts_W2[:, 0].sum()) - int(counts_W2[: dist.rank, 1].sum())
    take = max(0, min(need, int(counts_W2[dist.rank, 1])))
    keep = above.clone()
    keep[tied.nonzero().squeeze(1)[:take]] = True
    return keep


def _global_batchtopk_select(sparsity: BatchTopK, dist: DistInfo) -> Callable[..., SparsePattern]:
    """BatchTopK.select over the global batch: keep the top k * B_global scores of all ranks, as one process would.

    Each rank's top k * B_global scores (an exact candidate set: the global top entries are among them) are
    gathered; their k * B_global-th largest is the global threshold, and each rank keeps its entries above it (and
    its share of the entries equal to it). The smallest kept positive score (the inference threshold's update) is
    the global minimum on every rank.
    """

    def select(
        pre_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor, k: int, ws: Workspace | None = None
    ) -> SparsePattern:
        score_BF = sparsity.score(pre_BF, dec_norm_F, share_F, ws)
        B, n_lat = score_BF.shape
        n_keep = min(k * B, B * n_lat) * dist.world_size
        cand, cand_vals = batchtopk_select(score_BF, n_keep)
        gathered = [torch.empty_like(cand_vals) for _ in range(dist.world_size)]
        tdist.all_gather(gathered, cand_vals.contiguous())
        threshold = torch.cat(gathered).topk(n_keep, sorted=False).values.min()
        vals_N = cand.gather(score_BF)
        keep = _keep_top(vals_N, threshold, n_keep, dist)
        pattern = SparsePattern.from_flat((cand.rows_N * n_lat + cand.cols_N)[keep], B, n_lat)
        positive = vals_N[keep & (vals_N > 0)]
        low = positive.min() if positive.numel() else score_BF.new_tensor(float("inf"))
        tdist.all_reduce(low, op=tdist.ReduceOp.MIN)
        sparsity.stats["min_score"] = torch.where(torch.isinf(low), torch.zeros_like(low), low)
        return pattern

    return select


def _global_batchtopk_activate(sparsity: BatchTopK, select: Callable[..., SparsePattern]) -> Callable[..., Tensor]:
    """BatchTopK.activate (the dense reference path) with the training mask of :func:`_global_batchtopk_select`;
    inference (eval mode, the learned threshold) is per token and unchanged."""

    def activate(pre_BF: Tensor, dec_norm_F: Tensor, share_F: Tensor, k: int) -> Tensor:
        if not sparsity.training:
            return BatchTopK.activate(sparsity, pre_BF, dec_norm_F, share_F, k)
        with torch.no_grad():
            pattern = select(pre_BF, dec_norm_F, share_F, k)
            mask_BF = torch.zeros_like(pre_BF, dtype=torch.bool)
            mask_BF[pattern.rows_N, pattern.cols_N] = True
        return torch.relu(pre_BF) * mask_BF

    return activate


@contextmanager
def global_batch_selection(cc: Crosscoder, dist: DistInfo) -> Iterator[None]:
    """Under DDP, make a BatchTopK crosscoder's training selection span the global batch — the sparse path's
    :meth:`~crosscoder.xc.architectures.BatchTopK.select` and the dense reference's ``activate`` alike — so DDP
    trains the weights one process would on the same global batch; restored on exit. A no-op otherwise."""
    sparsity = cc.sparsity
    if not (dist.enabled and isinstance(sparsity, BatchTopK)):
        yield
        return
    select = _global_batchtopk_select(sparsity, dist)
    sparsity.select = select  # type: ignore[method-assign]
    sparsity.activate = _global_batchtopk_activate(sparsity, select)  # type: ignore[method-assign]
    try:
        yield
    finally:
        del sparsity.select, sparsity.activate


def cleanup(dist: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if dist.owns_group and tdist.is_initialized():
        tdist.destroy_process_group()
