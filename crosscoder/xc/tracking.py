"""Where a run's W&B record lives and how its mode is chosen: shared by the training logger and the analysis.

**Mode precedence** (`resolve_mode`), the same for `python train.py` (`logging.wandb_mode`) and `python analyze.py`
(`export.wandb_mode`):

1. an explicit choice in the config (`logging=offline|online|disabled`, `logging.wandb_mode=...`,
   `export.wandb_mode=...`) always wins, whatever the environment says;
2. with the default `auto`, the environment variable ``WANDB_MODE`` (offline | online | disabled), when set;
3. then, for the analysis only, the mode its training run used (`wandb.json`);
4. otherwise `offline`.

**wandb.json** (`WandbRef`) is written into the run folder by the training logger (rank 0) whatever the mode: the
W&B project, entity, group, display name, run id and the name of the crosscoder artifact. The analysis reads it to
join the training run's group, name itself after it, and reference (and, online, `use_artifact`) its weights.

**Artifact names** are made from the W&B run id (`crosscoder-<run id>`, `analysis-<run id>`), so two jobs of two
sweeps never write versions of the same artifact.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from crosscoder.errors import ConfigError, DataError
from crosscoder.io import atomic_write_json, read_json
from crosscoder.xc.config import AUTO, WANDB_MODES

REF_FILE = "wandb.json"
"""The W&B reference of a training run, in its run folder."""
MAX_NAME = 128
"""W&B display names and artifact names are kept this short."""


def resolve_mode(configured: str, *, fallback: str | None = None, where: str = "logging.wandb_mode") -> str:
    """The W&B mode to run in: `configured` unless it is `auto`, then $WANDB_MODE, then `fallback`, then offline."""
    if configured != AUTO:
        if configured not in WANDB_MODES:
            raise ConfigError(f"{where}: unknown mode {configured!r}; choose auto, {', '.join(WANDB_MODES)}")
        return configured
    env = os.environ.get("WANDB_MODE", "").strip()
    if env:
        if env not in WANDB_MODES:
            raise ConfigError(
                f"WANDB_MODE={env!r}: unknown mode; set it to one of {', '.join(WANDB_MODES)} or unset it"
            )
        return env
    return fallback if fallback in WANDB_MODES else "offline"


def init_wandb(**kwargs: Any) -> Any:
    """`wandb.init(**kwargs)`, with W&B's own errors (no or a rejected API key, no route to the server, a bad
    setting) turned into one line naming the fix."""
    import wandb

    try:
        return wandb.init(**kwargs)
    except wandb.errors.Error as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            f"W&B could not start the {kwargs.get('mode', 'online')} run ({type(err).__name__}: {first}); check "
            "WANDB_API_KEY (`wandb login`) and the network, or log offline (logging=offline, export.wandb_mode=offline)"
        ) from err


def safe_name(text: str, limit: int = MAX_NAME) -> str:
    """`text` with characters W&B artifact names refuse replaced by '-', cut to `limit`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:limit] or "run"


def short(text: str, limit: int = MAX_NAME) -> str:
    """A display name cut to `limit` characters (ending in '…' when cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def artifact_name(kind: str, run_id: str) -> str:
    """The artifact a run logs: `<kind>-<run id>` (unique per run, so sweeps never collide)."""
    return safe_name(f"{kind}-{run_id}")


@dataclass
class WandbRef:
    """A training run's W&B identity (`<run_dir>/wandb.json`)."""

    mode: str
    """The mode the run logged in (disabled: id and artifact are None)."""
    project: str
    entity: str | None
    group: str | None
    """The W&B group: the Hydra sweep (`<name>/<sweep folder>`) or, for a single run, `<name>/<run folder>`."""
    name: str
    """The display name (from the Hydra overrides, else the run folder's name)."""
    id: str | None = None
    """The W&B run id (None when disabled)."""
    artifact: str | None = None
    """The crosscoder weights' artifact (`crosscoder-<id>`), once logged."""
    local_dir: str | None = None
    """The run's local W&B folder (`<run_dir>/wandb/offline-run-<time>-<id>` offline): `wandb sync <local_dir>`
    uploads an offline run."""

    def sync_command(self) -> str | None:
        """The `wandb sync` command that uploads this run, for an offline run; None otherwise."""
        return f"wandb sync {self.local_dir}" if self.mode == "offline" and self.local_dir else None

    def path(self) -> str | None:
        """`entity/project/id` (or `project/id` without an entity), the W&B run path; None when disabled."""
        if self.id is None:
            return None
        return "/".join(p for p in (self.entity, self.project, self.id) if p)

    def artifact_path(self) -> str | None:
        """The crosscoder artifact's full name for `use_artifact` (`[entity/]project/crosscoder-<id>:latest`)."""
        if self.artifact is None:
            return None
        return "/".join(p for p in (self.entity, self.project, f"{self.artifact}:latest") if p)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, obj: Any, where: str = REF_FILE) -> WandbRef:
        if not isinstance(obj, dict) or not {"mode", "project", "name"} <= set(obj):
            raise DataError(f"{where}: not a W&B reference (needs mode, project, name); delete it and re-run training")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})

    def write(self, run_dir: Path) -> None:
        atomic_write_json(Path(run_dir) / REF_FILE, self.to_json())

    @classmethod
    def read(cls, run_dir: Path) -> WandbRef | None:
        """The reference in `run_dir`, or None for runs trained before it existed."""
        path = Path(run_dir) / REF_FILE
        return cls.from_json(read_json(path), str(path)) if path.is_file() else None
