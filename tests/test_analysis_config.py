"""AnalyzeConfig validation and documentation."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from crosscoder.analysis.config import (
    MOVED_KEYS,
    AnalyzeConfig,
    EvidenceConfig,
    ExportConfig,
    LabelConfig,
    NextTokenConfig,
    RankConfig,
    ReportConfig,
    SpliceConfig,
    StatsConfig,
    SteeringConfig,
    check_overrides,
)
from crosscoder.errors import ConfigError

GROUPS = {"stats": StatsConfig, "rank": RankConfig, "labels": LabelConfig, "steering": SteeringConfig,
          "next_token": NextTokenConfig}  # fmt: skip


def nested(**kwargs: object) -> AnalyzeConfig:
    """An AnalyzeConfig from dotted keys ("rank.n_candidates"): each group built (and validated) on its own first."""
    top: dict[str, object] = {}
    groups: dict[str, dict[str, object]] = {}
    for key, value in kwargs.items():
        group, _, name = key.rpartition(".")
        (groups.setdefault(group, {}) if group else top)[name] = value
    return AnalyzeConfig(**top, **{g: GROUPS[g](**kw) for g, kw in groups.items()})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rank.exclusive_threshold": 0.4}, "analyze.rank.exclusive_threshold"),
        ({"rank.shifted_cosine": 1.5}, "analyze.rank.shifted_cosine"),
        ({"stats.batch_size": 0}, "analyze.stats.batch_size"),
        ({"rank.n_candidates": -1}, "analyze.rank.n_candidates"),
        ({"labels.weights": [1.0, 1.0]}, "analyze.labels.weights"),
        ({"labels.weights": [0.0, 0.0, 0.0]}, "analyze.labels.weights"),
        ({"steering.strengths": []}, "analyze.steering.strengths"),
        ({"device": "gpu"}, "analyze.device"),
        ({"rank.nu_err_max": -0.1}, "analyze.rank.nu_err_max"),
        ({"run_dir": "  "}, "analyze.run_dir"),
        ({"labels.said_full": 0.0}, "analyze.labels.said_full"),
        ({"next_token.n_candidates": 0}, "analyze.labels.said"),  # the said signal reads the continuations
        ({"next_token.continue_tokens": 0}, "analyze.labels.said"),
    ],
)
def test_invalid_values_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as err:
        nested(**kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("schema", [AnalyzeConfig, *GROUPS.values(), EvidenceConfig, SpliceConfig, ReportConfig,
                                    ExportConfig])  # fmt: skip
def test_every_field_has_a_docstring(schema: type) -> None:
    body = ast.parse(inspect.getsource(schema)).body[0].body  # type: ignore[attr-defined]
    documented = {
        node.target.id  # type: ignore[union-attr]
        for node, nxt in zip(body, body[1:], strict=False)
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
    }
    assert {f.name for f in dataclasses.fields(schema)} <= documented


def test_structured_config_roundtrip_runs_validation() -> None:
    conf = OmegaConf.merge(
        OmegaConf.structured(AnalyzeConfig), {"rank": {"n_candidates": 7}, "labels": {"traits": ["pirate"]}}
    )
    cfg = OmegaConf.to_object(conf)
    assert isinstance(cfg, AnalyzeConfig) and cfg.rank.n_candidates == 7 and cfg.labels.traits == ["pirate"]
    bad = OmegaConf.merge(OmegaConf.structured(AnalyzeConfig), {"rank": {"exclusive_threshold": 2.0}})
    with pytest.raises(ConfigError):
        OmegaConf.to_object(bad)


def test_flat_keys_of_the_earlier_config_name_their_new_place() -> None:
    with pytest.raises(
        ConfigError, match=r"analyze\.n_steer: this option moved to analyze\.steering\.n_candidates"
    ) as err:
        check_overrides(["run_dir=runs/x", "n_steer=3"])
    assert "steering.n_candidates=3" in str(err.value) and "\n" not in str(err.value)
    check_overrides(["run_dir=runs/x", "steering.n_candidates=3", "labels.threshold=0.4"])  # the new keys pass
    assert {k.split(".")[0] for k in MOVED_KEYS.values()} <= {f.name for f in dataclasses.fields(AnalyzeConfig)}
    for new in MOVED_KEYS.values():  # every new key exists in its group
        group, name = new.split(".")
        assert name in {f.name for f in dataclasses.fields(getattr(AnalyzeConfig(), group))}, new


def test_compose_refuses_a_flat_key(tmp_path: Path) -> None:
    from crosscoder.config import compose_analyze

    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(ConfigError, match=r"moved to analyze\.labels\.threshold"):
        compose_analyze(repo / "configs", ["label_threshold=0.4"])
    cfg = compose_analyze(repo / "configs", ["labels.threshold=0.4", f"run_dir={tmp_path}"])
    assert cfg.labels.threshold == 0.4 and cfg.steering.n_candidates == 3  # configs/analyze.yaml's laptop budget
