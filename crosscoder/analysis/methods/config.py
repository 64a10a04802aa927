"""`MethodsConfig`: which diffing methods run on a training run, and each method's options.

Plain dataclasses like `crosscoder.analysis.config` (every field documented by the string after it, one-line
`ConfigError`s naming ``methods.<group>.<field>``). The labels of every method's candidates use the analysis
config's `labels` group (threshold, weights, ``cosine_full``, ``said_full``): the methods add no label knobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crosscoder.errors import ConfigError

METHOD_NAMES = ("crosscoder", "diff_sae", "adl", "persona_vectors", "fuzzing")
"""The registered diffing methods (`crosscoder.analysis.methods.METHODS`), in the benchmark's order."""


def _positive(group: str, obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(obj, name) < 1:
            raise ConfigError(f"methods.{group}.{name}: must be >= 1, got {getattr(obj, name)}")


@dataclass
class DiffSAEConfig:
    """The diff-SAE: a TopK SAE trained on x_ft - x_base with the crosscoder's trainer (one "model" input)."""

    architecture: str = "topk"
    """Sparsity mechanism of the SAE (a crosscoder architecture without per-model structure: topk, batchtopk)."""
    n_latents: int = 0
    """Latents; 0 = the run's crosscoder's (the comparison the issue asks for: same latent count and k)."""
    k: int = 0
    """Active latents per token; 0 = the run's crosscoder's."""
    steps: int = 800
    """Training steps (the recovery benchmark passes its crosscoder's)."""
    batch_size: int = 512
    """Training batch in tokens."""
    lr: float = 3e-4
    """Peak Adam learning rate."""
    seed: int = 0
    """Seed of the weights and of the batch order."""

    def __post_init__(self) -> None:
        if self.architecture not in ("topk", "batchtopk"):
            raise ConfigError(
                f"methods.diff_sae.architecture: {self.architecture!r} is not a plain SAE mechanism; use topk or batchtopk"
            )
        _positive("diff_sae", self, ("steps", "batch_size"))
        if self.n_latents < 0 or self.k < 0 or not self.lr > 0:
            raise ConfigError("methods.diff_sae: n_latents and k must be >= 0 (0 = the crosscoder's) and lr > 0")


@dataclass
class ADLConfig:
    """The activation-difference lens: the mean ft - base difference per position class, read and steered."""

    steer_strengths: list[float] = field(default_factory=lambda: [0.5, 1.0])
    """Steering strengths, in units of the base model's mean residual norm at the lens hook (the unit mean-difference
    direction times strength times that norm is added to the base model's residual stream)."""
    questions: int = 6
    """Evaluation questions (pooled over the trait library, one per trait in turn) the steered base model answers."""
    max_new_tokens: int = 32
    """Tokens generated per steered answer."""

    def __post_init__(self) -> None:
        _positive("adl", self, ("questions", "max_new_tokens"))
        if not self.steer_strengths or any(s <= 0 for s in self.steer_strengths):
            raise ConfigError(f"methods.adl.steer_strengths: need positive numbers, got {self.steer_strengths}")


@dataclass
class PersonaVectorsConfig:
    """Persona-vector projection: traits ranked by the cosine of the mean shift with their persona vector."""

    min_cosine: float = 0.0
    """A trait is named when its cosine reaches this; 0 = 3 / sqrt(d_model), three standard deviations of a random
    direction's cosine (no tuning on the benchmark)."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_cosine < 1:
            raise ConfigError(f"methods.persona_vectors.min_cosine: must be in [0, 1), got {self.min_cosine}")


@dataclass
class FuzzingConfig:
    """Activation fuzzing (Poser): Gaussian noise at a hook of each model, then the trait expression of the answers."""

    hook: str | None = None
    """Residual hook where the noise is added; None = the middle layer's ``blocks.<n_layers // 2>.hook_resid_post``."""
    noise_scales: list[float] = field(default_factory=lambda: [0.1, 0.2])
    """Noise norms per token, in units of the model's mean residual norm at the hook on the questions."""
    samples: int = 2
    """Noise draws per question and scale (the same draws for both models)."""
    questions: int = 9
    """Evaluation questions (pooled over the trait library, one per trait in turn) each fuzzed model answers."""
    max_new_tokens: int = 32
    """Tokens generated per fuzzed answer (greedy: the noise is the only randomness)."""
    bootstrap: int = 200
    """Bootstrap resamples of the answers for each trait's z-score."""
    min_z: float = 3.0
    """A trait is labelled only when its bootstrap z-score reaches this (and its signal the label threshold)."""
    seed: int = 0
    """Seed of the noise and of the bootstrap."""

    def __post_init__(self) -> None:
        _positive("fuzzing", self, ("samples", "questions", "max_new_tokens", "bootstrap"))
        if not self.noise_scales or any(s <= 0 for s in self.noise_scales):
            raise ConfigError(f"methods.fuzzing.noise_scales: need positive numbers, got {self.noise_scales}")
        if self.min_z < 0:
            raise ConfigError(f"methods.fuzzing.min_z: must be >= 0, got {self.min_z}")


@dataclass
class MethodsConfig:
    """Which methods run and their options; the labels follow the analysis config's `labels` group."""

    methods: list[str] = field(default_factory=lambda: list(METHOD_NAMES))
    """Methods to run, names of `crosscoder.analysis.methods.METHODS`."""
    n_candidates: int = 0
    """Ranked candidates each method returns; 0 = the analysis's rank.n_candidates."""
    persona_questions: int = 0
    """Trait questions per pos/neg instruction for the persona vectors of persona_vectors and fuzzing; 0 = the analysis's
    labels.questions."""
    diff_sae: DiffSAEConfig = field(default_factory=DiffSAEConfig)
    """The diff-SAE baseline."""
    adl: ADLConfig = field(default_factory=ADLConfig)
    """The activation-difference lens."""
    persona_vectors: PersonaVectorsConfig = field(default_factory=PersonaVectorsConfig)
    """Persona-vector projection."""
    fuzzing: FuzzingConfig = field(default_factory=FuzzingConfig)
    """Activation fuzzing."""

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHOD_NAMES]
        if unknown:
            raise ConfigError(f"methods.methods: unknown method {unknown[0]!r}; known: {', '.join(METHOD_NAMES)}")
        if not self.methods:
            raise ConfigError(f"methods.methods: empty; name one or more of {', '.join(METHOD_NAMES)}")
        if self.n_candidates < 0 or self.persona_questions < 0:
            raise ConfigError("methods.n_candidates / persona_questions: must be >= 0 (0 = the analysis's)")
