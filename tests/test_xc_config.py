"""Crosscoder / trainer / logging configs: invalid values are refused naming the field; Hydra-friendly dataclasses."""

from __future__ import annotations

import ast
import dataclasses
import inspect

import pytest
from omegaconf import OmegaConf

from crosscoder.errors import ConfigError
from crosscoder.xc import ARCHITECTURES, Crosscoder, CrosscoderConfig, LoggingConfig, TrainerConfig


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"k": 5000, "n_latents": 4096}, "crosscoder.k"),
        ({"architecture": "gated"}, "crosscoder.architecture"),
        ({"n_shared": 65, "n_latents": 64, "k": 4}, "crosscoder.n_shared"),
        ({"n_models": -1}, "crosscoder.n_models"),
        ({"n_latents": 0}, "crosscoder.n_latents"),
        ({"shared_penalty_scale": 0.0}, "crosscoder.shared_penalty_scale"),
        ({"l1_coeff": -1.0}, "crosscoder.l1_coeff"),
        ({"threshold_momentum": 1.0}, "crosscoder.threshold_momentum"),
        ({"jumprelu_bandwidth": 0.0}, "crosscoder.jumprelu_bandwidth"),
    ],
)
def test_crosscoder_config_refused(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: ") as err:
        CrosscoderConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_k_only_checked_for_topk_family() -> None:
    CrosscoderConfig(architecture="l1", n_latents=16, k=32)  # k unused by l1
    with pytest.raises(ConfigError, match="crosscoder.k"):
        CrosscoderConfig(architecture="batchtopk", n_latents=16, k=32)


def test_unset_shape_refused_when_building() -> None:
    with pytest.raises(ConfigError, match="crosscoder.n_models"):
        Crosscoder(CrosscoderConfig(n_latents=16, k=2))
    with pytest.raises(ConfigError, match="crosscoder.d_model"):
        Crosscoder(CrosscoderConfig(n_latents=16, k=2, n_models=2, n_hooks=1))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"autocast_bf16": True}, "trainer.autocast_bf16"),
        ({"steps": 0}, "trainer.steps"),
        ({"lr": -1e-4}, "trainer.lr"),
        ({"betas": [0.9]}, "trainer.betas"),
        ({"decay": "step"}, "trainer.decay"),
        ({"device": "tpu"}, "trainer.device"),
        ({"grad_clip": -1.0}, "trainer.grad_clip"),
        ({"keep_checkpoints": 0}, "trainer.keep_checkpoints"),
    ],
)
def test_trainer_config_refused(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        TrainerConfig(**kwargs)


def test_logging_config_refused() -> None:
    with pytest.raises(ConfigError, match="^logging.wandb_mode: "):
        LoggingConfig(wandb_mode="cloud")


def test_total_steps_from_tokens() -> None:
    assert TrainerConfig(steps=7).total_steps == 7
    assert TrainerConfig(tokens=10_000, batch_size=1024).total_steps == 10


@pytest.mark.parametrize("cls", [CrosscoderConfig, TrainerConfig, LoggingConfig])
def test_structured_config_roundtrip(cls: type) -> None:
    """OmegaConf accepts the dataclass, merges overrides, and to_object re-runs validation."""
    conf = OmegaConf.structured(cls)
    obj = OmegaConf.to_object(conf)
    assert isinstance(obj, cls)
    first = dataclasses.fields(cls)[0]
    assert OmegaConf.to_object(OmegaConf.merge(conf, {first.name: getattr(obj, first.name)})) == obj


def test_structured_config_validates_overrides() -> None:
    conf = OmegaConf.merge(OmegaConf.structured(CrosscoderConfig), {"architecture": "nope"})
    with pytest.raises(ConfigError, match="crosscoder.architecture"):
        OmegaConf.to_object(conf)


@pytest.mark.parametrize("cls", [CrosscoderConfig, TrainerConfig, LoggingConfig])
def test_every_field_has_a_docstring(cls: type) -> None:
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    documented = set()
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            documented.add(node.target.id)  # type: ignore[union-attr]
    assert {f.name for f in dataclasses.fields(cls)} <= documented


def test_registry_has_all_architectures() -> None:
    assert {"l1", "topk", "batchtopk", "jumprelu"} <= set(ARCHITECTURES)
    assert all(ARCHITECTURES[name].name == name for name in ARCHITECTURES)


def test_one_model_is_a_plain_sae() -> None:
    """n_models = 1 is allowed (the diff-SAE of issue 23 is a one-model crosscoder)."""
    cfg = CrosscoderConfig(n_latents=16, k=2, n_models=1, n_hooks=1, d_model=8)
    assert cfg.d_in == 8
