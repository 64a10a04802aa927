"""Where training runs live: the runs root, the `LATEST` pointer, finding the latest finished run, and keeping run
folders safe (issue 19): output locations checked before any work, one writer per run folder (a lock with stale-lock
detection), finished runs never retrained by accident, and default run folder names that cannot collide.

A run folder holds `final/` (the finished crosscoder), `run.json` (models, hooks, activation cache) and the training
logs (see docs/ARCHITECTURE.md). Every stage that needs "the latest run" asks here, so no stage imports another.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crosscoder.errors import ConfigError, DataError
from crosscoder.io import atomic_write_text

RUNS_ROOT = Path("runs")
"""Default root of the run folders (`python train.py` writes runs/<name>/<timestamp>-<tag>)."""
LOCK = ".lock"
"""The lock file a writer holds in a run folder: {"pid", "host", "started", "what"}."""


def runs_root_of(run_dir: Path) -> Path:
    """The root whose LATEST points at `run_dir`: RUNS_ROOT when the run lies under it, else the run's parent."""
    run, root = run_dir.resolve(), RUNS_ROOT.resolve()
    return RUNS_ROOT if run.is_relative_to(root) else run.parent


def update_latest(run_dir: Path) -> None:
    """Point <runs root>/LATEST at this run (a text file, so it works on every file system). The root is the
    default runs/ for runs under it, else the run folder's parent (never the working directory)."""
    atomic_write_text(runs_root_of(run_dir) / "LATEST", str(run_dir.resolve()) + "\n")


def latest_run(root: Path | None = None) -> Path:
    """The most recent finished run folder: <root>/LATEST if valid, else the newest folder holding final/."""
    root = RUNS_ROOT if root is None else root
    marker = root / "LATEST"
    if marker.is_file():
        candidate = Path(marker.read_text().strip())
        if (candidate / "final").is_dir():
            return candidate
    finished = sorted((p.parent for p in root.glob("**/final") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not finished:
        raise DataError(f"no finished training run under {root}/; run `python train.py` first or pass run_dir=<folder>")
    return finished[-1]


def check_output_dir(path: str | Path, what: str) -> Path:
    """Refuse, in one line and before any work, a folder that cannot be created or written: it (or a folder above
    it) is a file, or the nearest existing folder is not writable. Creates nothing."""
    path = Path(path).expanduser()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == path else f"lies under the file {probe}"
        raise ConfigError(f"{what}: {path} {where}; choose a folder path")
    try:
        if not os.access(probe, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
        with tempfile.TemporaryFile(dir=probe):  # what access() cannot tell: read-only mounts, /proc, ACLs
            pass
    except OSError as err:
        raise ConfigError(
            f"{what}: {probe} is not writable ({err.strerror}), so {path} cannot be written; choose a writable folder"
        ) from None
    return path


def check_output_file(path: str | Path, what: str) -> Path:
    """`check_output_dir` for a file's folder, and the file itself must not be a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{what}: {path} is a folder; give a file path")
    check_output_dir(path.parent if path.is_file() else path, what)
    return path


def check_run_state(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a run that would overwrite another before any work: a folder with checkpoints or a finished
    crosscoder needs resume=true (checkpoints) or overwrite=true; a finished run is never resumed unless
    overwrite=true (it would be retrained and replaced)."""
    finished = (run_dir / "final" / "crosscoder.safetensors").exists()
    has_ckpt = any((run_dir / "checkpoints").glob("step_*"))
    if finished and not overwrite:
        fix = "analyse it (python analyze.py run_dir=...), use a new run folder, or set trainer.overwrite=true to retrain it"
        raise ConfigError(f"trainer.resume: {run_dir} is a finished run (final/ exists); {fix}")
    if has_ckpt and not resume and not overwrite:
        raise ConfigError(
            f"trainer.resume: {run_dir} already holds checkpoints; set trainer.resume=true to continue, "
            "trainer.overwrite=true to start it again, or use a new run folder"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_lock(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _lock_problem(path: Path, held: dict[str, object]) -> ConfigError | None:
    """The error for a lock held by a live writer (or by another host, which cannot be checked); None when stale."""
    pid, host = int(str(held.get("pid", -1))), str(held.get("host", "?"))
    if host == socket.gethostname() and (pid == os.getpid() or not _alive(pid)):
        return None
    where = f"pid {pid} on {host}" + ("" if host == socket.gethostname() else f"; delete {path} if that run is gone")
    return ConfigError(
        f"folder {path.parent} is being written by {held.get('what', 'another run')} ({where}, since "
        f"{held.get('started', '?')}); wait for it to finish or use another folder"
    )


def check_unlocked(folder: Path) -> None:
    """Refuse a folder another live process is writing (see `run_lock`); a stale lock is no obstacle."""
    held = _read_lock(folder / LOCK)
    problem = _lock_problem(folder / LOCK, held) if held is not None else None
    if problem:
        raise problem


@contextmanager
def run_lock(folder: Path, what: str = "train.py", name: str = LOCK) -> Iterator[Path]:
    """Hold `folder/<name>` (default `.lock`) while writing the folder; another writer is refused in one line.

    A lock left by a dead process on this host (kill -9, power loss) is stale: it is taken over with a warning. A
    lock held by another host cannot be checked from here: it is refused, naming the file to delete if that run is
    gone.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "what": what}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = _read_lock(path)
            if held is None:  # being written right now, or cut short by a crash: look again
                time.sleep(0.05)
                if _read_lock(path) is None:
                    path.unlink(missing_ok=True)
                continue
            problem = _lock_problem(path, held)
            if problem:
                raise problem from None
            import logging

            logging.getLogger(__name__).warning("taking over the stale lock %s of a dead process", path)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    else:
        raise ConfigError(f"run folder {folder}: could not take its lock {path}; delete it if no run uses the folder")
    try:
        yield path
    finally:
        held = _read_lock(path)
        if held is not None and held.get("pid") == me["pid"] and held.get("host") == me["host"]:
            path.unlink(missing_ok=True)


def run_tag() -> str:
    """A suffix that makes default run folder names unique: 6 random hex digits, or, for the ranks of one DDP or
    Slurm job (which each compose the config), a value they share (from the job's rendezvous), unique per job."""
    env = os.environ
    if int(env.get("WORLD_SIZE", "1")) > 1 or int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
        keys = ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "SLURM_JOB_ID", "SLURM_STEP_ID")
        import hashlib

        return hashlib.sha256("|".join(env.get(k, "") for k in keys).encode()).hexdigest()[:6]
    return secrets.token_hex(3)
