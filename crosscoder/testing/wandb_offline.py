"""Read an offline W&B run back from disk: what a run logged, for tests and for checking a run before `wandb sync`.

An offline run folder (`<dir>/wandb/offline-run-<time>-<id>/`) keeps everything in its transaction log
`run-<id>.wandb`: a LevelDB-style log (a 7-byte header `:W&B`, magic 0xBEE1, version; then 32 KiB blocks of chunks,
each `crc32 (4) | length (2) | type (1) | data`, type 1 = full, 2/3/4 = first/middle/last piece of a record) whose
records are `wandb_internal_pb2.Record` protobufs. `read_offline_run` folds them into an `OfflineRun`: the run record
(name, group, job_type, project), the config, the history rows, the summary, the logged and the used artifacts.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crosscoder.errors import DataError

_HEADER = struct.Struct("<4sHB")
_CHUNK = struct.Struct("<IHB")
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What an offline W&B run recorded."""

    folder: Path
    id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    project: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[tuple[str, str]] = field(default_factory=list)
    """(name, type) of every logged artifact."""
    used_artifacts: list[str] = field(default_factory=list)
    """Names of the artifacts the run declared as inputs (`use_artifact`)."""
    complete: bool = False
    """The log ends with the run's exit record (W&B finished writing it)."""


def _records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if len(data) < _HEADER.size or _HEADER.unpack_from(data)[:2] != (b":W&B", 0xBEE1):
        raise DataError(f"{path} is not a W&B transaction log; pass an offline-run-* folder")
    out, pending, pos = [], b"", _HEADER.size
    while pos + _CHUNK.size <= len(data):
        if _BLOCK - pos % _BLOCK < _CHUNK.size:  # a block's tail too short for a chunk header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = _CHUNK.unpack_from(data, pos)
        pos += _CHUNK.size
        if pos + length > len(data):  # a chunk still being written
            break
        chunk, pos = data[pos : pos + length], pos + length
        if kind == 0 and length == 0:
            break
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            out.append(pending + chunk)
    return out


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def _fold(folder: Path, log: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    run = OfflineRun(folder)
    for blob in _records(log):
        rec = pb.Record()  # type: ignore[attr-defined]  # generated protobuf module without stubs
        rec.ParseFromString(blob)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.id, run.name, run.group, run.job_type, run.project = (
                r.run_id, r.display_name, r.run_group, r.job_type, r.project)  # fmt: skip
            run.config.update({_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            run.config.update({_key(i): json.loads(i.value_json) for i in rec.config.update})
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            run.summary.update({_key(i): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "artifact":
            run.artifacts.append((rec.artifact.name, rec.artifact.type))
        elif kind == "use_artifact":
            run.used_artifacts.append(rec.use_artifact.name)
        elif kind == "exit":
            run.complete = True
    # wandb stores each config key as {"value": ...}
    run.config = {k: v["value"] if isinstance(v, dict) and set(v) == {"value"} else v for k, v in run.config.items()}
    return run


def read_offline_run(folder: str | Path, wait_s: float = 60.0) -> OfflineRun:
    """The run logged in an `offline-run-*` folder (see the module docstring). W&B's service process may still be
    writing the log after `run.finish()` returns (or not have created it yet), so this waits up to `wait_s` for
    the log and its exit record."""
    folder = Path(folder)
    deadline = time.monotonic() + wait_s
    while not (logs := sorted(folder.glob("run-*.wandb"))):  # the service may not have created it yet either
        if time.monotonic() > deadline:
            raise DataError(f"{folder} holds no run-*.wandb log; pass a wandb/offline-run-* folder")
        time.sleep(0.2)
    while True:
        run = _fold(folder, logs[0])
        if run.complete or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def offline_runs(root: str | Path) -> list[OfflineRun]:
    """Every offline run under `root` (any depth), oldest first."""
    folders = sorted(Path(root).rglob("offline-run-*"), key=lambda p: p.name)
    return [read_offline_run(f) for f in folders if f.is_dir()]
