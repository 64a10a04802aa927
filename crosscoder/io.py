"""Small file-system helpers: atomic writes, content hashes and the cache folder.

Everything the framework writes goes through :func:`atomic_write_bytes` (or one of its
wrappers): the data is written to a temporary file in the same folder, flushed, fsynced
and renamed over the target, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from crosscoder.errors import ConfigError, DataError

CACHE_ENV = "CROSSCODER_CACHE"


def cache_dir(*parts: str, create: bool = True) -> Path:
    """The framework's cache folder (``$CROSSCODER_CACHE`` or ``~/.cache/crosscoder``), created unless `create` is false."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "crosscoder"
    path = base.joinpath(*parts)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            where = f"${CACHE_ENV}={root}" if root else f"the cache folder {base}"
            raise ConfigError(
                f"{where}: cannot create {path} ({err.strerror}); point {CACHE_ENV} at a writable folder"
            ) from err
        if not os.access(path, os.W_OK):
            raise ConfigError(f"cache folder {path} is not writable; point {CACHE_ENV} at a writable folder")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    Works for writers that want a path rather than bytes (``save_file``, ``save_pretrained``
    of a single file, numpy). On an exception the temporary file is removed and ``target``
    is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it takes `target`'s place, else it is removed.

    An existing `target` is moved aside first and deleted only after the new folder is in place, so a crash leaves
    either the old folder or the new one, never a half-written one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_save_safetensors(
    target: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Save tensors as safetensors atomically (tensors are made contiguous first)."""
    clean = {k: v.detach().contiguous() for k, v in tensors.items()}
    with atomic_path(target) as tmp:
        save_file(clean, str(tmp), metadata=metadata)


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, turning a missing or corrupt file into a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file {path}: re-run the step that writes it")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises several error types for bad headers
        raise DataError(
            f"corrupt safetensors file {path} ({err}): delete it and re-run the step that writes it"
        ) from err


def save_checked_safetensors(
    target: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """`atomic_save_safetensors` with the tensors' sha256 in the header (``checksum``), for cache files."""
    atomic_save_safetensors(target, tensors, metadata={**(metadata or {}), "checksum": sha256_tensors(tensors)})


def load_checked_safetensors(path: str | Path, what: str = "file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header of a file written by `save_checked_safetensors`; a checksum mismatch is a DataError."""
    from safetensors import safe_open

    tensors = load_safetensors(path)
    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata() or {}
    if header.get("checksum") != sha256_tensors(tensors):
        raise DataError(f"{what} {path} is corrupt (checksum mismatch); delete it to recompute")
    return tensors, header


def read_json(path: str | Path) -> Any:
    """Read a JSON file, naming the file in the error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file {path}: check the path or re-run the step that writes it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON in {path} at line {err.lineno}: {err.msg}; fix or delete the file") from err


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-serialisable object (keys sorted)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode("utf-8"))


def sha256_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """Hash of a state dict's names, shapes, dtypes and values."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ------------------------------------------------------------------ checksum manifests (issue 19)
CHECKSUMS = "checksums.json"
"""File name of a folder's sha256 manifest."""
CHECKSUMS_FORMAT = "crosscoder-checksums/1"
SAMPLE_BYTES = 1 << 30
"""A sampled check hashes every file when a folder holds at most this many bytes, else a random subset this large."""


def _listed_files(folder: Path) -> list[str]:
    """Every regular file under `folder` (relative, sorted), without the manifest and temporary/hidden files."""
    out = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.is_file() and rel.name != CHECKSUMS and not any(part.startswith(".") for part in rel.parts):
            out.append(rel.as_posix())
    return sorted(out)


def write_checksums(folder: str | Path, rebuild: str, files: list[str] | None = None) -> Path:
    """Write `folder/checksums.json`: sha256 and size of `files` (default: every file under the folder) and the
    command that rebuilds the folder, named by `verify_checksums` when a file no longer matches."""
    folder = Path(folder)
    names = _listed_files(folder) if files is None else sorted(files)
    entries = {n: {"sha256": sha256_file(folder / n), "bytes": (folder / n).stat().st_size} for n in names}
    target = folder / CHECKSUMS
    atomic_write_json(target, {"format": CHECKSUMS_FORMAT, "rebuild": rebuild, "files": entries})
    return target


def verify_checksums(
    folder: str | Path, what: str, *, sample: bool = False, required: bool = False, only: set[str] | None = None
) -> int:
    """Check the files of `folder` against its checksums.json; returns how many files were hashed.

    A missing, resized or changed file is a DataError naming `what`, the file and the rebuild command the manifest
    records. `sample`: sizes of every file, sha256 of all of them up to `SAMPLE_BYTES` in total, else of a random
    subset of about that size. `only`: check just these files (those listed). A folder without a manifest (written
    before checksums existed) passes unless `required`.
    """
    import random

    folder = Path(folder)
    path = folder / CHECKSUMS
    if not path.is_file():
        if required:
            raise DataError(f"{what} {folder} has no {CHECKSUMS}; rebuild it with the command that wrote it")
        return 0
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != CHECKSUMS_FORMAT:
        raise DataError(f"{path} is not a crosscoder checksum manifest; delete it and rebuild {what} {folder}")
    rebuild, files = str(manifest.get("rebuild", "re-run the step that wrote it")), manifest.get("files", {})
    files = {n: e for n, e in files.items() if only is None or n in only}
    for name, entry in files.items():
        target = folder / name
        if not target.is_file():
            raise DataError(f"{what} {folder}: {name} is missing; rebuild it with: {rebuild}")
        if target.stat().st_size != entry["bytes"]:
            raise DataError(f"{what} {folder}: {name} has the wrong size (truncated?); rebuild it with: {rebuild}")
    names = list(files)
    if sample and sum(int(e["bytes"]) for e in files.values()) > SAMPLE_BYTES:
        random.shuffle(names)
        total, chosen = 0, []
        for name in names:
            if total >= SAMPLE_BYTES:
                break
            chosen.append(name)
            total += int(files[name]["bytes"])
        names = chosen
    for name in names:
        if sha256_file(folder / name) != files[name]["sha256"]:
            raise DataError(f"{what} {folder}: {name} is corrupt (sha256 mismatch); rebuild it with: {rebuild}")
    return len(names)


def refresh_checksums(folder: str | Path) -> None:
    """Rewrite a folder's checksums.json over its current files, keeping its rebuild command (after a command that
    verified the folder rewrote some of its files, e.g. the report); a folder without one is left without."""
    path = Path(folder) / CHECKSUMS
    if path.is_file():
        write_checksums(folder, str(read_json(path).get("rebuild", "re-run the step that wrote it")))
