"""`LatentDashboard`: one latent's dashboard, as `dashboards/latents.json` stores it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from crosscoder.analysis.records.candidate import LensTop, TopExample

JSON = dict[str, Any]


@dataclass
class LatentDashboard:
    """Everything the dashboard page shows for one latent."""

    latent: int
    cls: str
    """Latent class (shared, ft_exclusive, shifted, ...; docs/ANALYSIS_FORMAT.md)."""
    label: str
    rank: int
    """Candidate rank (0 = not ranked)."""
    density: float
    """Fraction of analysed tokens on which the latent fires."""
    max_act: float
    mean_act: float
    """Mean activation where it fires."""
    rel_norm: float
    cos: float
    hist: list[int]
    """Counts of its non-zero activations in equal bins of (0, max_act]."""
    top: list[TopExample] = field(default_factory=list)
    """Top-activating contexts, best first."""
    bands: list[list[TopExample]] = field(default_factory=list)
    """Random contexts from each activation band, lowest band first (band b: activations in (b, b+1] / n_bands x max)."""
    lens: dict[str, LensTop] = field(default_factory=dict)
    """Logit lens of each model's decoder (by model name) and of the decoder difference (`diff`)."""

    def to_json(self) -> JSON:
        out: JSON = {f.name: getattr(self, f.name) for f in fields(self)}
        out["top"] = [e.to_json() for e in self.top]
        out["bands"] = [[e.to_json() for e in band] for band in self.bands]
        out["lens"] = {k: v.to_json() for k, v in self.lens.items()}
        return out

    @classmethod
    def from_json(cls, o: JSON) -> LatentDashboard:
        d = cls(**{f.name: o[f.name] for f in fields(cls) if f.name not in ("top", "bands", "lens")})
        d.top = [TopExample.from_json(e) for e in o.get("top", [])]
        d.bands = [[TopExample.from_json(e) for e in band] for band in o.get("bands", [])]
        d.lens = {k: LensTop.from_json(v) for k, v in (o.get("lens") or {}).items()}
        return d
