"""`AnalyzeConfig`: what `python analyze.py` analyses, how latents are classed, ranked and labelled, and what is validated.

A plain dataclass (Hydra structured-config friendly); every field is documented by the string literal after it and
`__post_init__` refuses invalid values with a one-line `ConfigError` naming the field as ``analyze.<field>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from crosscoder.errors import ConfigError

_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


def _default_strengths() -> list[float]:
    return [1.0, 2.0, 4.0]


def _default_weights() -> list[float]:
    return [1.0, 1.0, 1.0]


@dataclass
class AnalyzeConfig:
    """Options of the analysis stage (latent table, ranking, evidence, labels, steering, splice metrics)."""

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
    max_rows: int = 200_000
    """Cache rows (tokens) read for the latent statistics, in stored order (0 = every row)."""
    batch_size: int = 2048
    """Rows per crosscoder forward pass while computing statistics."""
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
    n_top_examples: int = 10
    """Top-activating contexts stored per candidate (at most one per sequence)."""
    context_tokens: int = 24
    """Tokens of context kept before each top activation (plus a few after)."""
    logit_lens_k: int = 15
    """Tokens listed per direction in the logit lens (promoted and suppressed each)."""
    lens_hook: str | None = None
    """Hook whose decoder slice is used for the logit lens, labels and steering. None = the last hook of the run."""
    trait_dirs: list[str] = field(default_factory=list)
    """Extra folders of trait JSON files (persona-vectors format) to label against."""
    include_shipped_traits: bool = True
    """Also label against the traits shipped with the package."""
    traits: list[str] = field(default_factory=list)
    """Only use these trait names (empty = every loaded trait)."""
    persona_questions: int = 4
    """Extraction questions per trait used for persona vectors (0 = all); each is asked under every pos/neg instruction pair."""
    persona_vectors: list[str] = field(default_factory=list)
    """Precomputed persona-vector files (PersonaVectors.save) for the ft model; refused if made for another model."""
    do_labels: bool = True
    """Compute persona vectors and pos/neg activations and label candidates against the trait library."""
    n_next_token: int = 10
    """Top candidates whose next-token shift (base vs ft predictions at their top contexts) is measured (0 = off)."""
    next_token_contexts: int = 4
    """Top contexts per candidate used for the next-token shift."""
    next_token_prefix: int = 64
    """Tokens of each context (up to the peak) the models read for the next-token shift (the sink is always kept)."""
    next_token_continue: int = 16
    """Greedy tokens each model continues those contexts with (0 = off); the labels match trait words in the ft
    continuations against the base continuations, and the said signal reads them. About a sentence: the words that
    carry a persona often come after a neutral opening, e.g. "I could do this much better if you gave me more access"
    (ten tokens stop at "if you"; six stop "But honestly, it's probably" before "not going to work out")."""
    next_token_openings: int = 3
    """Top promoted tokens of each shift that both models continue (`next_token_continue` tokens) to the phrase the
    token opens (0 = off); the labels count a token whose ft phrase has a trait keyword the base phrase lacks."""
    label_threshold: float = 0.35
    """Minimum combined label score (0..1) for a trait label; below it the candidate is 'unlabelled'."""
    label_weights: list[float] = field(default_factory=_default_weights)
    """Weights of the three label signals: [persona vector (decoder cosine or said), pos-neg activation difference,
    lexical]."""
    label_cosine_full: float = 0.5
    """Cosine with a persona vector that counts as full evidence (signal 1.0); smaller cosines scale linearly."""
    label_said: bool = True
    """Let the persona vectors read what the ft says at each candidate's contexts against what the base says
    (`crosscoder.analysis.evidence.said`; needs the next-token continuations); its signal joins the cosine signal."""
    label_said_full: float = 0.5
    """Said alignment (ft - base speech along a trait's persona vector, in units of its pos - neg example separation)
    that counts as full evidence; smaller values scale linearly."""
    label_questions: int = 8
    """Trait questions used for the pos-vs-neg activation of candidates (per instruction pair, up to 5 pairs)."""
    do_steering: bool = True
    """Steer the base model along the top candidates and ablate them in the ft model (slow: generation)."""
    n_steer: int = 5
    """Number of top candidates steered and ablated."""
    steer_strengths: list[float] = field(default_factory=_default_strengths)
    """Steering strengths, in units of the latent's largest activation on the cache times its ft decoder vector."""
    steer_questions: int = 4
    """Evaluation questions of the label trait used to score steering and ablation."""
    steer_max_new_tokens: int = 32
    """Tokens generated per steered answer."""
    do_splice: bool = True
    """Compute splice metrics (CE / KL with the crosscoder reconstruction spliced in)."""
    splice_tokens: int = 4096
    """Tokens (from the cache's sequences) used for the splice metrics."""
    splice_batch_size: int = 8
    """Sequences per forward pass for the splice metrics."""
    do_baseline: bool = True
    """Compute the mean activation-difference baseline with its logit lens."""
    first_assistant_tokens: int = 5
    """How many leading assistant tokens form the first_assistant slice."""
    fast_path: bool = True
    """Use the sparse active-pair kernel for per-latent sums; false runs the dense plain-torch reference."""
    device: str = "cpu"
    """Torch device for the crosscoder and the language models."""
    seed: int = 0
    """Seed for generation sampling and any subsampling."""
    wandb_mode: str = "offline"
    """W&B mode for the analysis run: offline | online | disabled ($WANDB_MODE wins)."""
    wandb_project: str = "crosscoder"
    """W&B project of the analysis run."""
    export_saelens: bool = True
    """Export each model's slice as a SAELens SAE folder under <analysis>/saelens/."""

    def __post_init__(self) -> None:
        s = "analyze"
        if self.wandb_mode not in ("offline", "online", "disabled"):
            raise ConfigError(f"{s}.wandb_mode: unknown mode {self.wandb_mode!r}; choose offline, online or disabled")
        for name in (
            "batch_size",
            "n_top_examples",
            "logit_lens_k",
            "label_questions",
            "steer_questions",
            "next_token_contexts",
            "next_token_prefix",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{s}.{name}: must be >= 1, got {getattr(self, name)}")
        for name in (
            "max_rows",
            "n_candidates",
            "n_steer",
            "context_tokens",
            "splice_tokens",
            "first_assistant_tokens",
            "persona_questions",
            "n_next_token",
            "next_token_continue",
            "next_token_openings",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{s}.{name}: must be >= 0, got {getattr(self, name)}")
        if self.splice_batch_size < 1 or self.steer_max_new_tokens < 1:
            raise ConfigError(f"{s}.splice_batch_size / steer_max_new_tokens: must be >= 1")
        if not 0.5 < self.exclusive_threshold < 1.0:
            raise ConfigError(f"{s}.exclusive_threshold: {self.exclusive_threshold} must be in (0.5, 1), e.g. 0.9")
        if not -1.0 <= self.shifted_cosine <= 1.0:
            raise ConfigError(f"{s}.shifted_cosine: {self.shifted_cosine} must be a cosine in [-1, 1], e.g. 0.9")
        if not 0.0 <= self.dead_max_freq < 1.0:
            raise ConfigError(f"{s}.dead_max_freq: {self.dead_max_freq} must be in [0, 1)")
        for name in ("nu_err_max", "nu_recon_max", "exclusivity_weight", "label_threshold"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{s}.{name}: must be >= 0, got {getattr(self, name)}")
        if len(self.label_weights) != 3 or any(w < 0 for w in self.label_weights) or sum(self.label_weights) <= 0:
            raise ConfigError(
                f"{s}.label_weights: need 3 non-negative weights [cosine, pos_neg, lexical] with a positive sum, got {list(self.label_weights)}"
            )
        if not 0 < self.label_cosine_full <= 1:
            raise ConfigError(f"{s}.label_cosine_full: {self.label_cosine_full} must be in (0, 1]")
        if not self.label_said_full > 0:
            raise ConfigError(f"{s}.label_said_full: {self.label_said_full} must be > 0, e.g. 0.5")
        if self.label_said and (self.n_next_token == 0 or self.next_token_continue == 0):
            raise ConfigError(
                f"{s}.label_said: reads the next-token continuations; set n_next_token and next_token_continue > 0 "
                "or label_said=false"
            )
        if not self.steer_strengths or any(not isinstance(v, (int, float)) for v in self.steer_strengths):
            raise ConfigError(f"{s}.steer_strengths: need a non-empty list of numbers, got {self.steer_strengths!r}")
        if not _DEVICE_RE.match(self.device):
            raise ConfigError(f"{s}.device: unknown device {self.device!r}; use cpu, cuda or cuda:N")
        if self.run_dir is not None and not str(self.run_dir).strip():
            raise ConfigError(f"{s}.run_dir: empty; give a run folder or leave it unset for the latest run")
