"""Open what an analysis reads: the run folder, its crosscoder, its activation cache, its models and the traits.

Every check runs before expensive work and fails with a one-line error naming the problem and the fix.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosscoder.analysis.config import AnalyzeConfig
from crosscoder.errors import ConfigError, DataError, ModelError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from crosscoder.data.protocols import Activations
    from crosscoder.models.load import LoadedModel
    from crosscoder.personas.traits import Trait
    from crosscoder.xc.model import Crosscoder


def resolve_run_dir(cfg: AnalyzeConfig) -> Path:
    """The run folder to analyse; refuses folders without a finished checkpoint (final/)."""
    if cfg.run_dir is None:
        from crosscoder.runs import latest_run

        return latest_run(Path(cfg.runs_root))
    run = Path(cfg.run_dir).expanduser()
    if not run.is_dir():
        raise DataError(
            f"run folder {run} does not exist; pass run_dir=<a folder under runs/> or omit it for the latest run"
        )
    if not (run / "final").is_dir():
        raise DataError(
            f"run folder {run} has no finished checkpoint (final/ is missing); finish or resume training (trainer.resume=true) first"
        )
    if not (run / "run.json").is_file():
        raise DataError(f"run folder {run} has no run.json (models, hooks, cache); it was not written by train.py")
    return run


def load_crosscoder(run: Path, device: str) -> Crosscoder:
    from crosscoder.xc.model import Crosscoder

    return Crosscoder.load(run / "final", device=device)


def open_activations(cfg: AnalyzeConfig, info: dict[str, Any], cc: Crosscoder) -> Activations:
    """Open the run's activation cache (or cfg.activations) and check it matches the crosscoder."""
    from crosscoder.data.api import ActivationSet

    path = cfg.activations or info.get("activations")
    if not path:
        raise DataError("run.json records no activation cache (on-the-fly run?); pass activations=<cache folder>")
    if not Path(path).is_dir():
        raise DataError(f"activation cache {path} not found; pass activations=<cache folder> (it may have moved)")
    acts = ActivationSet.open(path, verify=False)
    check_activations(acts, info, cc)
    if cfg.verify != "off":  # a corrupt shard would silently change the latent table
        from crosscoder.data.cache import verify_cache

        n = verify_cache(Path(path), acts.manifest, sample=cfg.verify == "sampled")
        log.info("activation cache %s: %d of %d shards verified (verify=%s)", path, n, len(acts.manifest.shards),
                 cfg.verify)  # fmt: skip
    return acts


def check_activations(acts: Activations, info: dict[str, Any], cc: Crosscoder) -> None:
    c = cc.cfg
    names = info.get("model_names") or acts.model_names
    if list(acts.model_names) != list(names) or len(acts.model_names) != c.n_models:
        raise DataError(
            f"activation cache holds models {list(acts.model_names)} but the crosscoder was trained on {list(names)}; pass the run's cache"
        )
    if (
        list(acts.hooks) != list(info.get("hooks", acts.hooks))
        or len(acts.hooks) != c.n_hooks
        or acts.d_model != c.d_model
    ):
        raise DataError(
            f"activation cache hooks {list(acts.hooks)} / d_model {acts.d_model} do not match the crosscoder ({c.n_hooks} hooks, d_model {c.d_model})"
        )


def load_run_models(info: dict[str, Any], device: str) -> list[LoadedModel]:
    """Load the run's models (the concrete specs run.json records) and refuse any whose weights changed since
    training."""
    from crosscoder.models import ModelSpec, load_model

    models = []
    for i, spec in enumerate(info["models"]):
        m = load_model(ModelSpec(**spec), device=device)
        want = (info.get("content_hashes") or [None] * len(info["models"]))[i]
        if want and m.content_hash != want:
            raise ModelError(
                f"model {m.name} ({spec['source']}) is not the one the crosscoder was trained on (weights changed); restore it or retrain"
            )
        models.append(m)
    return models


def check_run_model_files(info: dict[str, Any]) -> None:
    """Before any work: refuse a run's local model folder whose weights changed since training (hashed from its
    files, cached), and damaged weight files. Models that are not local folders are checked when they load."""
    from crosscoder.models import ModelSpec
    from crosscoder.models.hf import adapter_hash, check_local_files, source_hash

    hashes = info.get("content_hashes") or [None] * len(info["models"])
    for spec_dict, want in zip(info["models"], hashes, strict=False):
        spec = ModelSpec(**spec_dict)
        folder = Path(spec.source).expanduser()
        if not want or spec.resolved_kind() != "hf" or not folder.is_dir():
            continue
        check_local_files(spec)
        got = source_hash(spec, str(folder), True)
        if spec.adapter:
            got = adapter_hash(got, spec.adapter)
        if got != want:
            raise ModelError(
                f"model {spec.label} ({spec.source}) is not the one the crosscoder was trained on (weights changed); "
                "restore it or retrain"
            )


def select_traits(cfg: AnalyzeConfig) -> dict[str, Trait]:
    """The traits to label against: the shipped library and `labels.trait_dirs`, narrowed to `labels.traits`; without
    `labels.hints` their optional keywords and examples are dropped."""
    from crosscoder.personas.traits import load_traits

    traits = load_traits(list(cfg.labels.trait_dirs), include_shipped=cfg.labels.include_shipped_traits)
    if cfg.labels.traits:
        unknown = [t for t in cfg.labels.traits if t not in traits]
        if unknown:
            raise ConfigError(
                f"analyze.labels.traits: unknown trait {unknown[0]!r}; known: {', '.join(sorted(traits))}"
            )
        traits = {t: traits[t] for t in cfg.labels.traits}
    if not cfg.labels.hints:  # plain persona-vectors files: instructions and questions only
        traits = {t: tr.plain() for t, tr in traits.items()}
    return traits


def lens_hook_index(cfg: AnalyzeConfig, hooks: list[str]) -> int:
    if cfg.lens_hook is None:
        return len(hooks) - 1
    if cfg.lens_hook not in hooks:
        raise ConfigError(f"analyze.lens_hook: {cfg.lens_hook!r} is not one of the run's hooks {hooks}")
    return hooks.index(cfg.lens_hook)
