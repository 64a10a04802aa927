"""Benchmark of one crosscoder training step: the sparse path against the dense reference and the FLOP bound.

    python -m crosscoder.bench xc-step [--latents 4096 16384 65536] [--arch topk batchtopk l1] [--out FILE]
    python -m crosscoder.bench xc-step --device cuda --dtype fp32 bf16      # on a GPU: 16,384 and 65,536 latents

A step is :func:`crosscoder.xc.step.train_step`, exactly what the trainer runs: normalise, forward + loss, backward,
gradient clipping, fused Adam, gradient-buffer recycling, dead-latent counters and the BatchTopK threshold. Default
size: d_model 576, 2 models, 1 hook, k 32, batch 1,024, fp32, lr 1e-4. No latent is dead in a short run, so there
is no auxiliary-k loss (as in the peers' steps). L1 starts from an encoder bias that leaves about ``--l1-l0``
latents active per token (a trained L1 crosscoder's L0, Kissane: ~81); the measured L0 is reported.

For each size and architecture the sparse ("fast") path, then the reference path, runs its steps alternating with a
GEMM probe, round after round, so background load hits a path and its probe alike (the slow reference runs
``--reference-rounds`` rounds; one path is alive at a time, as a 65,536-latent runner holds 3-4 GB). The probe times the encoder product itself (b + x @ W^T at the
step's shape and layout), the only dense GEMM of the sparse path. Per path the JSON gives the median step time,
tokens/s, the spread (slowest / fastest round), and, under the FLOP model of
:func:`crosscoder.xc.metrics.flops_per_token` (sparse 2*X*F + 8*k*X, dense 10*X*F per token, X = models * hooks *
d_model, k = L0 for L1):

* ``frac_sparse_bound``: tokens/s over the sparse bound, probe GFLOP/s / sparse FLOP per token (median probe of the
  same rounds; ``frac_sparse_bound_best_gemm`` against the fastest probe);
* ``mfu``: the path's GFLOP/s under its own FLOP model (sparse for the fast path, dense for the reference) over the
  median probe.

Every JSON records threads, cores, load averages, a 1024^3 GEMM rate and the probes (crosscoder.bench.common).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from crosscoder.bench.common import EncoderGemmProbe, Machine, square_gemm_gflops, torch_threads
from crosscoder.errors import ConfigError, run_cli
from crosscoder.io import atomic_write_json
from crosscoder.runs import check_output_file
from crosscoder.xc.config import CrosscoderConfig, TrainerConfig
from crosscoder.xc.distributed import DistInfo
from crosscoder.xc.metrics import DeadTracker, flops_per_token
from crosscoder.xc.model import Crosscoder
from crosscoder.xc.step import StepContext, StepModule, make_optimizer, train_step

TARGETS = {"frac_sparse_bound_16384": 0.7, "spread_65536": 1.3, "l1_speedup_16384": 3.0}
"""Issue 24: TopK / BatchTopK >= 70% of the sparse bound at 16,384 latents; spread <= 1.3 at 65,536; L1 sparse >= 3x
its dense reference at 16,384 latents with L0 < 200."""


@dataclass
class BenchConfig:
    """What to time."""

    latents: tuple[int, ...] = (4096, 16384, 65536)
    archs: tuple[str, ...] = ("topk", "batchtopk", "l1")
    d_model: int = 576
    n_models: int = 2
    n_hooks: int = 1
    k: int = 32
    batch: int = 1024
    rounds: int = 6
    """Timed rounds (each: probe, fast step, reference step)."""
    reference_rounds: int = 3
    """The reference step runs in the first this-many rounds only (it is 5-30x slower; its spread is no target)."""
    warmup: int = 2
    """Untimed steps per path first (allocations, optimizer state)."""
    l1_l0: float = 100.0
    """L1: target active latents per token at the start."""
    reference: bool = True
    """Also time the dense reference path."""
    reference_max_latents: int = 1 << 30
    """Time the reference only up to this size (a 65,536-latent reference step needs ~4 GB)."""
    device: str = "cpu"
    dtype: str = "fp32"
    """fp32, or bf16 (autocast; CUDA only)."""
    lr: float = 1e-4
    seed: int = 0

    @property
    def d_in(self) -> int:
        return self.n_models * self.n_hooks * self.d_model


@dataclass
class PathResult:
    """One (architecture, size, path) of the benchmark."""

    arch: str
    n_latents: int
    path: str
    """fast (the sparse path) | reference (dense plain torch)."""
    step_s: float
    """Median step time."""
    step_s_all: list[float]
    tokens_per_s: float
    spread: float
    """Slowest over fastest round."""
    active: float
    """Active latents per token: k, or the measured L0 for L1 (mean over rounds)."""
    gflops: float
    """Under the path's own FLOP model (sparse for fast, dense for reference)."""
    mfu: float
    gemm_gflops: float
    """Median encoder-GEMM probe of the same rounds."""
    gemm_gflops_all: list[float]
    sparse_bound_tokens_per_s: float
    frac_sparse_bound: float
    frac_sparse_bound_best_gemm: float
    dense_bound_tokens_per_s: float
    active_rows_frac: float = 0.0
    """Latents active at least once in a batch / F: the share of weight rows with a nonzero gradient (what a
    row-restricted optimizer could skip is the rest)."""


@dataclass
class XcStepResult:
    """The benchmark's JSON."""

    config: BenchConfig
    machine: Machine
    results: list[PathResult] = field(default_factory=list)
    speedups: dict[str, float] = field(default_factory=dict)
    """fast / reference tokens/s, keyed ``<arch>/<n_latents>``."""
    speedups_gemm_normalised: dict[str, float] = field(default_factory=dict)
    """The same, each path's tokens/s first divided by its own median probe (the paths run one after the other)."""
    targets: dict[str, float] = field(default_factory=lambda: dict(TARGETS))
    benchmark: str = "xc_step"
    flop_model: str = "sparse 2*X*F + 8*k*X, dense 10*X*F FLOP/token (crosscoder.xc.metrics.flops_per_token)"

    def find(self, arch: str, n_latents: int, path: str) -> PathResult | None:
        return next((r for r in self.results if (r.arch, r.n_latents, r.path) == (arch, n_latents, path)), None)


class _Runner:
    """One crosscoder, its optimizer and the trainer's step, single process."""

    def __init__(self, bc: BenchConfig, arch: str, n_latents: int, fast: bool, x0_BMLD: torch.Tensor) -> None:
        dev = torch.device(bc.device)
        cfg = CrosscoderConfig(
            architecture=arch, n_latents=n_latents, k=bc.k, fast_path=fast,
            n_models=bc.n_models, n_hooks=bc.n_hooks, d_model=bc.d_model,
        )  # fmt: skip
        self.cc = Crosscoder(cfg, seed=bc.seed).to(dev).train()
        if arch == "l1":
            _set_l0(self.cc, self.cc.normalise(x0_BMLD), bc.l1_l0)
        tcfg = TrainerConfig(
            steps=10**9, batch_size=bc.batch, lr=bc.lr, warmup_steps=0, l1_warmup_steps=0, decay="none",
            dead_tokens=10**15, device=bc.device, autocast_bf16=bc.dtype == "bf16",
        )  # fmt: skip
        autocast: contextlib.AbstractContextManager[object] = (
            torch.autocast("cuda", dtype=torch.bfloat16) if tcfg.autocast_bf16 else contextlib.nullcontext()
        )
        dist = DistInfo(device=dev)
        dead = DeadTracker(n_latents, tcfg.dead_tokens, dev)
        self.ctx = StepContext(
            self.cc, StepModule(self.cc, dist), make_optimizer(self.cc, tcfg, dev), tcfg, dist, dead, autocast
        )
        self.n = 0

    def step(self, x_BMLD: torch.Tensor) -> tuple[float, float, float]:
        """Seconds of one step, its L0 (active latents per token) and the fraction of latents active in the batch
        (the rows of the weights with a nonzero gradient)."""
        dev = self.ctx.dist.device
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        out = train_step(self.ctx, self.cc.normalise(x_BMLD), self.n)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
        self.n += 1
        return dt, float(out.terms.l0) / x_BMLD.shape[0], float((out.terms.fired_F > 0).float().mean())


@torch.no_grad()
def _set_l0(cc: Crosscoder, x_n_BX: torch.Tensor, l0: float) -> None:
    """Encoder bias = minus the score that about l0 latents per token exceed on this batch (a trained L1's L0)."""
    pre = (x_n_BX @ cc.W_enc_XF).flatten()
    n_keep = max(1, min(pre.numel(), round(l0 * x_n_BX.shape[0])))
    cc.b_enc_F.fill_(-float(pre.topk(n_keep, sorted=False).values.min()))


def _time_case(bc: BenchConfig, arch: str, n_latents: int, batches: list[torch.Tensor]) -> list[PathResult]:
    """Each path at one size, its steps alternating with the GEMM probe (one path alive at a time: at 65,536
    latents a runner holds 3-4 GB)."""
    paths = {"fast": (True, bc.rounds), "reference": (False, bc.reference_rounds)}
    out = []
    for name, (fast, rounds) in paths.items():
        if name == "reference" and (not bc.reference or n_latents > bc.reference_max_latents):
            continue
        runner = _Runner(bc, arch, n_latents, fast, batches[0])
        for i in range(bc.warmup):
            runner.step(batches[i % 2])
        probe = _probe(bc, runner.cc)
        times, l0s, rows, gemm = [], [], [], []
        for i in range(rounds):
            gemm.append(probe())
            dt, l0, active_rows = runner.step(batches[i % 2])
            times.append(dt)
            l0s.append(l0)
            rows.append(active_rows)
        del runner, probe
        out.append(_summarise(bc, arch, n_latents, name, times, l0s, gemm))
        out[-1].active_rows_frac = statistics.mean(rows)
    return out


def _probe(bc: BenchConfig, cc: Crosscoder) -> EncoderGemmProbe:
    """The encoder-GEMM probe, on the runner's own encoder (and, on CPU, its pre-activation buffer)."""
    dtype = torch.bfloat16 if bc.dtype == "bf16" else torch.float32
    F_ = cc.cfg.n_latents
    W_FX = cc.W_enc_FMLD.detach().view(F_, bc.d_in) if dtype == torch.float32 else None
    out = cc.workspace.scratch("pre_BF", (bc.batch, F_), cc.W_enc_FMLD) if bc.device == "cpu" else None
    return EncoderGemmProbe(bc.batch, bc.d_in, F_, torch.device(bc.device), dtype, W_FX=W_FX, out=out)


def _summarise(
    bc: BenchConfig, arch: str, n_latents: int, path: str, ts: list[float], l0s: list[float], gemm: list[float]
) -> PathResult:
    med, g_med, g_best = statistics.median(ts), statistics.median(gemm), max(gemm)
    active = statistics.mean(l0s) if arch == "l1" else float(bc.k)
    sparse_flop = flops_per_token(bc.d_in, n_latents, active, sparse=True)
    own_flop = flops_per_token(bc.d_in, n_latents, active, sparse=path == "fast")
    tok_s = bc.batch / med
    gflops = tok_s * own_flop / 1e9
    bound = g_med * 1e9 / sparse_flop
    return PathResult(
        arch=arch, n_latents=n_latents, path=path, step_s=med, step_s_all=ts, tokens_per_s=tok_s,
        spread=max(ts) / min(ts), active=active, gflops=gflops, mfu=gflops / g_med, gemm_gflops=g_med,
        gemm_gflops_all=gemm, sparse_bound_tokens_per_s=bound, frac_sparse_bound=tok_s / bound,
        frac_sparse_bound_best_gemm=tok_s / (g_best * 1e9 / sparse_flop),
        dense_bound_tokens_per_s=g_med * 1e9 / flops_per_token(bc.d_in, n_latents, active, sparse=False),
    )  # fmt: skip


def _check(bc: BenchConfig) -> None:
    if bc.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {bc.device}: no CUDA GPU is available here; use --device cpu")
    if bc.dtype not in ("fp32", "bf16"):
        raise ConfigError(f"--dtype {bc.dtype}: choose fp32 or bf16")
    if bc.dtype == "bf16" and not bc.device.startswith("cuda"):
        raise ConfigError("--dtype bf16 is for GPUs (bf16 on this CPU is hundreds of times slower); use --dtype fp32")


def run(bc: BenchConfig | None = None, threads: int | None = None) -> XcStepResult:
    """Time every (architecture, size) of ``bc``; the torch thread count is restored afterwards."""
    bc = bc or BenchConfig()
    _check(bc)
    with torch_threads(threads):
        machine = Machine(gemm_gflops=square_gemm_gflops(torch.device(bc.device)))
        gen = torch.Generator().manual_seed(bc.seed)
        shape = (bc.batch, bc.n_models, bc.n_hooks, bc.d_model)
        batches = [(torch.randn(*shape, generator=gen) * 3.0).to(bc.device) for _ in range(2)]
        res = XcStepResult(config=bc, machine=machine)
        for n_latents in bc.latents:
            for arch in bc.archs:
                res.results += _time_case(bc, arch, n_latents, batches)
                ref = res.find(arch, n_latents, "reference")
                fast = res.find(arch, n_latents, "fast")
                if ref is not None and fast is not None:
                    res.speedups[f"{arch}/{n_latents}"] = fast.tokens_per_s / ref.tokens_per_s
                    res.speedups_gemm_normalised[f"{arch}/{n_latents}"] = (fast.tokens_per_s / fast.gemm_gflops) / (
                        ref.tokens_per_s / ref.gemm_gflops
                    )
        machine.finish()
    return res


def table(res: XcStepResult) -> str:
    """The results as an aligned text table."""
    head = f"{'arch':10} {'latents':>8} {'path':10} {'tok/s':>8} {'%bound':>7} {'MFU':>6} {'spread':>6} {'GEMM':>6} {'L0':>6}"
    rows = [head]
    for r in res.results:
        rows.append(
            f"{r.arch:10} {r.n_latents:>8} {r.path:10} {r.tokens_per_s:>8.0f} {r.frac_sparse_bound:>7.0%} "
            f"{r.mfu:>6.0%} {r.spread:>6.2f} {r.gemm_gflops:>6.0f} {r.active:>6.1f}"
        )
    rows += [f"speed-up fast/reference {k}: {v:.2f}x" for k, v in res.speedups.items()]
    m = res.machine
    rows.append(f"threads {m.threads}, cores {m.cores}, load {m.load_avg_start} -> {m.load_avg_end}")
    return "\n".join(rows)


def to_json(res: XcStepResult) -> dict[str, Any]:
    out = asdict(res)
    out["config"]["latents"], out["config"]["archs"] = list(res.config.latents), list(res.config.archs)
    return out


def main(argv: list[str] | None = None) -> XcStepResult:
    p = argparse.ArgumentParser(prog="python -m crosscoder.bench xc-step", description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", default="results/xc_step.json", help="where to write the JSON result")
    p.add_argument("--latents", type=int, nargs="+", default=None, help="default 4096 16384 65536 (GPU: 16384 65536)")
    p.add_argument("--arch", nargs="+", default=["topk", "batchtopk", "l1"])
    p.add_argument("--rounds", type=int, default=6, help="timed rounds per size and architecture")
    p.add_argument("--reference-rounds", type=int, default=3, help="rounds that also time the dense reference")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--d-model", type=int, default=576)
    p.add_argument("--models", type=int, default=2)
    p.add_argument("--l1-l0", type=float, default=100.0, help="L1: active latents per token at the start")
    p.add_argument("--no-reference", action="store_true", help="time the sparse path only")
    p.add_argument("--reference-max-latents", type=int, default=1 << 30, help="time the reference up to this size")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", nargs="+", default=["fp32"], choices=["fp32", "bf16"], help="bf16: CUDA autocast")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, normally nproc)")
    a = p.parse_args(argv)
    check_output_file(a.out, "--out")  # before the benchmark runs
    gpu = a.device.startswith("cuda")
    latents = tuple(a.latents or ((16384, 65536) if gpu else (4096, 16384, 65536)))
    results = []
    for dtype in a.dtype:
        bc = BenchConfig(
            latents=latents, archs=tuple(a.arch), d_model=a.d_model, n_models=a.models, k=a.k, batch=a.batch,
            rounds=a.rounds, reference_rounds=a.reference_rounds, warmup=a.warmup, l1_l0=a.l1_l0,
            reference=not a.no_reference, reference_max_latents=a.reference_max_latents, device=a.device,
            dtype=dtype,
        )  # fmt: skip
        res = run(bc, threads=a.threads)
        print(f"== {bc.device} {dtype}\n{table(res)}")
        results.append(res)
    payload = to_json(results[0]) if len(results) == 1 else {"runs": [to_json(r) for r in results]}
    atomic_write_json(a.out, payload)
    print(f"wrote {a.out}")
    return results[0]


if __name__ == "__main__":
    run_cli(main)
