"""`AnalysisContext`: the state one analysis builds up, step by step (see `crosscoder.analysis.run`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from crosscoder.analysis.config import AnalyzeConfig
from crosscoder.analysis.records.candidate import Candidate

if TYPE_CHECKING:
    from crosscoder.analysis.stats.collect import LatentStats
    from crosscoder.analysis.trajectory.step import SeriesAnalysis
    from crosscoder.data.protocols import Activations
    from crosscoder.models.load import LoadedModel
    from crosscoder.personas.traits import Trait
    from crosscoder.xc.model import Crosscoder

log = logging.getLogger(__name__)


@dataclass
class AnalysisContext:
    """What the steps of one analysis read and fill in; each step adds its part (the order is `run_analysis`'s)."""

    cfg: AnalyzeConfig
    run: Path
    """The training run folder."""
    info: dict[str, Any]
    """Its run.json."""
    cc: Crosscoder
    acts: Activations
    names: list[str]
    """Model display names, first = base, last = ft."""
    hooks: list[str]
    lens_idx: int
    """Index in `hooks` of the hook read by the logit lens, labels and steering."""
    out_dir: Path
    models: list[LoadedModel] | None = None
    """The language models (loaded only when a step needs them)."""
    st: LatentStats | None = None
    """The statistics pass (step "stats")."""
    table: pd.DataFrame | None = None
    """The latent table (step "table"; labels are added after the candidate steps)."""
    traits: dict[str, Trait] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per step (summary.json `timings`)."""
    series: SeriesAnalysis | None = None
    """A checkpoint series' statistics (step "trajectory"; None for a pair)."""

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record the wall time of the enclosed step as `timings[step]`."""
        t0 = time.perf_counter()
        yield
        self.timings[step] = time.perf_counter() - t0

    @property
    def stats(self) -> LatentStats:
        assert self.st is not None, "the statistics pass runs first"
        return self.st

    @property
    def df(self) -> pd.DataFrame:
        assert self.table is not None, "the latent table is built after the statistics pass"
        return self.table

    @property
    def lms(self) -> list[LoadedModel]:
        assert self.models is not None, "this step needs the language models"
        return self.models
