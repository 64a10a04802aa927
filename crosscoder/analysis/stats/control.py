"""A control fine-tune: set aside what any fine-tune of the same recipe changes, so persona latents rank first.

A narrow persona fine-tune changes more than the persona: answers get the length and shape of the training set, the
end of turn moves. Latents for those recipe effects carry a large share of the ft - base difference and can
outrank the persona's. A *control* fine-tune (the same recipe on the same prompts, without the persona) makes the
same recipe changes and not the persona's. Harvest the base and the control on the run's tokens, then analyse with
``control_activations=<that cache>``: every latent gets a control attribution (its decoder change read against the
control - base difference where it fires, `crosscoder.analysis.rank.attribution.control_attribution_SF`) and the ranking
score uses the attribution the control does not share.

    python -m crosscoder.analysis control RUN_DIR --source smollm2-135m-instruct --adapter <control LoRA folder>

prints the control cache folder (a normal activation cache: checksummed, resumable, reused when it exists).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosscoder.errors import DataError
from crosscoder.io import read_json

if TYPE_CHECKING:
    from crosscoder.data.protocols import Activations
    from crosscoder.models.spec import ModelSpec

log = logging.getLogger(__name__)


def harvest_control(run_dir: str | Path, control: ModelSpec, device: str = "cpu") -> Path:
    """Harvest the run's base model and `control` (a ModelSpec) on the run's tokens; returns the cache folder."""
    from crosscoder.analysis.run.inputs import load_run_models
    from crosscoder.data.api import prepare_activations
    from crosscoder.data.cache import read_manifest
    from crosscoder.data.config import DataConfig
    from crosscoder.models import load_model

    run = Path(run_dir)
    if not (run / "run.json").is_file():
        raise DataError(f"run folder {run} has no run.json; pass a folder written by train.py")
    info = read_json(run / "run.json")
    if not info.get("activations") or not Path(info["activations"]).is_dir():
        raise DataError(f"the activation cache of run {run} is missing; re-run its training (it rebuilds the cache)")
    manifest = read_manifest(Path(info["activations"]))
    data = dataclasses.replace(DataConfig(**manifest.data_config), cache_path=None, on_the_fly=False)  # own folder
    (base,) = load_run_models({**info, "models": info["models"][:1]}, device)  # refused if its weights changed
    ctrl = load_model(dataclasses.replace(control, name="control"), device=device)
    acts = prepare_activations([base, ctrl], data)
    assert acts.path is not None  # on_the_fly=False: always a cache folder
    return Path(acts.path)


def open_control(path: str | Path, acts: Activations) -> Any:
    """Open a control cache and check it pairs the run's base model with one control model at the same hooks."""
    from crosscoder.data.api import ActivationSet

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"control activations {folder} not found; make them with python -m crosscoder.analysis control")
    ctrl = ActivationSet.open(folder, verify=False)
    fix = "harvest the run's base and the control with python -m crosscoder.analysis control"
    if len(ctrl.model_names) != 2:
        raise DataError(f"control activations {folder} hold {len(ctrl.model_names)} models, not (base, control); {fix}")
    run_manifest = getattr(acts, "manifest", None)  # None for an in-memory set
    run_base = run_manifest.models[0].content_hash if run_manifest is not None and run_manifest.models else None
    if run_base and ctrl.manifest.models[0].content_hash != run_base:
        raise DataError(f"control activations {folder} were harvested with another base model; {fix}")
    if list(ctrl.hooks) != list(acts.hooks) or ctrl.d_model != acts.d_model or ctrl.n_rows != acts.n_rows:
        raise DataError(
            f"control activations {folder} ({ctrl.n_rows} rows, hooks {ctrl.hooks}) do not match the run's cache "
            f"({acts.n_rows} rows, hooks {acts.hooks}); {fix}"
        )
    return ctrl
