"""The methods benchmark's output file, rewritten after every method so a run that is cut off keeps its numbers.

``--out`` holds the records so far, the scale, ``complete`` and ``runs``: the training-run folder of every
(organism, architecture) already trained, so ``--resume`` neither retrains a crosscoder nor reruns a method whose
record is there. A resume at another scale (other training overrides or architectures) is refused: the records
would not be comparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crosscoder.errors import ConfigError
from crosscoder.io import atomic_write_json, read_json


@dataclass
class TrainedRun:
    """One crosscoder training run of the benchmark: its folder and training time."""

    run_dir: str
    train_seconds: float


def record_key(kind: str, trait: str | None, method: str, architecture: str | None) -> str:
    """The identity of a record: organism kind and trait ("none" on null pairs), method, architecture."""
    return f"{kind}/{trait or 'none'}/{method}/{architecture or '-'}"


@dataclass
class Progress:
    """Records and trained runs so far; `add` and `set_run` rewrite `out` at once (atomically)."""

    out: Path
    hook: str
    scale: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, TrainedRun] = field(default_factory=dict)
    """"kind/trait/architecture" -> the trained run."""

    @classmethod
    def open(cls, out: Path, hook: str, scale: dict[str, Any], resume: bool) -> Progress:
        """A fresh progress file, or (``resume``) the one at `out`, refused when its scale differs."""
        prog = cls(out, hook, scale)
        if not (resume and out.is_file()):
            return prog
        old = read_json(out)
        before = {k: v for k, v in old.get("scale", {}).items() if k != "runs"}
        if before and before != scale:
            raise ConfigError(f"--resume: {out} was written at scale {before}, not {scale}; use another --out")
        prog.records = list(old.get("records", []))
        prog.runs = {k: TrainedRun(**v) for k, v in old.get("runs", {}).items()}
        return prog

    def done(self, kind: str, trait: str | None, method: str, architecture: str | None) -> bool:
        key = record_key(kind, trait, method, architecture)
        return any(_key_of(r) == key for r in self.records)

    def run_of(self, kind: str, trait: str, architecture: str) -> TrainedRun | None:
        """The trained run of (organism, architecture) when its folder still holds the final crosscoder."""
        run = self.runs.get(f"{kind}/{trait}/{architecture}")
        return run if run is not None and (Path(run.run_dir) / "final").is_dir() else None

    def set_run(self, kind: str, trait: str, architecture: str, run: TrainedRun) -> None:
        self.runs[f"{kind}/{trait}/{architecture}"] = run
        self.write(complete=False)

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.write(complete=False)

    def write(self, complete: bool, seconds: float | None = None) -> None:
        body: dict[str, Any] = {"records": self.records, "hook": self.hook, "scale": self.scale,
                                "complete": complete, "runs": {k: vars(v) for k, v in self.runs.items()}}  # fmt: skip
        if seconds is not None:
            body["seconds"] = round(seconds, 1)
        atomic_write_json(self.out, body)


def _key_of(rec: dict[str, Any]) -> str:
    arch = rec.get("architecture") if str(rec["method"]).startswith("crosscoder") else None
    trait = rec.get("trait") if not rec.get("null_pair") else None
    return record_key(str(rec["organism_kind"]), trait, str(rec["method"]), arch)
