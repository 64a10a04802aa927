"""Open a training run for the diffing methods and run them, each into ``<run>/methods/<method>.json``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from crosscoder.analysis.config import AnalyzeConfig
from crosscoder.analysis.methods.base import MethodResult, MethodRun, get_method
from crosscoder.analysis.methods.config import MethodsConfig
from crosscoder.errors import DataError
from crosscoder.io import atomic_save_safetensors, atomic_write_json, read_json

if TYPE_CHECKING:
    from crosscoder.data.protocols import Activations
    from crosscoder.models.load import LoadedModel

log = logging.getLogger(__name__)


def open_method_run(
    analysis: AnalyzeConfig, cfg: MethodsConfig, *, acts: Activations | None = None,
    models: list[LoadedModel] | None = None,
) -> MethodRun:  # fmt: skip
    """A `MethodRun` over `analysis.run_dir` (its run.json, cache, traits); models load on first use."""
    from crosscoder.analysis.run.inputs import lens_hook_index, load_run_models, resolve_run_dir, select_traits

    run = resolve_run_dir(analysis)
    info = read_json(run / "run.json")
    if acts is None:
        from crosscoder.data.api import ActivationSet

        path = analysis.activations or info.get("activations")
        if not path or not Path(path).is_dir():
            raise DataError(f"activation cache {path!r} of {run} not found; pass activations=<cache folder>")
        acts = ActivationSet.open(path, verify=False)
    names = list(info.get("model_names") or acts.model_names)
    if list(acts.model_names) != names:
        raise DataError(
            f"activation cache holds models {list(acts.model_names)}, the run {names}; pass the run's cache"
        )
    hooks = list(acts.hooks)
    return MethodRun(cfg=cfg, analysis=analysis, run=run, info=info, acts=acts, names=names, hooks=hooks,
                     lens_idx=lens_hook_index(analysis, hooks), out_dir=run / "methods",
                     traits=select_traits(analysis), load_models=lambda: load_run_models(info, analysis.device),
                     models=models)  # fmt: skip


def run_method(run: MethodRun, name: str) -> MethodResult:
    """Run one method on `run` (or record why it cannot apply); writes its JSON and its directions."""
    method = get_method(name)
    result = MethodResult(method=name, run_dir=str(run.run))
    reason = method.cannot_apply(run)
    if reason is not None:
        result.skipped = reason
        log.warning("method %s skipped on %s: %s", name, run.run, reason)
    else:
        t0 = time.perf_counter()
        method.fit(run, result)
        result.seconds = time.perf_counter() - t0
        log.info("method %s: %d candidates in %.1f s, top labels %s", name, len(result.candidates), result.seconds,
                 result.labels()[:5])  # fmt: skip
    save_result(run.out_dir, result)
    return result


def run_methods(run: MethodRun) -> list[MethodResult]:
    """Every method of `run.cfg.methods`, in order."""
    return [run_method(run, name) for name in run.cfg.methods]


def save_result(out_dir: Path, result: MethodResult) -> None:
    """``<out_dir>/<method>.json`` and, where candidates carry directions, ``<method>.directions.safetensors``
    (``direction_<rank>`` tensors, raw residual space at the lens hook)."""
    atomic_write_json(out_dir / f"{result.method}.json", result.to_json())
    dirs = {f"direction_{c.rank}": c.direction_D.detach().float().cpu().contiguous()
            for c in result.candidates if c.direction_D is not None}  # fmt: skip
    if dirs:
        atomic_save_safetensors(out_dir / f"{result.method}.directions.safetensors", dirs)
