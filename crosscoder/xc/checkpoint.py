"""Resumable training checkpoints: weights, optimizer state and trainer state, written atomically, no pickle.

A checkpoint is a folder ``checkpoints/step_XXXXXXX/`` holding

* ``crosscoder.safetensors`` + ``config.json``: the crosscoder, as :meth:`Crosscoder.save` writes it;
* ``optimizer.safetensors``: the optimizer state tensors flattened as ``opt/<param name>/<key>`` plus trainer
  tensors as ``trainer/<name>`` (e.g. the dead-latent counters);
* ``state.json``: step, tokens, the optimizer's non-tensor state (param groups) and the run's configs.

The folder is assembled under a temporary name and renamed into place, so a crash never leaves a partial
checkpoint: every ``step_*`` folder is complete. Loading reads safetensors and JSON only.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from crosscoder.errors import DataError
from crosscoder.io import (
    atomic_save_safetensors,
    atomic_write_json,
    load_safetensors,
    read_json,
    verify_checksums,
    write_checksums,
)
from crosscoder.xc.model import Crosscoder

STATE_FORMAT = "crosscoder.xc.checkpoint/1"
_STEP_RE = re.compile(r"^step_(\d{7,})$")


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:07d}"


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as (step, folder), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_RE.match(p.name))]
    return sorted(found)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The most recent checkpoint folder, or None."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def optimizer_to_tensors(opt: torch.optim.Optimizer, names: dict[int, str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Flatten ``opt.state_dict()`` into named tensors and a JSON-able rest (param ids replaced by names)."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        pname = names[idx]
        for key, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"opt/{pname}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(pname, {})[key] = value
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, "params": [names[i] for i in g["params"]]}
        for g in sd["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_tensors(
    opt: torch.optim.Optimizer, names: dict[int, str], tensors: dict[str, Tensor], meta: dict[str, Any], source: str
) -> None:
    """Inverse of :func:`optimizer_to_tensors`; state tensors get each parameter's memory layout."""
    ids = {n: i for i, n in names.items()}
    try:
        groups = [{**g, "params": [ids[n] for n in g["params"]]} for g in meta["param_groups"]]
    except KeyError as err:
        raise DataError(
            f"{source}: optimizer state names unknown parameter {err}; it belongs to another model"
        ) from err
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("opt/"):
            continue
        _, pname, skey = key.split("/", 2)
        if pname not in ids:
            raise DataError(f"{source}: optimizer state for unknown parameter {pname}; it belongs to another model")
        state.setdefault(ids[pname], {})[skey] = value
    for pname, extra in meta.get("scalars", {}).items():
        state.setdefault(ids[pname], {}).update(extra)
    opt.load_state_dict({"state": state, "param_groups": groups})
    params = {i: p for i, p in enumerate(p for g in opt.param_groups for p in g["params"])}
    for i, st in opt.state.items():
        p = params[i] if isinstance(i, int) else i
        for skey, value in list(st.items()):
            if isinstance(value, Tensor) and value.shape == p.shape and value.stride() != p.stride():
                st[skey] = torch.empty_like(p).copy_(value)  # fused Adam needs matching strides


def save_checkpoint(
    root: Path,
    step: int,
    cc: Crosscoder,
    opt: torch.optim.Optimizer,
    names: dict[int, str],
    trainer_tensors: dict[str, Tensor],
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint ``step`` atomically (build in a temp folder, then rename); keep the ``keep`` newest."""
    final = step_dir(root, step)
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        cc.save(tmp)
        opt_tensors, opt_meta = optimizer_to_tensors(opt, names)
        opt_tensors.update({f"trainer/{k}": v.detach().cpu().contiguous() for k, v in trainer_tensors.items()})
        atomic_save_safetensors(tmp / "optimizer.safetensors", opt_tensors, metadata={"format": STATE_FORMAT})
        atomic_write_json(tmp / "state.json", {"format": STATE_FORMAT, "step": step, "optimizer": opt_meta, **state})
        write_checksums(tmp, f"delete {final} to resume from the previous checkpoint")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    for _, old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def clear_checkpoints(root: Path, remove: bool) -> None:
    """Forget the checkpoints of a run being overwritten (trainer.overwrite=true); only rank 0 deletes them."""
    if remove and root.is_dir():
        shutil.rmtree(root)


def load_checkpoint(
    folder: Path, cc: Crosscoder, opt: torch.optim.Optimizer, names: dict[int, str]
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Load weights and optimizer state in place; returns (state.json content, trainer tensors)."""
    verify_checksums(folder, "checkpoint")
    state = read_json(folder / "state.json")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DataError(
            f"{folder / 'state.json'} is not a crosscoder checkpoint state; delete {folder} to resume from the previous one"
        )
    saved_cfg = Crosscoder.read_config(folder)
    if saved_cfg != cc.cfg:
        diff = [k for k, v in vars(saved_cfg).items() if getattr(cc.cfg, k) != v]
        raise DataError(
            f"checkpoint {folder} was trained with a different crosscoder config (fields {diff}); "
            "use the same crosscoder settings or a new run_dir"
        )
    cc.load_tensors(load_safetensors(folder / "crosscoder.safetensors"), str(folder / "crosscoder.safetensors"))
    tensors = load_safetensors(folder / "optimizer.safetensors")
    optimizer_from_tensors(opt, names, tensors, state["optimizer"], str(folder / "optimizer.safetensors"))
    trainer_tensors = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("trainer/")}
    return state, trainer_tensors


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
