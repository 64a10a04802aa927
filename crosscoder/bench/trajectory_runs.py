"""The crosscoders of one checkpoint series for the trajectory benchmark: one per prefix base..ck, k = 1..N.

The series' activations are harvested once (all N+1 models on the same tokens); the cache of every prefix is cut out
of it (`crosscoder.data.subset`) and a crosscoder is trained on that prefix alone, so the crosscoder of prefix n
never sees checkpoint n+1. Each prefix run is then analysed (candidates and labels, for the early warning) and
summarised by `crosscoder.analysis.trajectory.stats` (per-checkpoint decoder geometry and the trait signal). Finished runs
are reused when the benchmark is resumed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from crosscoder.analysis.trajectory.stats import SeriesStats
from crosscoder.io import read_json
from crosscoder.models.spec import ModelSpec

log = logging.getLogger(__name__)

QUICK = ["data.n_tokens=12000", "trainer.steps=300", "crosscoder.n_latents=1024"]
"""The `--quick` scale (the recovery benchmark's): small token count, few steps, 1,024 latents."""


@dataclass
class PrefixRun:
    """The crosscoder fitted on checkpoints 0..k of a series, and what the benchmark read from it."""

    k: int
    run_dir: Path
    stats: SeriesStats
    flagged: bool
    """A candidate of this crosscoder is labelled with the series' trait (label confidence above the threshold)."""
    labels: list[str | None] = field(default_factory=list)
    """Labels of the top candidates (model-diff ranking, base vs ck)."""
    seconds: float = 0.0


def series_specs(organism: str, n_checkpoints: int) -> list[ModelSpec]:
    """base, organism:<name>@c1 ... @cN as model specs."""
    base = ModelSpec(source="smollm2-135m-instruct", name="base")
    return [base, *(ModelSpec(source=f"organism:{organism}@c{k}", name=f"c{k}") for k in range(1, n_checkpoints + 1))]


def compose_train(config_dir: Path, name: str, specs: list[ModelSpec], quick: bool, overrides: list[str]) -> Any:
    """The training config (configs/config.yaml + the benchmark scale + `overrides`) for a model set."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from crosscoder.config import ModelSetConfig, TrainConfig, register_configs

    register_configs()
    ov = [f"name={name}", "logging=disabled", *(QUICK if quick else []), *overrides]
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=ov))
    assert isinstance(cfg, TrainConfig)
    return dataclasses.replace(cfg, models=ModelSetConfig(models=list(specs), device=cfg.models.device))


def persona_unit(trait: Any, hook: str) -> torch.Tensor:
    """The base model's unit persona vector of `trait` at `hook` (examples source; cached on disk)."""
    from crosscoder.models import load_model
    from crosscoder.personas.vectors import compute_persona_vectors

    base = load_model(ModelSpec(source="smollm2-135m-instruct", name="base"))
    v = compute_persona_vectors(base, trait, source="examples").for_hook(hook)
    return v / v.norm()


def train_prefixes(cfg: Any, root: Path) -> tuple[list[Path], Any]:
    """Harvest the whole series once, then train (or reuse) one crosscoder per prefix; returns (run dirs, full acts)."""
    from crosscoder.data.api import ActivationSet
    from crosscoder.data.subset import subset_cache
    from crosscoder.pipeline import prepare_run_data, run_train

    acts, records = prepare_run_data(cfg)
    assert acts.path is not None
    runs = []
    for k in range(1, len(records)):
        run_dir = root / f"upto-c{k}"
        runs.append(run_dir)
        if (run_dir / "final").is_dir() and (run_dir / "run.json").is_file():
            log.info("reusing %s", run_dir)
            continue
        sub = subset_cache(acts.path, list(range(k + 1)), cfg.data)
        cfg_k = dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, models=cfg.models.models[: k + 1]))
        t0 = time.perf_counter()
        run_train(cfg_k, run_dir, prepared=(ActivationSet.open(sub, cfg.data), records[: k + 1]))
        log.info(
            "trained the crosscoder on %s in %.0f s", [r["name"] for r in records[: k + 1]], time.perf_counter() - t0
        )
    return runs, acts


def analyse_prefix(
    run_dir: Path, trait: str, config_dir: Path, analyze_overrides: list[str]
) -> tuple[bool, list[str | None]]:
    """Candidates and labels of a prefix run (configs/analyze.yaml without steering, splice metrics, report and
    exports): whether a candidate is labelled with `trait`, and the top candidates' labels."""
    from crosscoder.analysis.run import run_analysis
    from crosscoder.config import compose_analyze

    ov = [f"run_dir={run_dir}", "steering.enabled=false", "splice.enabled=false", "report.enabled=false",
          "export.saelens=false", "export.wandb_mode=disabled", *analyze_overrides]  # fmt: skip
    result = run_analysis(compose_analyze(config_dir, ov))
    labels = [c.label for c in result.candidates]
    return trait in labels, labels[:10]


def prefix_stats(run_dir: Path, unit_D: torch.Tensor, trait: str) -> SeriesStats:
    """`series_stats` of a prefix run on its own cache."""
    from crosscoder.analysis.trajectory.stats import series_stats
    from crosscoder.data.api import ActivationSet
    from crosscoder.xc.model import Crosscoder

    info = read_json(run_dir / "run.json")
    cc = Crosscoder.load(run_dir / "final")
    acts = ActivationSet.open(info["activations"], verify=False)
    return series_stats(cc, acts, list(info["model_names"]), {trait: unit_D})
