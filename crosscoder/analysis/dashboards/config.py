"""`DashboardConfig`: the `dashboards` group of `python analyze.py` (AnalyzeConfig.dashboards)."""

from __future__ import annotations

from dataclasses import dataclass, field

from crosscoder.errors import ConfigError


@dataclass
class DashboardConfig:
    """Per-latent dashboards (sae-dashboard / Neuronpedia style) for every live latent or a chosen set."""

    enabled: bool = True
    """Write dashboards/latents.json and dashboards/dashboards.html (and log them to W&B)."""
    latents: list[int] = field(default_factory=list)
    """Latents to build dashboards for; empty = every live latent (fired at least once), candidates first, then by
    density, up to `max_latents`."""
    max_latents: int = 4096
    """Cap on the number of dashboards when `latents` is empty (0 = no cap)."""
    n_top: int = 8
    """Top-activating contexts per latent (one per sequence)."""
    n_bands: int = 5
    """Activation bands (equal fractions of the latent's max activation) to sample examples from."""
    per_band: int = 3
    """Random contexts shown per band."""
    n_bins: int = 24
    """Bins of each latent's activation histogram."""
    context_tokens: int = 12
    """Tokens of context before each example's peak (3 after)."""
    lens_k: int = 8
    """Tokens per logit-lens list (promoted and suppressed)."""

    def __post_init__(self) -> None:
        for name in ("n_top", "n_bands", "per_band", "n_bins", "lens_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"analyze.dashboards.{name}: must be >= 1, got {getattr(self, name)}")
        if self.max_latents < 0 or self.context_tokens < 0:
            raise ConfigError("analyze.dashboards.max_latents / context_tokens: must be >= 0")
        if any(j < 0 for j in self.latents):
            raise ConfigError(f"analyze.dashboards.latents: latent ids are >= 0, got {self.latents}")
