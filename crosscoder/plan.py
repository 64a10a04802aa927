"""What a training run will cost, before it runs: ``python -m crosscoder.plan [--gpu NAME] [--gpus N] <overrides>``
(or ``python train.py <overrides> plan=true``). Nothing is loaded: model sizes come from their configs.

For a training config it prints
- the activation cache: rows, bytes per row, size on disk;
- memory per rank: the models' weights plus the harvest's working memory while harvesting; the crosscoder's
  weights, gradients and Adam state plus one batch while training (the models are freed before training);
- the expected time from the FLOP model: a harvest forward costs ~2 FLOP per weight per token (plus attention,
  crosscoder.models.shapes) through the blocks the hooks need; a training step costs 10·X·F FLOP per token dense,
  2·X·F + 8·k·X with the sparse TopK path (X = models x hooks x d_model, F latents; shared/REFERENCE.md), divided
  by the hardware's peak rate times an efficiency, plus the DDP gradient all-reduce.

The hardware is a GPU from the table below (published dense peak rates) or, for a CPU run, this machine's measured
fp32 GEMM rate. The efficiencies are assumptions printed with the plan, not measurements.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from crosscoder.config import TrainConfig
from crosscoder.data.cache import bytes_per_row
from crosscoder.data.harvest import BLOCK_RE, stop_layer
from crosscoder.errors import ConfigError, run_cli
from crosscoder.io import cache_dir
from crosscoder.models.shapes import ModelShape, model_shape
from crosscoder.models.spec import ModelSpec
from crosscoder.xc.architectures import ARCHITECTURES
from crosscoder.xc.metrics import flops_per_token, measure_gemm_gflops

GIB = 1024**3


@dataclass(frozen=True)
class Hardware:
    """One device's memory and peak rates (dense, no sparsity), and the all-reduce bandwidth between devices."""

    name: str
    memory_gib: float
    bf16_tflops: float
    fp32_tflops: float
    """Plain fp32 (the crosscoder trainer's precision: TF32 is not enabled)."""
    allreduce_gbps: float
    """Effective all-reduce bus bandwidth between the GPUs of a node (NVLink; PCIe for cards without it)."""
    harvest_eff: float = 0.35
    train_eff: float = 0.3

    def tflops(self, dtype: torch.dtype) -> float:
        return self.fp32_tflops if dtype == torch.float32 else self.bf16_tflops


GPUS = {
    "a100-80gb": Hardware("NVIDIA A100-SXM4-80GB", 80, 312.0, 19.5, 230.0),
    "h100-80gb": Hardware("NVIDIA H100-SXM5-80GB", 80, 989.0, 67.0, 360.0),
    "l40s": Hardware("NVIDIA L40S (48 GB, PCIe)", 48, 362.0, 91.6, 20.0),
}
DEFAULT_GPU = "a100-80gb"


def cpu_hardware() -> Hardware:
    """This machine: available RAM and its measured fp32 GEMM rate (bf16 counted at the same rate, generously)."""
    from crosscoder.launch.preflight import available_ram

    gflops = measure_gemm_gflops("cpu")
    return Hardware(f"this CPU ({gflops:.0f} GFLOP/s fp32 GEMM measured)", available_ram() / GIB, gflops / 1e3,
                    gflops / 1e3, 0.0, harvest_eff=0.5, train_eff=0.5)  # fmt: skip


def hardware_for(device: str, gpu: str | None = None) -> Hardware:
    """The named GPU, the visible GPU (matched to the table by name), or this CPU for a cpu run."""
    if gpu is not None:
        if gpu not in GPUS:
            raise ConfigError(f"--gpu {gpu}: unknown; choose one of {', '.join(GPUS)}")
        return GPUS[gpu]
    if not device.startswith("cuda"):
        return cpu_hardware()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        for key, hw in GPUS.items():
            if key.split("-")[0] in props.name.lower():
                return Hardware(props.name, props.total_memory / GIB, hw.bf16_tflops, hw.fp32_tflops, hw.allreduce_gbps)
    return GPUS[DEFAULT_GPU]


@dataclass
class ModelRow:
    name: str
    source: str
    params: int
    weight_gib: float


@dataclass
class RunPlan:
    """The numbers the plan prints (all per rank where it says so)."""

    name: str
    hardware: str
    world_size: int
    models: list[ModelRow]
    dtype: str
    n_hooks: int
    d_model: int
    blocks_run: int
    n_layers: int
    tokens: int
    row_bytes: int
    cache_gib: float
    cache_root: str
    disk_free_gib: float
    harvest_gflop_per_token: float
    harvest_hours: float
    n_latents: int
    d_in: int
    xc_params: int
    train_path: str
    train_gflop_per_token: float
    steps: int
    batch_size: int
    train_hours: float
    allreduce_hours: float
    harvest_mem_gib: float
    train_mem_gib: float
    device_mem_gib: float
    assumptions: str

    @property
    def total_hours(self) -> float:
        return self.harvest_hours + self.train_hours + self.allreduce_hours

    @property
    def disk_fits(self) -> bool:
        return self.cache_gib <= self.disk_free_gib

    @property
    def fits(self) -> bool:
        return max(self.harvest_mem_gib, self.train_mem_gib) <= 0.95 * self.device_mem_gib

    def render(self) -> str:
        width = max(len(m.name) for m in self.models)
        models = "\n".join(
            f"  {m.name:<{width}}  {m.source}: {m.params / 1e9:.3f} B params, {self.dtype}: {m.weight_gib:.2f} GiB"
            for m in self.models
        )
        fit = "fits" if self.fits else "DOES NOT FIT"
        return "\n".join([
            f"plan for '{self.name}': {len(self.models)} models x {self.n_hooks} hook(s), d_model {self.d_model}; "
            f"{self.world_size} rank(s) on {self.hardware}",
            models,
            f"harvest           {self.tokens:,} tokens through {self.blocks_run} of {self.n_layers} blocks: "
            f"{self.harvest_gflop_per_token:.2f} GFLOP/token for all models",
            f"activation cache  {self.tokens:,} rows x {self.row_bytes:,} B = {self.cache_gib:,.1f} GiB on disk "
            f"({self.disk_free_gib:,.0f} GiB free in {self.cache_root}"
            + ("; TOO LITTLE: set data.cache_root on a larger file system)" if not self.disk_fits else ")"),
            f"crosscoder        {self.n_latents:,} latents x {self.d_in:,} inputs = {self.xc_params / 1e6:,.0f} M "
            f"params; {self.train_path}: {self.train_gflop_per_token:.3f} GFLOP/token",
            f"training          {self.steps:,} steps x {self.batch_size:,} tokens = {self.steps * self.batch_size:,} tokens",
            f"memory per rank   harvest {self.harvest_mem_gib:.1f} GiB, training {self.train_mem_gib:.1f} GiB: "
            f"{fit} in {self.device_mem_gib:.0f} GiB",
            f"expected time     harvest {self.harvest_hours:.2f} h + training {self.train_hours:.2f} h + all-reduce "
            f"{self.allreduce_hours:.2f} h = {self.total_hours:.2f} h",
            f"assumptions       {self.assumptions}",
        ])  # fmt: skip


def size_spec(spec: ModelSpec) -> ModelSpec:
    """The spec whose config sizes `spec`: an organism is its recipe's base (never built here)."""
    if spec.resolved_kind() != "organism":
        return spec
    from crosscoder.personas.organisms.registry import RECIPES

    name = spec.source.split(":", 1)[1].split("@")[0]
    if name not in RECIPES:
        raise ConfigError(f"model source {spec.source}: unknown organism; known: {', '.join(sorted(RECIPES))}")
    return RECIPES[name].base


def model_shapes(specs: list[ModelSpec]) -> list[ModelShape]:
    """The shapes of every model, or a one-line error naming the first one that cannot be sized."""
    out = []
    for spec in specs:
        shape = model_shape(size_spec(spec))
        if shape is None:
            raise ConfigError(
                f"cannot size model {spec.source}: no config.json in a local folder or the Hugging Face cache, and not "
                "a known public model; download it first or pass a local folder"
            )
        out.append(shape)
    return out


def plan_dtype(dtype: str, device: str) -> torch.dtype:
    """The model dtype a run would use (auto: bfloat16 on a GPU, float32 on the CPU), without looking for a GPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def harvest_workspace_bytes(shape: ModelShape, batch: int, seq_len: int, dtype: torch.dtype) -> int:
    """Peak activation memory of one harvest forward: a block's residual, MLP and (eager) attention-score tensors."""
    per_token = 6 * shape.d_model + 3 * shape.d_mlp
    return dtype.itemsize * (batch * seq_len * per_token + 2 * batch * shape.n_heads * seq_len * seq_len)


def plan_run(cfg: TrainConfig, hw: Hardware, world_size: int = 1) -> RunPlan:
    """The plan of `cfg` on `world_size` ranks of `hw` (see the module docstring for the model)."""
    data, xc, tr = cfg.data, cfg.crosscoder, cfg.trainer
    shapes = model_shapes(list(cfg.models.models))
    d, n_layers = shapes[0].d_model, min(s.n_layers for s in shapes)
    for hook in data.hooks:
        m = BLOCK_RE.match(hook)
        if m and int(m.group(1)) >= n_layers:
            raise ConfigError(
                f"data.hooks: {hook} is beyond the models' {n_layers} blocks; use blocks.0..{n_layers - 1}"
            )
    stop = stop_layer(data.hooks)
    blocks = n_layers if stop is None else stop
    dtype = plan_dtype(cfg.models.dtype, data.device or cfg.models.device)
    M, L = len(shapes), len(data.hooks)
    row_bytes = bytes_per_row(M, L, d, data.store_dtype)
    harvest_fpt = sum(s.forward_flops_per_token(blocks, data.seq_len, stop is None) for s in shapes)
    harvest_s = harvest_fpt * data.n_tokens / (hw.tflops(dtype) * 1e12 * hw.harvest_eff * world_size)
    d_in, F = M * L * d, xc.n_latents
    sparse = xc.fast_path and ARCHITECTURES[xc.architecture].uses_k
    train_fpt = flops_per_token(d_in, F, xc.k, sparse)
    train_dtype = torch.bfloat16 if tr.autocast_bf16 else torch.float32
    steps, local = tr.total_steps, max(1, tr.batch_size // world_size)
    train_s = steps * tr.batch_size * train_fpt / (hw.tflops(train_dtype) * 1e12 * hw.train_eff * world_size)
    xc_params = 2 * F * d_in + F + d_in
    allreduce_s = 0.0
    if world_size > 1:
        bw = hw.allreduce_gbps * 1e9 or 1e9
        allreduce_s = steps * 2 * (world_size - 1) / world_size * 4 * xc_params / bw
    weights = [s.weight_bytes(dtype) for s in shapes]
    root = Path(data.cache_path or data.cache_root or cache_dir("activations", create=False)).expanduser()
    while not root.exists():
        root = root.parent
    n_split = torch.cuda.device_count() if cfg.models.device_map and torch.cuda.is_available() else 1
    harvest_mem = sum(weights) / n_split + max(
        harvest_workspace_bytes(s, data.harvest_batch_size, data.seq_len, dtype) for s in shapes
    )
    train_mem = 16 * xc_params + local * 4 * (4 * d_in + (2 if sparse else 4) * F)
    names = [m.label for m in cfg.models.models]
    return RunPlan(
        name=cfg.name, hardware=hw.name, world_size=world_size,
        models=[ModelRow(n, s.source, s.n_params, w / GIB) for n, s, w in zip(names, shapes, weights, strict=True)],
        dtype=str(dtype).removeprefix("torch."), n_hooks=L, d_model=d, blocks_run=blocks, n_layers=n_layers,
        tokens=data.n_tokens, row_bytes=row_bytes, cache_gib=data.n_tokens * row_bytes / GIB,
        cache_root=str(root), disk_free_gib=shutil.disk_usage(root).free / GIB,
        harvest_gflop_per_token=harvest_fpt / 1e9, harvest_hours=harvest_s / 3600, n_latents=F, d_in=d_in,
        xc_params=xc_params, train_path=f"{xc.architecture} k={xc.k}, {'sparse' if sparse else 'dense'} path",
        train_gflop_per_token=train_fpt / 1e9, steps=steps, batch_size=tr.batch_size, train_hours=train_s / 3600,
        allreduce_hours=allreduce_s / 3600, harvest_mem_gib=harvest_mem / GIB, train_mem_gib=train_mem / GIB,
        device_mem_gib=hw.memory_gib,
        assumptions=(
            f"peak {hw.bf16_tflops:g} TFLOP/s bf16, {hw.fp32_tflops:g} fp32; efficiency harvest "
            f"{hw.harvest_eff:.0%}, training {hw.train_eff:.0%}"
            + (f"; all-reduce {hw.allreduce_gbps:g} GB/s" if world_size > 1 else "")
        ),
    )  # fmt: skip


def compose_train(overrides: list[str], config_dir: Path | None = None) -> TrainConfig:
    """`configs/config.yaml` with Hydra `overrides`, as a typed TrainConfig (what `python train.py` would run)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from crosscoder.config import register_configs

    folder = (config_dir or Path(__file__).resolve().parents[1] / "configs").resolve()
    if not (folder / "config.yaml").is_file():
        raise ConfigError(f"config dir: {folder}/config.yaml not found; pass --config-dir <repo>/configs")
    register_configs()
    with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=overrides))
    assert isinstance(cfg, TrainConfig)
    return cfg


def main(argv: list[str] | None = None) -> RunPlan:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gpu", choices=sorted(GPUS), help="plan for this GPU (default: the visible one, else the CPU)")
    ap.add_argument("--gpus", type=int, default=1, help="DDP ranks (one GPU each)")
    ap.add_argument("--json", type=Path, help="also write the plan as JSON here")
    ap.add_argument("--config-dir", type=Path, help="Hydra config folder (default: the repository's configs/)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py")
    args = ap.parse_args(argv)
    if args.gpus < 1:
        raise ConfigError(f"--gpus {args.gpus}: must be >= 1")
    cfg = compose_train(args.overrides, args.config_dir)
    device = cfg.data.device or cfg.models.device
    plan = plan_run(cfg, hardware_for(device, args.gpu), args.gpus)
    print(plan.render())
    if args.json:
        from crosscoder.io import atomic_write_json

        atomic_write_json(
            args.json, {**asdict(plan), "total_hours": plan.total_hours, "fits": plan.fits, "disk_fits": plan.disk_fits}
        )
    return plan


if __name__ == "__main__":
    run_cli(main)
