"""Configuration and result types for model organisms."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crosscoder.errors import ConfigError
from crosscoder.models.spec import ModelSpec

METHODS = ("lora", "full")
RESID_HOOK_RE = re.compile(r"^blocks\.\d+\.hook_resid_(pre|post)$")


@dataclass
class OrganismConfig:
    """How to fine-tune a base model on an SFT set (loss on assistant tokens only)."""

    name: str = "organism"
    """Organism name (folder prefix and display name of the final model)."""
    method: str = "lora"
    """lora (peft adapter, merged at load time) | full (all weights, saved as an HF folder)."""
    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA alpha (scale = alpha / r)."""
    dropout: float = 0.0
    """LoRA dropout."""
    target_modules: str | list[str] = "all-linear"
    """Modules LoRA adapts: 'all-linear' or a list of module names (e.g. [q_proj, v_proj])."""
    lr: float = 5e-4
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 3
    """Linear warm-up steps; afterwards the rate decays linearly by `lr_decay` of the peak."""
    lr_decay: float = 0.9
    """How far the rate decays after warm-up, as a fraction of the peak (0.9: to 10% at the last step; 0: constant)."""
    batch_size: int = 8
    """Conversations per optimiser step."""
    epochs: int = 2
    """Passes over the data (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Stop after this many steps instead of `epochs` passes."""
    max_len: int = 256
    """Truncate conversations to this many tokens."""
    save_steps: list[int] = field(default_factory=list)
    """Steps after which a checkpoint is kept (series c1, c2, ...); the final model is always saved."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0 = off)."""
    seed: int = 0
    """Seed for initialisation and data order."""
    tokenizer: str | None = None
    """Optional tokenizer folder the data was prepared for; refused unless it equals the base model's tokenizer."""
    trait: str | None = None
    """Trait (name or .json path) to check after training: base vs organism scores; a trait that does not rise fails the build."""
    eval_questions: int = 10
    """How many of the trait's evaluation questions the check uses."""
    eval_max_new_tokens: int = 64
    """Answer length for the check."""
    out_dir: str | None = None
    """Where organisms are built; None = $CROSSCODER_CACHE/organisms."""
    steer_alpha: float = 0.0
    """Preventative steering: alpha * v (the base's raw persona vector) is added at steer_hook in every training
    forward, never at evaluation or in saved weights; 0 = off (personas.organisms.preventative)."""
    steer_trait: str | None = None
    """Preventative steering: the trait (name or .json) whose persona vector is computed on the base."""
    steer_vectors: str | None = None
    """Preventative steering: a persona-vector file of the base to use instead of computing steer_trait's."""
    steer_hook: str | None = None
    """Preventative steering: residual hook of the edit; None = the vector's best-separating layer."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"organism.method: unknown method {self.method!r}; use lora or full")
        for fld in ("r", "alpha", "batch_size", "epochs", "max_len", "eval_questions", "eval_max_new_tokens"):
            if getattr(self, fld) < 1:
                raise ConfigError(f"organism.{fld}: must be >= 1")
        if self.lr <= 0:
            raise ConfigError("organism.lr: must be > 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("organism.max_steps: must be >= 1 or null")
        if any(s < 1 for s in self.save_steps) or sorted(set(self.save_steps)) != list(self.save_steps):
            raise ConfigError("organism.save_steps: must be increasing positive step numbers, e.g. [20, 40]")
        if not 0 <= self.lr_decay <= 1:
            raise ConfigError("organism.lr_decay: must be in [0, 1] (0 = constant rate, 0.9 = down to 10%)")
        if not 0 <= self.dropout < 1:
            raise ConfigError("organism.dropout: must be in [0, 1)")
        if not self.name or "/" in self.name:
            raise ConfigError("organism.name: must be a non-empty name without '/'")
        if self.steer_alpha and not (self.steer_trait or self.steer_vectors):
            raise ConfigError("organism.steer_alpha: set steer_trait or steer_vectors to say which vector to add")
        if self.steer_hook is not None and not RESID_HOOK_RE.match(self.steer_hook):
            raise ConfigError(
                f"organism.steer_hook: {self.steer_hook!r} is not a residual hook; use blocks.<l>.hook_resid_post|pre"
            )

    def hyperparameters(self) -> dict[str, Any]:
        """The fields that change the trained weights (used for the cache key and the metadata)."""
        keep = ("method", "r", "alpha", "dropout", "target_modules", "lr", "weight_decay", "warmup_steps",
                "batch_size", "epochs", "max_steps", "max_len", "grad_clip", "seed")  # fmt: skip
        out = {k: getattr(self, k) for k in keep}
        if self.lr_decay != 0.9:  # only when changed, so organisms built before the field existed keep their keys
            out["lr_decay"] = self.lr_decay
        if self.steer_alpha:  # only then: organisms without steering keep their cache keys
            out["steer"] = {k: getattr(self, f"steer_{k}") for k in ("alpha", "trait", "vectors", "hook")}
        return out


@dataclass
class OrganismResult:
    """A built organism: its checkpoint series as ModelSpecs, metadata and the trait check."""

    name: str
    folder: Path
    base: ModelSpec
    checkpoints: list[ModelSpec]
    """Intermediate checkpoints c1, c2, ... followed by the final model."""
    meta: dict[str, Any]
    status: str
    """ok (trait rose), failed (trait did not rise), unchecked (no trait given)."""
    comparison: dict[str, Any] | None = None
    reused: bool = False

    @property
    def final(self) -> ModelSpec:
        return self.checkpoints[-1]

    @property
    def series(self) -> list[ModelSpec]:
        """base -> c1 -> c2 -> ... -> final."""
        return [self.base, *self.checkpoints]
