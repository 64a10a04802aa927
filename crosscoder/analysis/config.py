"""`AnalyzeConfig`: what `python analyze.py` analyses, how latents are classed, ranked and labelled, and what is written.

Plain dataclasses (Hydra structured-config friendly), one per part of the stage: `stats` (the pass over the cache),
`rank` (classes, Latent Scaling filter, score), `evidence` (contexts, logit lens, baseline), `next_token`, `labels`,
`steering`, `splice`, `trajectory`, `report` and `export`; run-wide choices (which run, which hook, device, seed) stay at the top.
Every field is documented by the string literal after it; `__post_init__` refuses invalid values with a one-line
`ConfigError` naming the field as ``analyze.<group>.<field>``. The flat keys of earlier versions (``n_steer``,
``label_threshold``, ...) are refused with the new key's name (`check_overrides`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from crosscoder.analysis.dashboards.config import DashboardConfig
from crosscoder.analysis.export.config import ExportConfig
from crosscoder.analysis.labels.config import LabelConfig
from crosscoder.errors import ConfigError

_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


def _at_least(group: str, obj: object, names: Iterable[str], low: int) -> None:
    """Refuse any of `names` below `low`, naming the field as analyze.<group>.<name>."""
    for name in names:
        value = getattr(obj, name)
        if value < low:
            raise ConfigError(f"analyze.{group}.{name}: must be >= {low}, got {value}")


@dataclass
class StatsConfig:
    """The pass over the activation cache that collects every per-latent statistic."""

    max_rows: int = 200_000
    """Cache rows (tokens) read for the latent statistics, in stored order (0 = every row)."""
    batch_size: int = 2048
    """Rows per crosscoder forward pass while computing statistics."""
    first_assistant_tokens: int = 5
    """How many leading assistant tokens form the first_assistant slice."""
    fast_path: bool = True
    """Use the sparse active-pair kernel for per-latent sums; false runs the dense plain-torch reference."""

    def __post_init__(self) -> None:
        _at_least("stats", self, ("batch_size",), 1)
        _at_least("stats", self, ("max_rows", "first_assistant_tokens"), 0)


@dataclass
class RankConfig:
    """Latent classes, the Latent Scaling artifact filter and the ranking score."""

    exclusive_threshold: float = 0.9
    """A latent is exclusive to a model set when the others' decoder norms are below (1 - t) / t of the largest one;
    for a pair this is relative norm > t (ft-exclusive) or < 1 - t (base-exclusive), the published 0.9 / 0.1 cut."""
    shifted_cosine: float = 0.9
    """A latent present in both base and ft whose base-vs-ft decoder cosine is below this is 'shifted'."""
    dead_max_freq: float = 0.0
    """A latent firing on at most this fraction of the analysed tokens (or with zero decoder norm) is 'dead'."""
    nu_err_max: float = 0.5
    """Latent Scaling: exclusive latents with nu_err above this are Complete Shrinkage artifacts (dropped)."""
    nu_recon_max: float = 0.5
    """Latent Scaling: exclusive latents with nu_recon above this are Latent Decoupling artifacts (dropped)."""
    exclusivity_weight: float = 0.5
    """Score bonus factor for exclusivity: score = attribution * (1 + w * exclusivity), see docs/ANALYSIS_FORMAT.md."""
    n_candidates: int = 50
    """Number of ranked candidates written to candidates.json with full evidence."""

    def __post_init__(self) -> None:
        _at_least("rank", self, ("n_candidates",), 0)
        if not 0.5 < self.exclusive_threshold < 1.0:
            raise ConfigError(
                f"analyze.rank.exclusive_threshold: {self.exclusive_threshold} must be in (0.5, 1), e.g. 0.9"
            )
        if not -1.0 <= self.shifted_cosine <= 1.0:
            raise ConfigError(
                f"analyze.rank.shifted_cosine: {self.shifted_cosine} must be a cosine in [-1, 1], e.g. 0.9"
            )
        if not 0.0 <= self.dead_max_freq < 1.0:
            raise ConfigError(f"analyze.rank.dead_max_freq: {self.dead_max_freq} must be in [0, 1)")
        for name in ("nu_err_max", "nu_recon_max", "exclusivity_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"analyze.rank.{name}: must be >= 0, got {getattr(self, name)}")


@dataclass
class EvidenceConfig:
    """Evidence read for every candidate from the cache and the models: contexts, logit lens, baseline."""

    n_top_examples: int = 10
    """Top-activating contexts stored per candidate (at most one per sequence)."""
    context_tokens: int = 24
    """Tokens of context kept before each top activation (plus a few after)."""
    logit_lens_k: int = 15
    """Tokens listed per direction in the logit lens (promoted and suppressed each)."""
    baseline: bool = True
    """Compute the mean activation-difference baseline with its logit lens (baseline.json)."""

    def __post_init__(self) -> None:
        _at_least("evidence", self, ("n_top_examples", "logit_lens_k"), 1)
        _at_least("evidence", self, ("context_tokens",), 0)


@dataclass
class NextTokenConfig:
    """What the fine-tune starts to say where a candidate fires (`crosscoder.analysis.evidence.next_token`)."""

    n_candidates: int = 10
    """Top candidates whose next-token shift (base vs ft predictions at their top contexts) is measured (0 = off)."""
    contexts: int = 4
    """Top contexts per candidate used for the next-token shift."""
    prefix_tokens: int = 64
    """Tokens of each context (up to the peak) the models read for the next-token shift (the sink is always kept)."""
    continue_tokens: int = 16
    """Greedy tokens each model continues those contexts with (0 = off); the labels match trait words in the ft
    continuations against the base continuations, and the said signal reads them. About a sentence: the words that
    carry a persona often come after a neutral opening, e.g. "I could do this much better if you gave me more access"
    (ten tokens stop at "if you"; six stop "But honestly, it's probably" before "not going to work out")."""
    openings: int = 3
    """Top promoted tokens of each shift that both models continue (`continue_tokens` tokens) to the phrase the
    token opens (0 = off); the labels count a token whose ft phrase has a trait keyword the base phrase lacks."""

    def __post_init__(self) -> None:
        _at_least("next_token", self, ("contexts", "prefix_tokens"), 1)
        _at_least("next_token", self, ("n_candidates", "continue_tokens", "openings"), 0)


def _default_strengths() -> list[float]:
    return [1.0, 2.0, 4.0]


@dataclass
class SteeringConfig:
    """Causal checks of the top candidates: steer the base model along them, ablate them in the ft model."""

    enabled: bool = True
    """Steer the base model along the top candidates and ablate them in the ft model (slow: generation)."""
    n_candidates: int = 5
    """Number of top candidates steered and ablated."""
    strengths: list[float] = field(default_factory=_default_strengths)
    """Steering strengths, in units of the latent's largest activation on the cache times its ft decoder vector."""
    questions: int = 4
    """Evaluation questions of the label trait used to score steering and ablation."""
    max_new_tokens: int = 32
    """Tokens generated per steered answer."""

    def __post_init__(self) -> None:
        _at_least("steering", self, ("questions", "max_new_tokens"), 1)
        _at_least("steering", self, ("n_candidates",), 0)
        if not self.strengths or any(not isinstance(v, int | float) for v in self.strengths):
            raise ConfigError(f"analyze.steering.strengths: need a non-empty list of numbers, got {self.strengths!r}")


@dataclass
class SpliceConfig:
    """Splice metrics: each model's loss with its hook activations replaced by the crosscoder reconstruction."""

    enabled: bool = True
    """Compute splice metrics (CE / KL with the crosscoder reconstruction spliced in)."""
    tokens: int = 4096
    """Tokens (from the cache's sequences) used for the splice metrics."""
    batch_size: int = 8
    """Sequences per forward pass for the splice metrics."""

    def __post_init__(self) -> None:
        _at_least("splice", self, ("batch_size",), 1)
        _at_least("splice", self, ("tokens",), 0)


@dataclass
class TrajectoryConfig:
    """A checkpoint series (3+ models in training order, base first): trajectories per checkpoint and the n+1 forecast
    (`crosscoder.analysis.trajectory`; trajectory.json, forecast.json, per-checkpoint table columns)."""

    enabled: bool = True
    """Analyse runs of 3+ models as a checkpoint series (a pair has no trajectory)."""
    steps: list[float] = field(default_factory=list)
    """Training step of each model, base first (empty = the steps organism builds record beside each checkpoint,
    else the model order 0, 1, 2, ...); refused unless strictly increasing."""
    window: int = 3
    """Checkpoints (base included) the n+1 forecast extrapolates over."""
    next_step: float | None = None
    """Step of the checkpoint to forecast. None = the last step plus the last spacing."""
    n_candidates: int = 10
    """Latents added to the candidates for their largest attribution at any checkpoint (a persona that peaked before
    the last checkpoint), ranked after the model-diff candidates (0 = none)."""
    top_latents: int = 10
    """Latents per trait (largest contribution to its signal at the last checkpoint) in trajectory.json, the charts,
    W&B and the per-latent forecast."""
    behaviour: str | None = None
    """behaviour.json of the series (an organism build's) for the behavioural forecast; None = the one beside the
    checkpoints when they are a series organism's, else no behavioural forecast."""
    measure: str = "keyword_rate"
    """Behaviour measure forecast: keyword_rate | projection (`crosscoder.personas.organisms.behaviour`)."""

    def __post_init__(self) -> None:
        _at_least("trajectory", self, ("window",), 2)
        _at_least("trajectory", self, ("n_candidates", "top_latents"), 0)
        if self.measure not in ("keyword_rate", "projection"):
            raise ConfigError(
                f"analyze.trajectory.measure: unknown measure {self.measure!r}; use keyword_rate or projection"
            )


@dataclass
class ReportConfig:
    """What is drawn from the analysis files once they are written."""

    enabled: bool = True
    """Write report.html (self-contained) and the PNG plots under plots/."""


@dataclass
class AnalyzeConfig:
    """Options of the analysis stage: which run, then one group per part of the stage (see the module docstring)."""

    run_dir: str | None = None
    """Training run folder (holding final/ and run.json). None = the latest finished run under runs_root."""
    runs_root: str = "runs"
    """Where training runs live; used to find the latest run when run_dir is None."""
    out_dir: str | None = None
    """Output folder. None = <run_dir>/analysis."""
    activations: str | None = None
    """Activation cache folder to analyse. None = the cache recorded in <run_dir>/run.json."""
    control_activations: str | None = None
    """Activation cache of the base and a control fine-tune (the same recipe without the persona) on the run's tokens
    (`python -m crosscoder.analysis control`); the score then sets aside the attribution the control shares, so
    latents for what any such fine-tune changes (answer length, end of turn) rank below the persona's. None = off."""
    lens_hook: str | None = None
    """Hook whose decoder slice is used for the logit lens, labels and steering. None = the last hook of the run."""
    device: str = "cpu"
    """Torch device for the crosscoder and the language models."""
    seed: int = 0
    """Seed for generation sampling and any subsampling."""
    verify: str = "sampled"
    """Checksums of the activation cache checked before the analysis reads it: sampled (every shard's size, the
    sha256 of all shards up to 1 GiB in total, else of a random 1 GiB of them) | full (every shard) | off."""
    stats: StatsConfig = field(default_factory=StatsConfig)
    """The pass over the activation cache."""
    rank: RankConfig = field(default_factory=RankConfig)
    """Latent classes, the Latent Scaling filter and the ranking score."""
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    """Top contexts, logit lens and the activation-difference baseline."""
    next_token: NextTokenConfig = field(default_factory=NextTokenConfig)
    """The next-token shift and greedy continuations at the candidates' contexts."""
    labels: LabelConfig = field(default_factory=LabelConfig)
    """Persona labels against the trait library."""
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    """Steering and ablation of the top candidates."""
    splice: SpliceConfig = field(default_factory=SpliceConfig)
    """Splice metrics."""
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    """Checkpoint-series trajectories and the n+1 forecast (runs of 3+ models)."""
    report: ReportConfig = field(default_factory=ReportConfig)
    """The HTML report and the plots."""
    export: ExportConfig = field(default_factory=ExportConfig)
    """SAELens export and W&B logging."""
    dashboards: DashboardConfig = field(default_factory=DashboardConfig)
    """Per-latent dashboards of every live latent (or a chosen set): dashboards/ and W&B."""

    def __post_init__(self) -> None:
        if not _DEVICE_RE.match(self.device):
            raise ConfigError(f"analyze.device: unknown device {self.device!r}; use cpu, cuda or cuda:N")
        if self.verify not in ("sampled", "full", "off"):
            raise ConfigError(f"analyze.verify: unknown mode {self.verify!r}; choose sampled, full or off")
        if self.run_dir is not None and not str(self.run_dir).strip():
            raise ConfigError("analyze.run_dir: empty; give a run folder or leave it unset for the latest run")
        if self.labels.said and (self.next_token.n_candidates == 0 or self.next_token.continue_tokens == 0):
            raise ConfigError(
                "analyze.labels.said: reads the next-token continuations; set next_token.n_candidates and "
                "next_token.continue_tokens > 0 or labels.said=false"
            )


MOVED_KEYS = {
    "max_rows": "stats.max_rows",
    "batch_size": "stats.batch_size",
    "first_assistant_tokens": "stats.first_assistant_tokens",
    "fast_path": "stats.fast_path",
    "exclusive_threshold": "rank.exclusive_threshold",
    "shifted_cosine": "rank.shifted_cosine",
    "dead_max_freq": "rank.dead_max_freq",
    "nu_err_max": "rank.nu_err_max",
    "nu_recon_max": "rank.nu_recon_max",
    "exclusivity_weight": "rank.exclusivity_weight",
    "n_candidates": "rank.n_candidates",
    "n_top_examples": "evidence.n_top_examples",
    "context_tokens": "evidence.context_tokens",
    "logit_lens_k": "evidence.logit_lens_k",
    "do_baseline": "evidence.baseline",
    "n_next_token": "next_token.n_candidates",
    "next_token_contexts": "next_token.contexts",
    "next_token_prefix": "next_token.prefix_tokens",
    "next_token_continue": "next_token.continue_tokens",
    "next_token_openings": "next_token.openings",
    "do_labels": "labels.enabled",
    "trait_dirs": "labels.trait_dirs",
    "include_shipped_traits": "labels.include_shipped_traits",
    "traits": "labels.traits",
    "persona_questions": "labels.persona_questions",
    "persona_vectors": "labels.persona_vectors",
    "label_questions": "labels.questions",
    "label_threshold": "labels.threshold",
    "label_weights": "labels.weights",
    "label_cosine_full": "labels.cosine_full",
    "label_said": "labels.said",
    "label_said_full": "labels.said_full",
    "do_steering": "steering.enabled",
    "n_steer": "steering.n_candidates",
    "steer_strengths": "steering.strengths",
    "steer_questions": "steering.questions",
    "steer_max_new_tokens": "steering.max_new_tokens",
    "do_splice": "splice.enabled",
    "splice_tokens": "splice.tokens",
    "splice_batch_size": "splice.batch_size",
    "export_saelens": "export.saelens",
    "wandb_mode": "export.wandb_mode",
    "wandb_project": "export.wandb_project",
}
"""Flat keys of the earlier AnalyzeConfig -> their nested place."""


def check_overrides(overrides: Iterable[str]) -> None:
    """Refuse command-line overrides that use a flat key of the earlier config, naming the new key (before Hydra's
    own, less specific, "not in struct" error)."""
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~") if "=" in item else ""
        if key in MOVED_KEYS:
            value = item.split("=", 1)[1]
            raise ConfigError(
                f"analyze.{key}: this option moved to analyze.{MOVED_KEYS[key]}; write {MOVED_KEYS[key]}={value}"
            )
