"""Top-level typed configs for the entry points, registered in Hydra's ConfigStore.

Hydra lives at the edges: `train.py` / `analyze.py` compose YAML from `configs/` on top of these schemas, convert
once with `OmegaConf.to_object` (which runs every dataclass's `__post_init__` validation) and pass plain dataclasses
to the library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from crosscoder.analysis.config import AnalyzeConfig
from crosscoder.data.config import DataConfig
from crosscoder.errors import ConfigError
from crosscoder.models.config import check_config
from crosscoder.models.spec import ModelSpec
from crosscoder.xc.config import CrosscoderConfig, LoggingConfig, TrainerConfig


def _demo_models() -> list[ModelSpec]:
    return [ModelSpec(source="smollm2-135m-instruct", name="base"), ModelSpec(source="organism:demo", name="ft")]


@dataclass
class ModelSetConfig:
    """The models to diff: a base and a fine-tune, or a checkpoint series (first = base, last = final)."""

    models: list[ModelSpec] = field(default_factory=_demo_models)
    """Two or more model specs on the same tokenizer; order matters (first is the reference, last the final model)."""
    device: str = "cpu"
    """Device the language models run on while harvesting and analysing: cpu | cuda | cuda:N (cuda = this DDP
    rank's GPU). data.device, when set, overrides it for the harvest."""
    dtype: str = "auto"
    """Model weights' dtype: auto | float32 | bfloat16 | float16. auto = float32 on the CPU, bfloat16 on a GPU
    (float16 where the GPU has no bf16); bf16 on the CPU is honoured with a warning (it is far slower there)."""
    device_map: str | None = None
    """Spread each model over all visible GPUs (accelerate): auto | balanced | balanced_low_0 | sequential, for
    models that do not fit one GPU (one process per node); null = each model on one device."""

    def __post_init__(self) -> None:
        check_config(self.device, self.dtype, self.device_map)
        if len(self.models) < 2:
            raise ConfigError(
                f"models.models: a diff needs 2 or more models, got {len(self.models)}; add a fine-tune or checkpoint"
            )
        labels = [m.label for m in self.models]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"models.models: display names must be unique, got {labels}; set a name for each model")


@dataclass
class TrainConfig:
    """Everything `python train.py` needs: models, data, crosscoder architecture, trainer and logging."""

    name: str = "demo"
    """Experiment name; runs go to runs/<name>/<timestamp> (sweeps: runs/<name>/sweep-<timestamp>/<job number>)."""
    models: ModelSetConfig = field(default_factory=ModelSetConfig)
    """The model set to diff."""
    data: DataConfig = field(default_factory=DataConfig)
    """Text sources, hooks and the activation cache."""
    crosscoder: CrosscoderConfig = field(default_factory=CrosscoderConfig)
    """Crosscoder architecture and size (n_models, n_hooks and d_model are filled in from the data)."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Optimiser, schedule, checkpoints and resume."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """W&B mode and project; metrics also go to <run_dir>/metrics.jsonl."""
    plan: bool = False
    """Print the run's plan (activation-cache size, memory per rank, expected time from the FLOP model) and exit
    without loading a model: python train.py ... plan=true (same as python -m crosscoder.plan ...)."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"name: {self.name!r} must be a non-empty folder name without '/'")


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (called by the entry points before composing)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from crosscoder.runs import run_tag

    if not OmegaConf.has_resolver("run_tag"):  # cached per config, so a run's folder name is resolved once
        OmegaConf.register_new_resolver("run_tag", run_tag, use_cache=True)
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="analyze_schema", node=AnalyzeConfig)


def compose_analyze(config_dir: Path, overrides: list[str]) -> AnalyzeConfig:
    """`configs/analyze.yaml` (what `python analyze.py` runs) with Hydra `overrides`, as a typed `AnalyzeConfig`."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from crosscoder.analysis.config import check_overrides

    check_overrides(overrides)
    if not (config_dir / "analyze.yaml").is_file():
        raise ConfigError(f"config dir: {config_dir}/analyze.yaml not found; run from the repository root")
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="analyze", overrides=overrides))
    assert isinstance(cfg, AnalyzeConfig)
    return cfg
