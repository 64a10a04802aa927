"""The crosscoders of one checkpoint series for the trajectory benchmark: one per prefix base..ck, k = 1..N.

Every model is harvested alone, once, on the run's tokens (`harvest_each`: the base is shared by every series, and
a rerun or another series reuses its cache without loading it; one model is in memory at a time); the cache of
every prefix is those caches side by side (`crosscoder.data.merge`) and a crosscoder is trained on that prefix alone,
so the crosscoder of prefix n never sees checkpoint n+1. Each prefix run is then analysed (candidates and labels, for the early warning) and
summarised by `crosscoder.analysis.trajectory.stats` (per-checkpoint decoder geometry and the trait signal). Finished runs
are reused when the benchmark is resumed.
"""

from __future__ import annotations

import dataclasses
import gc
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

QUICK = ["data.n_tokens=3000", "trainer.steps=200", "trainer.batch_size=256", "crosscoder.n_latents=512",
         "trainer.warmup_steps=20", "trainer.l1_warmup_steps=40"]  # fmt: skip
"""The `--quick` scale, fixed from the cost of one core before any series was scored: 3,000 tokens per model (about
750 assistant tokens for the mean shift), 200 steps of 256 rows (17 passes over the prefix's rows), 512 latents.
Each model is harvested once per scale (the base once for all series) and every prefix crosscoder (30 for the five
shipped series) is fitted at this size."""


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
    """Analysis and statistics of this prefix."""
    analysis_seconds: float = 0.0
    """The analysis alone (candidates and labels)."""


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


def persona_unit(trait: Any, hook: str, base: Any = None) -> torch.Tensor:
    """The base model's unit persona vector of `trait` at `hook` (examples source; cached on disk); `base` is the
    loaded base model (loaded here when None)."""
    from crosscoder.models import load_model
    from crosscoder.personas.vectors import compute_persona_vectors

    base = base or load_model(ModelSpec(source="smollm2-135m-instruct", name="base"))
    v = compute_persona_vectors(base, trait, source="examples").for_hook(hook)
    return v / v.norm()


def harvest_each(cfg: Any) -> tuple[list[str | Path], list[dict[str, Any]]]:
    """Every model of `cfg`'s set harvested alone on the run's tokens, or its complete cache reused (found from the
    model's fingerprint, no model loaded): the base of every series is harvested once, each checkpoint once.
    Returns the single-model cache folders and the model records, in set order."""
    from crosscoder.data.api import prepare_activations
    from crosscoder.data.distributed_harvest import open_complete_cache
    from crosscoder.launch.rundata import model_records
    from crosscoder.models import load_model
    from crosscoder.models.fingerprint import fingerprints
    from crosscoder.pipeline import resolve_model_spec

    folders: list[str | Path] = []
    records: list[dict[str, Any]] = []
    for spec in cfg.models.models:
        resolved = resolve_model_spec(spec)
        prints = fingerprints([resolved])
        acts = open_complete_cache(prints, cfg.data, verify=False) if prints is not None else None
        if acts is not None and prints is not None:
            records += model_records(prints)
        else:
            t0 = time.perf_counter()
            model = load_model(resolved)
            acts = prepare_activations([model], cfg.data)
            records += model_records([model])
            log.info("harvested %s in %.0f s", model.name, time.perf_counter() - t0)
            del model
            gc.collect()
        assert acts.path is not None, "the trajectory benchmark needs on-disk caches (data.on_the_fly=false)"
        folders.append(acts.path)
    return folders, records


def train_prefixes(cfg: Any, root: Path) -> tuple[list[Path], Any, dict[str, float]]:
    """Harvest every model of the series once (`harvest_each`), then train (or reuse) one crosscoder per prefix on
    the merged cache of its models (`crosscoder.data.merge`); returns (run dirs, the whole series' activations,
    seconds per stage: harvest, merge, train)."""
    from crosscoder.data.api import ActivationSet
    from crosscoder.data.merge import merge_caches
    from crosscoder.pipeline import run_train

    t0 = time.perf_counter()
    folders, records = harvest_each(cfg)
    seconds = {"harvest": time.perf_counter() - t0, "merge": 0.0, "train": 0.0}
    runs, acts = [], None
    for k in range(1, len(records)):
        run_dir = root / f"upto-c{k}"
        runs.append(run_dir)
        t1 = time.perf_counter()
        acts = ActivationSet.open(merge_caches(folders[: k + 1], cfg.data), cfg.data, verify=False)
        t2 = time.perf_counter()
        seconds["merge"] += t2 - t1
        if (run_dir / "final").is_dir() and (run_dir / "run.json").is_file():
            log.info("reusing %s", run_dir)
            continue
        cfg_k = dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, models=cfg.models.models[: k + 1]))
        run_train(cfg_k, run_dir, prepared=(acts, records[: k + 1]))
        seconds["train"] += time.perf_counter() - t2
        log.info(
            "trained the crosscoder on %s in %.0f s", [r["name"] for r in records[: k + 1]], time.perf_counter() - t2
        )
    return runs, acts, seconds


def analyse_prefix(
    run_dir: Path, trait: str, config_dir: Path, analyze_overrides: list[str], models: list[Any] | None = None
) -> tuple[bool, list[str | None]]:
    """Candidates and labels of a prefix run (configs/analyze.yaml with `analyze_overrides`, see
    `analyze_overrides`): whether a candidate is labelled with `trait`, and the top candidates' labels."""
    from crosscoder.analysis.run import run_analysis
    from crosscoder.config import compose_analyze

    ov = [f"run_dir={run_dir}", *analyze_overrides]
    result = run_analysis(compose_analyze(config_dir, ov), models=models)
    labels = [c.label for c in result.candidates]
    return trait in labels, labels[:10]


QUICK_ANALYZE = ["next_token.n_candidates=5"]
"""The `--quick` analysis scale: the next-token continuations (and so the said signal of the labels) for the top 5
candidates instead of 10; fixed before any series was scored, for cost (next-token generation was the largest
analysis stage in the recovery benchmark's runs)."""


def analyze_overrides(extra: list[str], quick: bool = False) -> list[str]:
    """The prefix analyses' settings: what flags a persona (ranking, evidence, labels, the series candidates) as
    configs/analyze.yaml has it (at `QUICK_ANALYZE` scale when `quick`); steering, splice metrics, dashboards, the
    baseline report, the HTML report and the exports, which no benchmark number reads, are off. `extra` (--analyze)
    comes last."""
    return ["steering.enabled=false", "splice.enabled=false", "report.enabled=false", "dashboards.enabled=false",
            "evidence.baseline=false", "export.saelens=false", "export.wandb_mode=disabled",
            *(QUICK_ANALYZE if quick else []), *extra]  # fmt: skip


def analyse_prefixes(runs: list[Path], trait: str, unit_D: torch.Tensor, config_dir: Path, overrides: list[str],
                     models: list[Any]) -> list[PrefixRun]:  # fmt: skip
    """Analysis (flag, labels) and series statistics of every prefix run, in order; `models` are the whole series'
    loaded models (`load_run_models` of the last prefix), each prefix analysed with its own first k+1."""
    out = []
    for k, run_dir in enumerate(runs, start=1):
        t0 = time.perf_counter()
        flagged, labels = analyse_prefix(run_dir, trait, config_dir, overrides, models[: k + 1])
        t1 = time.perf_counter()
        stats = prefix_stats(run_dir, unit_D, trait)
        out.append(PrefixRun(k, run_dir, stats, flagged, labels, time.perf_counter() - t0, t1 - t0))
        log.info(
            "prefix c%d: analysis %.0f s, statistics %.0f s, flagged %s", k, t1 - t0, time.perf_counter() - t1, flagged
        )
    return out


def prefix_stats(run_dir: Path, unit_D: torch.Tensor, trait: str) -> SeriesStats:
    """`series_stats` of a prefix run on its own cache."""
    from crosscoder.analysis.trajectory.stats import series_stats
    from crosscoder.data.api import ActivationSet
    from crosscoder.xc.model import Crosscoder

    info = read_json(run_dir / "run.json")
    cc = Crosscoder.load(run_dir / "final")
    acts = ActivationSet.open(info["activations"], verify=False)
    return series_stats(cc, acts, list(info["model_names"]), {trait: unit_D})
