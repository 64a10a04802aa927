"""The activation cache's manifest.json as typed records, shared by the harvest (writer) and every reader.

`to_json()` writes the documented layout (keys in this order, optional ones left out until they are known) and
`from_json()` reads it back; a manifest missing a key is refused with a one-line error naming the key.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from crosscoder.errors import DataError

JSON = dict[str, Any]


@dataclass
class ModelRecord:
    """One model of the cache: its display name, spec, weights hash and shape."""

    name: str
    spec: JSON
    """The `ModelSpec` as a dict (`dataclasses.asdict`)."""
    content_hash: str
    d_model: int
    n_layers: int
    dtype: str = "float32"
    """The weights' dtype the activations were harvested in (float32 | bfloat16 | float16)."""

    def to_json(self) -> JSON:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, obj: Any) -> ModelRecord:
        o = _check(obj, cls, "manifest models entry")
        return cls(str(o["name"]), dict(o["spec"]), str(o["content_hash"]), int(o["d_model"]), int(o["n_layers"]),
                   str(o.get("dtype", "float32")))  # fmt: skip


@dataclass
class ShardEntry:
    """One shard file: its rows, sequences, harvest-batch range, normalisation sums and (on disk) size and sha256."""

    file: str
    """Path relative to the cache folder (shards/shard_00000.safetensors)."""
    n_rows: int
    n_seqs: int
    seq_start: int
    """Global id of its first sequence."""
    batch_start: int
    batch_end: int
    """Harvest batches [batch_start, batch_end) it holds: a harvest resumes after the last complete shard."""
    norm: JSON
    """`NormStats.to_json()` over its seeded sample."""
    role_counts: dict[str, int]
    bytes: int | None = None
    """File size (None for an in-memory set)."""
    sha256: str | None = None

    def to_json(self) -> JSON:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in out.items() if v is not None or k not in ("bytes", "sha256")}

    @classmethod
    def from_json(cls, obj: Any) -> ShardEntry:
        o = _check(obj, cls, "manifest shard entry")
        return cls(str(o["file"]), int(o["n_rows"]), int(o["n_seqs"]), int(o["seq_start"]), int(o["batch_start"]),
                   int(o["batch_end"]), dict(o["norm"]), {str(k): int(v) for k, v in o["role_counts"].items()},
                   o.get("bytes"), o.get("sha256"))  # fmt: skip


_OPTIONAL = ("rebuild", "n_rows", "n_seqs", "role_counts", "norm", "harvest", "subset_of")
"""Keys written once known: `rebuild` (on-disk caches), the totals and norm (complete caches), harvest timing."""


@dataclass
class CacheManifest:
    """manifest.json of an activation cache (see `crosscoder.data.cache` for the folder layout)."""

    format: str
    version: int
    key: str
    """sha256 of `identity`: the cache folder's name."""
    complete: bool
    identity: JSON
    """Everything that determines the content (models, hooks, data config, sources, tokenizer)."""
    models: list[ModelRecord]
    hooks: list[str]
    d_model: int
    dtype: str
    """Storage dtype of x (float32 | float16 | bfloat16)."""
    layout: str
    data_config: JSON
    """The `DataConfig` as a dict."""
    sources: list[Any]
    shards: list[ShardEntry] = field(default_factory=list)
    rebuild: str | None = None
    """The command that rebuilds a corrupt shard."""
    n_rows: int | None = None
    n_seqs: int | None = None
    role_counts: dict[str, int] | None = None
    norm: JSON | None = None
    """Normalisation summary (`NormStats.summary`: scale_ML and the norms it came from)."""
    harvest: JSON | None = None
    """Timing of the last harvest run."""
    subset_of: JSON | None = None
    """A cache cut out of another (`crosscoder.data.subset`): that cache's folder and the indices of its models."""

    def __getitem__(self, key: str) -> Any:
        """Read access by JSON key, for callers written against the earlier dict manifest (crosscoder/bench/harvest.py
        reads ``manifest["shards"][-1]["batch_end"]``). TODO(issue 16): drop once every caller reads attributes."""
        return self.to_json()[key]

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def scale_ML(self) -> list[list[float]]:
        """Per model and hook, the factor that brings the mean activation norm to sqrt(d_model)."""
        if self.norm is None:
            raise DataError(f"activation cache {self.key[:12]} has no normalisation stats (incomplete); rebuild it")
        return list(self.norm["scale_ML"])

    def to_json(self) -> JSON:
        out: JSON = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _OPTIONAL and value is None:
                continue
            if f.name == "models":
                value = [m.to_json() for m in value]
            elif f.name == "shards":
                value = [s.to_json() for s in value]
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, obj: Any) -> CacheManifest:
        """Parse manifest.json content; a DataError names the first missing key."""
        o = _check(obj, cls, "manifest.json")
        return cls(
            format=str(o["format"]), version=int(o["version"]), key=str(o["key"]), complete=bool(o["complete"]),
            identity=dict(o["identity"]), models=[ModelRecord.from_json(m) for m in o["models"]],
            hooks=[str(h) for h in o["hooks"]], d_model=int(o["d_model"]), dtype=str(o["dtype"]),
            layout=str(o["layout"]), data_config=dict(o["data_config"]), sources=list(o["sources"]),
            shards=[ShardEntry.from_json(s) for s in o.get("shards") or []], rebuild=o.get("rebuild"),
            n_rows=o.get("n_rows"), n_seqs=o.get("n_seqs"), role_counts=o.get("role_counts"), norm=o.get("norm"),
            harvest=o.get("harvest"), subset_of=o.get("subset_of"),
        )  # fmt: skip


def _check(obj: Any, cls: type, where: str) -> JSON:
    """`obj` when it is a JSON object holding every field of `cls` that has no default."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}; rebuild the cache")
    missing = [
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING and f.name not in obj
    ]
    if missing:
        raise DataError(f"{where}: missing key {missing[0]!r}; rebuild the cache")
    return obj
