"""AnalyzeConfig validation and documentation."""

from __future__ import annotations

import ast
import dataclasses
import inspect

import pytest
from omegaconf import OmegaConf

from crosscoder.analysis.config import AnalyzeConfig
from crosscoder.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"exclusive_threshold": 0.4}, "analyze.exclusive_threshold"),
        ({"shifted_cosine": 1.5}, "analyze.shifted_cosine"),
        ({"batch_size": 0}, "analyze.batch_size"),
        ({"n_candidates": -1}, "analyze.n_candidates"),
        ({"label_weights": [1.0, 1.0]}, "analyze.label_weights"),
        ({"label_weights": [0.0, 0.0, 0.0]}, "analyze.label_weights"),
        ({"steer_strengths": []}, "analyze.steer_strengths"),
        ({"device": "gpu"}, "analyze.device"),
        ({"nu_err_max": -0.1}, "analyze.nu_err_max"),
        ({"run_dir": "  "}, "analyze.run_dir"),
        ({"label_said_full": 0.0}, "analyze.label_said_full"),
        ({"n_next_token": 0}, "analyze.label_said"),  # the said signal reads the continuations
        ({"next_token_continue": 0}, "analyze.label_said"),
    ],
)
def test_invalid_values_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as err:
        AnalyzeConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_every_field_has_a_docstring() -> None:
    body = ast.parse(inspect.getsource(AnalyzeConfig)).body[0].body  # type: ignore[attr-defined]
    documented = {
        node.target.id  # type: ignore[union-attr]
        for node, nxt in zip(body, body[1:], strict=False)
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
    }
    assert {f.name for f in dataclasses.fields(AnalyzeConfig)} <= documented


def test_structured_config_roundtrip_runs_validation() -> None:
    conf = OmegaConf.merge(OmegaConf.structured(AnalyzeConfig), {"n_candidates": 7, "traits": ["pirate"]})
    cfg = OmegaConf.to_object(conf)
    assert isinstance(cfg, AnalyzeConfig) and cfg.n_candidates == 7 and cfg.traits == ["pirate"]
    bad = OmegaConf.merge(OmegaConf.structured(AnalyzeConfig), {"exclusive_threshold": 2.0})
    with pytest.raises(ConfigError):
        OmegaConf.to_object(bad)
