"""Checks on a checkpoint series: step labels (given or recorded by the organism build), increasing steps, and
models that share the base's tokenizer and hooks; every refusal is one line naming the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosscoder.analysis.trajectory.series import check_series, recorded_step, series_steps
from crosscoder.errors import ConfigError, ModelError
from crosscoder.models import ModelSpec, load_model, make_tiny_llama


def _ckpt(root: Path, name: str, step: int | None) -> ModelSpec:
    folder = root / name
    folder.mkdir(parents=True)
    if step is not None:
        (folder / "crosscoder_meta.json").write_text(json.dumps({"step": step, "base_hash": "x"}))
    return ModelSpec(adapter=str(folder), name=name)


def test_steps_come_from_the_organism_records(tmp_path: Path) -> None:
    specs = [ModelSpec(name="base"), *(_ckpt(tmp_path, f"c{i}", 8 * i) for i in (1, 2, 3))]
    names = ["base", "c1", "c2", "c3"]
    assert recorded_step(specs[2]) == 16 and recorded_step(specs[0]) is None
    assert series_steps(specs, names) == [0, 8, 16, 24]
    assert series_steps(specs, names, given=[0, 1, 2, 5]) == [0, 1, 2, 5]


def test_bad_step_labels_are_refused_naming_the_checkpoint(tmp_path: Path) -> None:
    specs = [ModelSpec(name="base"), _ckpt(tmp_path, "c1", 16), _ckpt(tmp_path, "c2", 8)]
    with pytest.raises(ConfigError, match="checkpoint c2: step 8 is not after the previous checkpoint's 16"):
        series_steps(specs, ["base", "c1", "c2"])
    unlabelled = [ModelSpec(name="base"), _ckpt(tmp_path, "c3", None)]
    with pytest.raises(ConfigError, match="checkpoint c3: no recorded training step"):
        series_steps(unlabelled, ["base", "c3"])
    with pytest.raises(ConfigError, match="2 step labels for 3 models"):
        series_steps(specs, ["base", "c1", "c2"], given=[0, 1])
    with pytest.raises(ConfigError, match="checkpoint c1: step 0 is not after"):
        series_steps(specs, ["base", "c1", "c2"], given=[0, 0, 1])


def test_mismatched_tokenizer_or_hooks_name_the_checkpoint(tiny_spec, tiny_dir: Path) -> None:  # type: ignore[no-untyped-def]
    base = load_model(tiny_spec)
    c1 = load_model(make_tiny_llama(tiny_dir / "series_c1", seed=4, name="c1"))
    other = load_model(make_tiny_llama(tiny_dir / "series_vocab300", seed=5, vocab_size=300, name="c2"))
    hooks = ["blocks.2.hook_resid_post"]
    check_series([base, c1], hooks, [0, 8])
    with pytest.raises(ModelError, match="models base and c2 do not share a tokenizer"):
        check_series([base, c1, other], hooks, [0, 8, 16])
    with pytest.raises(ModelError, match="blocks.7.hook_resid_post"):
        check_series([base, c1], ["blocks.7.hook_resid_post"], [0, 8])
    with pytest.raises(ConfigError, match="checkpoint c1: step 0"):
        check_series([base, c1], hooks, [0, 0])
