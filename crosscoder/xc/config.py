"""Dataclass configs of the crosscoder, its trainer and the run logger.

They are plain dataclasses (Hydra structured-config friendly: plain types, ``X | None``, lists through
``default_factory``), each field documented by the string literal on the line after it. ``__post_init__`` refuses
invalid values and combinations with a one-line :class:`~crosscoder.errors.ConfigError` that names the field as
``<section>.<field>`` (the sections are the Hydra groups ``crosscoder``, ``trainer`` and ``logging``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from crosscoder.errors import ConfigError

DECAYS = ("linear", "cosine", "none")
WANDB_MODES = ("offline", "online", "disabled")
"""Modes W&B runs in."""
AUTO = "auto"
"""The W&B mode that defers to $WANDB_MODE, then offline (`crosscoder.xc.tracking.resolve_mode`)."""
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


def _require(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{where}: {message}")


@dataclass
class CrosscoderConfig:
    """Shape and sparsity mechanism of one crosscoder (one latent dictionary over N models x L hooks)."""

    architecture: str = "batchtopk"
    """Architecture, a key of crosscoder.xc.architectures.ARCHITECTURES: l1 | topk | batchtopk | jumprelu | dfc
    (Dedicated Feature Crosscoder: BatchTopK with blocks of latents exclusive to each model) | matryoshka (BatchTopK
    whose nested prefixes each learn to reconstruct)."""
    n_latents: int = 4096
    """Number of latents F in the shared dictionary."""
    k: int = 32
    """Active latents per token for topk / batchtopk (batchtopk keeps k * batch over the whole batch); jumprelu
    starts its thresholds so that about k latents fire per token."""
    n_shared: int = 0
    """Designated shared latents: the first n_shared latents have one decoder tied across all models."""
    shared_penalty_scale: float = 0.15
    """Sparsity-penalty scale of the shared latents relative to the others (Anthropic 2025 uses about 0.1-0.2)."""
    l1_coeff: float = 2.0
    """l1: weight of the penalty sum_j f_j * sum_{m,l} ||d_{j,m,l}|| (normalised space, mean over tokens)."""
    l0_coeff: float = 1.0
    """jumprelu: weight of the L0 penalty (expected number of active latents per token)."""
    jumprelu_bandwidth: float = 0.05
    """jumprelu: width of the rectangle kernel of the straight-through threshold gradient."""
    jumprelu_threshold_init: float = 0.1
    """jumprelu: initial threshold (normalised space); with trainer.init_from_data, its floor under the data-driven
    start (each latent's top-k/n_latents quantile on the first batch)."""
    dfc_exclusive: float = 0.05
    """dfc: fraction of the latents exclusive to each model (the last latents, one block per model: only that model
    encodes from and decodes to them); the rest are shared."""
    matryoshka_prefixes: list[float] = field(default_factory=lambda: [0.0625, 0.125, 0.25, 0.5])
    """matryoshka: the nested inner prefixes of the dictionary as fractions of n_latents (ascending, < 1); each prefix's
    own reconstruction joins the loss, as does the whole dictionary's."""
    threshold_momentum: float = 0.99
    """batchtopk: EMA momentum of the inference threshold (the smallest kept score of each training batch)."""
    dec_init_norm: float = 0.0
    """Initial norm of each latent's decoder vector per model and hook (the encoder starts as its transpose);
    0 = the architecture's default: 0.08 for l1 (Kissane), 0.5 for the others (smaller lets a few latents win
    the decoder-norm-weighted selection early and leaves many dead)."""
    dec_init_same: bool = True
    """Start each latent with the same decoder direction in every model, so a decoder only differs between models
    where the data make it differ; false draws each model's decoder independently (undertrained latents then look
    "shifted" by chance)."""
    fast_path: bool = True
    """topk / batchtopk / l1: use the sparse decode and sparse backward over the active latents (crosscoder.xc.fast;
    l1 while its L0 is below n_latents/16); false runs the dense plain-torch reference path."""
    n_models: int = 0
    """Number of models N (>= 2 for a crosscoder; 1 is a plain SAE, e.g. the diff-SAE baseline of
    crosscoder.analysis.methods). 0 = filled from the activation data at run time."""
    n_hooks: int = 0
    """Number of hooks L per model. 0 = filled from the activation data at run time."""
    d_model: int = 0
    """Residual width D. 0 = filled from the activation data at run time."""

    def __post_init__(self) -> None:
        from crosscoder.xc.architectures import ARCHITECTURES  # late import: the registry imports this module

        s = "crosscoder"
        _require(
            self.architecture in ARCHITECTURES,
            f"{s}.architecture",
            f"unknown architecture {self.architecture!r}; choose one of {', '.join(sorted(ARCHITECTURES))}",
        )
        _require(self.n_latents > 0, f"{s}.n_latents", f"must be > 0, got {self.n_latents}")
        if ARCHITECTURES[self.architecture].validates_k:
            _require(self.k >= 1, f"{s}.k", f"must be >= 1, got {self.k}")
            _require(
                self.k <= self.n_latents,
                f"{s}.k",
                f"k={self.k} is larger than n_latents={self.n_latents}; lower k or raise n_latents",
            )
        _require(self.n_shared >= 0, f"{s}.n_shared", f"must be >= 0, got {self.n_shared}")
        _require(
            self.n_shared <= self.n_latents,
            f"{s}.n_shared",
            f"n_shared={self.n_shared} is more than n_latents={self.n_latents}; lower n_shared",
        )
        _require(self.shared_penalty_scale > 0, f"{s}.shared_penalty_scale", "must be > 0 (about 0.1-0.2)")
        _require(self.l1_coeff >= 0, f"{s}.l1_coeff", f"must be >= 0, got {self.l1_coeff}")
        _require(self.l0_coeff >= 0, f"{s}.l0_coeff", f"must be >= 0, got {self.l0_coeff}")
        _require(self.jumprelu_bandwidth > 0, f"{s}.jumprelu_bandwidth", "must be > 0")
        _require(self.jumprelu_threshold_init > 0, f"{s}.jumprelu_threshold_init", "must be > 0")
        _require(0 <= self.threshold_momentum < 1, f"{s}.threshold_momentum", "must be in [0, 1)")
        _require(self.dec_init_norm >= 0, f"{s}.dec_init_norm", "must be >= 0 (0 = architecture default)")
        _require(self.n_models >= 0, f"{s}.n_models", f"must be >= 0 (0 = from the data), got {self.n_models}")
        _require(0 < self.dfc_exclusive < 0.5, f"{s}.dfc_exclusive", "must be in (0, 0.5), e.g. 0.05")
        fr = list(self.matryoshka_prefixes)
        _require(
            all(0 < a < b <= 1 for a, b in zip(fr, [*fr[1:], 1.0], strict=True)),
            f"{s}.matryoshka_prefixes",
            f"need ascending fractions in (0, 1), got {fr}; e.g. [0.0625, 0.125, 0.25, 0.5]",
        )
        _require(self.n_hooks >= 0, f"{s}.n_hooks", f"must be >= 0, got {self.n_hooks}")
        _require(self.d_model >= 0, f"{s}.d_model", f"must be >= 0, got {self.d_model}")

    def check_shape(self) -> None:
        """Refuse a config whose data-dependent sizes are still unset (called when a model is built)."""
        for name in ("n_models", "n_hooks", "d_model"):
            _require(
                getattr(self, name) > 0,
                f"crosscoder.{name}",
                "is 0 (unset); fill it from the activation data before building the crosscoder",
            )

    @property
    def d_in(self) -> int:
        """Width of the concatenated input, M * L * D."""
        return self.n_models * self.n_hooks * self.d_model


@dataclass
class TrainerConfig:
    """Optimisation, schedules, checkpoints and device of a training run."""

    steps: int = 2000
    """Optimizer steps (ignored when tokens > 0)."""
    tokens: int = 0
    """Training tokens; when > 0 the run lasts ceil(tokens / batch_size) steps."""
    batch_size: int = 1024
    """Global batch size in tokens (split evenly over DDP ranks)."""
    lr: float = 1e-4
    """Peak Adam learning rate."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam betas (two values in [0, 1))."""
    eps: float = 1e-8
    """Adam epsilon."""
    warmup_steps: int = 100
    """Linear learning-rate warmup from 0 over this many steps."""
    decay: str = "linear"
    """Learning-rate decay to 0 over the last decay_fraction of the run: linear | cosine | none."""
    decay_fraction: float = 0.2
    """Fraction of the run (at its end) over which the learning rate decays to 0."""
    l1_warmup_steps: int = 100
    """Linear warmup of the sparsity coefficient (l1_coeff, or l0_coeff for jumprelu) from 0."""
    k_anneal_start: int = 0
    """topk / batchtopk: k at step 0, annealed linearly to crosscoder.k; 0 = no annealing."""
    k_anneal_steps: int = 0
    """Steps over which k anneals from k_anneal_start to crosscoder.k."""
    aux_k: int = 512
    """topk / batchtopk: dead latents used by the auxiliary-k loss per token (0 = no auxiliary loss)."""
    aux_k_coeff: float = 0.03125
    """Weight of the auxiliary-k loss (Gao et al. use 1/32)."""
    dead_tokens: int = 1_000_000
    """A latent is dead when it has not fired in the last dead_tokens training tokens."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 = no clipping)."""
    autocast_bf16: bool = False
    """bf16 autocast of the forward pass; GPUs only (refused on cpu). fp32 otherwise."""
    init_from_data: bool = True
    """Start from the first batch: decoder bias = its mean (normalised space); jumprelu thresholds = each latent's
    top-k/n_latents quantile (Crosscoder.init_from_batch)."""
    seed: int = 0
    """Seed of the weight initialisation and of torch's generators."""
    checkpoint_every: int = 500
    """Write a resumable checkpoint every this many steps (0 = only the final weights)."""
    keep_checkpoints: int = 2
    """Keep this many most recent checkpoints (older ones are deleted)."""
    resume: bool = False
    """Continue from the last checkpoint in run_dir (starts at step 0 when there is none). A finished run (final/
    exists) is refused unless overwrite=true."""
    overwrite: bool = False
    """Allow replacing what run_dir holds: with resume=false, delete its checkpoints and train from step 0; with
    resume=true, continue (or retrain) a finished run and replace its final/ weights."""
    log_every: int = 50
    """Log metrics every this many steps."""
    device: str = "cpu"
    """Torch device: cpu | cuda | cuda:N."""

    def __post_init__(self) -> None:
        s = "trainer"
        for name in ("steps", "batch_size", "log_every", "keep_checkpoints", "dead_tokens"):
            _require(getattr(self, name) >= 1, f"{s}.{name}", f"must be >= 1, got {getattr(self, name)}")
        for name in ("tokens", "warmup_steps", "l1_warmup_steps", "k_anneal_start", "k_anneal_steps", "aux_k"):
            _require(getattr(self, name) >= 0, f"{s}.{name}", f"must be >= 0, got {getattr(self, name)}")
        _require(self.checkpoint_every >= 0, f"{s}.checkpoint_every", "must be >= 0 (0 = final weights only)")
        _require(self.lr > 0 and math.isfinite(self.lr), f"{s}.lr", f"must be a positive number, got {self.lr}")
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"{s}.betas",
            f"needs two values in [0, 1), got {list(self.betas)}",
        )
        _require(self.eps > 0, f"{s}.eps", "must be > 0")
        _require(self.decay in DECAYS, f"{s}.decay", f"unknown decay {self.decay!r}; choose one of {', '.join(DECAYS)}")
        _require(0 <= self.decay_fraction <= 1, f"{s}.decay_fraction", "must be in [0, 1]")
        _require(self.aux_k_coeff >= 0, f"{s}.aux_k_coeff", "must be >= 0")
        _require(self.grad_clip >= 0, f"{s}.grad_clip", "must be >= 0 (0 = no clipping)")
        _require(
            bool(_DEVICE_RE.match(self.device)),
            f"{s}.device",
            f"unknown device {self.device!r}; use cpu, cuda or cuda:N",
        )
        _require(
            not (self.autocast_bf16 and not self.device.startswith("cuda")),
            f"{s}.autocast_bf16",
            f"bf16 autocast is for GPUs only and device is {self.device}; set autocast_bf16=false or device=cuda",
        )

    @property
    def total_steps(self) -> int:
        """Length of the run in optimizer steps."""
        return math.ceil(self.tokens / self.batch_size) if self.tokens > 0 else self.steps


@dataclass
class LoggingConfig:
    """Where and how often training metrics go (W&B and run_dir/metrics.jsonl)."""

    wandb_mode: str = AUTO
    """W&B mode: auto | offline | online | disabled. An explicit mode wins over the environment; auto uses
    $WANDB_MODE when it is set, else offline (docs/WANDB.md)."""
    project: str = "crosscoder"
    """W&B project."""
    entity: str | None = None
    """W&B entity (team or user); None = your default entity."""
    run_name: str | None = None
    """W&B run name; None = train.py's Hydra overrides (e.g. `crosscoder=l1,trainer.lr=0.0001`), else the run
    folder's name."""
    group: str | None = None
    """W&B group; None = train.py's sweep (`<name>/<sweep folder>`) or, for a single run, `<name>/<run folder>`."""
    tags: list[str] = field(default_factory=list)
    """W&B tags."""
    log_model: bool = True
    """Log the final crosscoder (final/) as a W&B artifact `crosscoder-<run id>` that the analysis run uses."""
    hist_every: int = 500
    """Log decoder-norm-ratio histograms every this many steps (0 = only at the end)."""
    dense_frequency: float = 0.1
    """A latent is dense when it fires on more than this fraction of the tokens of a logging window."""
    measure_mfu: bool = True
    """Measure this machine's fp32 GEMM rate at start-up and log the share of it the training step uses."""
    progress: bool = True
    """Show a tqdm progress bar (rank 0 only)."""

    def __post_init__(self) -> None:
        s = "logging"
        _require(
            self.wandb_mode in (AUTO, *WANDB_MODES),
            f"{s}.wandb_mode",
            f"unknown mode {self.wandb_mode!r}; choose one of {AUTO}, {', '.join(WANDB_MODES)}",
        )
        _require(self.hist_every >= 0, f"{s}.hist_every", "must be >= 0")
        _require(0 < self.dense_frequency <= 1, f"{s}.dense_frequency", "must be in (0, 1]")
