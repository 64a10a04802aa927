"""`ExportConfig`: the `export` group of `python analyze.py` (AnalyzeConfig.export)."""

from __future__ import annotations

from dataclasses import dataclass

from crosscoder.errors import ConfigError


@dataclass
class ExportConfig:
    """Hand-offs to other tools once the analysis files are written."""

    saelens: bool = True
    """Export each model's slice as a SAELens SAE folder under <analysis>/saelens/."""
    saelens_encoder: str = "fit"
    """How each exported single-model SAE stands in for the other models' inputs: fit (least-squares prediction
    from this model's activation over the run's cache; reconstructs nearly as well as the crosscoder even when the
    models differ a lot) | mirror (this model's activation for every model) | own (the others zero). See
    crosscoder.analysis.export.saelens, docs/OUTPUTS.md and docs/EXPORT_FVE.md."""
    wandb_mode: str = "auto"
    """W&B mode of the analysis run: auto | offline | online | disabled. An explicit mode wins over the environment;
    auto uses $WANDB_MODE when set, else the training run's mode, else offline (docs/WANDB.md)."""
    wandb_project: str | None = None
    """W&B project of the analysis run; None = the training run's project (else crosscoder)."""

    def __post_init__(self) -> None:
        if self.saelens_encoder not in ("fit", "mirror", "own"):
            raise ConfigError(
                f"analyze.export.saelens_encoder: unknown mode {self.saelens_encoder!r}; choose fit, mirror or own"
            )
        if self.wandb_mode not in ("auto", "offline", "online", "disabled"):
            raise ConfigError(
                f"analyze.export.wandb_mode: unknown mode {self.wandb_mode!r}; choose auto, offline, online or disabled"
            )
