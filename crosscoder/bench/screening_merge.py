"""Merge screening-benchmark results of runs that split the work (by stage or by trait) into one result.

    python -m crosscoder.bench screening --merge a.json b.json --out merged.json

The runs must share the model, the hook and the fine-tuning recipe (``n_train``, ``steps``); a trait measured by
two runs of one stage is refused rather than silently overwritten. ``targets`` is recomputed on the union.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crosscoder.bench.screening_eval import targets
from crosscoder.errors import ConfigError
from crosscoder.io import read_json

SAME = ("benchmark", "model", "hook")
SAME_OPTIONS = ("n_train", "steps", "eval_tokens", "n_eval", "answer_tokens", "seed")
PER_TRAIT = ("vectors", "screening", "shift", "steering")


def _check_same(path: Path, first: dict[str, Any], other: dict[str, Any]) -> None:
    for key in SAME:
        if other.get(key) != first.get(key):
            raise ConfigError(f"{path}: field {key}: {other.get(key)!r}, the first result has {first.get(key)!r}")
    for key in SAME_OPTIONS:
        a, b = first["options"].get(key), other["options"].get(key)
        if a != b:
            raise ConfigError(f"{path}: field options.{key}: {b!r}, the first result has {a!r}; merge like recipes")


def merge_results(paths: list[Path]) -> dict[str, Any]:
    """The union of the results in `paths` (read in order), with `targets` recomputed."""
    if len(paths) < 2:
        raise ConfigError("--merge: give at least two result files")
    results = [read_json(p) for p in paths]
    out: dict[str, Any] = {k: results[0][k] for k in (*SAME, "machine") if k in results[0]}
    out["merged_from"] = [{"path": str(p), "options": r["options"], "seconds": r.get("seconds")}
                          for p, r in zip(paths, results, strict=True)]  # fmt: skip
    for path, res in zip(paths, results, strict=True):
        _check_same(path, results[0], res)
        for part in PER_TRAIT:
            merged = out.setdefault(part, {})
            for trait, row in (res.get(part) or {}).items():
                if trait in merged and part != "vectors":
                    raise ConfigError(f"{path}: field {part}.{trait}: already measured by an earlier file")
                merged[trait] = row
        scale = res.get("steering_scale")
        if scale:
            prev = out.setdefault("steering_scale", scale)
            if prev["resid_norm"] != scale["resid_norm"]:
                raise ConfigError(f"{path}: field steering_scale.resid_norm differs from an earlier file's")
            prev["vector_norms"] = {**prev["vector_norms"], **scale["vector_norms"]}
    for part in PER_TRAIT:
        if not out[part]:
            del out[part]
    out["seconds"] = {"total": round(sum((r.get("seconds") or {}).get("total", 0.0) for r in results), 1)}
    out["targets"] = targets(out)
    return out
