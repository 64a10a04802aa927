"""A checkpoint series as a model set: its step labels, and the checks before any expensive work.

A series is base -> c1 -> ... -> cN in training order. Each checkpoint's step comes from the list the user gives,
or else from the ``crosscoder_meta.json`` an organism build writes beside every checkpoint (the base is step 0).
Refused, in one line naming the checkpoint: step labels that are missing or not increasing, and models that do not
share the base's tokenizer or hooks (`crosscoder.models.check_model_set`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crosscoder.analysis.trajectory.forecast import check_steps
from crosscoder.errors import ConfigError
from crosscoder.io import read_json
from crosscoder.models.hf import ADAPTER_META
from crosscoder.models.spec import ModelSpec


def recorded_step(spec: ModelSpec) -> int | None:
    """The training step an organism build recorded for this checkpoint (None when there is no record).

    `spec` is concrete (as run.json records it; `crosscoder.pipeline.resolve_model_spec` resolves organism: names)."""
    where = spec.adapter or (spec.source if spec.resolved_kind() == "hf" else None)
    meta = Path(where).expanduser() / ADAPTER_META if where else None
    if meta is None or not meta.is_file():
        return None
    step = read_json(meta).get("step")
    return int(step) if isinstance(step, int) else None


def series_steps(specs: list[ModelSpec], names: list[str], given: list[float] | None = None) -> list[float]:
    """Step labels of a series (base first): `given`, else recorded by the organism build; checked increasing."""
    if len(specs) < 2:
        raise ConfigError(f"a checkpoint series needs a base and at least one checkpoint, got {len(specs)} model(s)")
    if given is not None:
        if len(given) != len(specs):
            raise ConfigError(
                f"{len(given)} step labels for {len(specs)} models ({', '.join(names)}); give one per model"
            )
        steps = [float(s) for s in given]
    else:
        found: list[float] = []
        for i, (spec, name) in enumerate(zip(specs, names, strict=True)):
            step = recorded_step(spec)
            if step is None and i > 0:
                raise ConfigError(
                    f"checkpoint {name}: no recorded training step ({ADAPTER_META} missing); give the series' steps "
                    "explicitly (one per model, base first)"
                )
            found.append(float(step or 0))
        steps = found
    return check_steps(steps, names=names).tolist()


def check_series(models: list[Any], hooks: list[str], steps: list[float]) -> None:
    """Refuse a series whose models cannot be diffed (tokenizer, hooks, width) or whose steps do not increase."""
    from crosscoder.models import check_model_set

    check_model_set(models, hooks)
    check_steps(steps, names=[m.name for m in models])
