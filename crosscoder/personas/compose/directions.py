"""`PersonaDirection`: one vector in one model's residual stream at one hook, with where it came from.

A direction is stored as two files side by side: ``<name>.safetensors`` (the vector, with its checksum in the header)
and ``<name>.json`` (the manifest: format version, name, model hash and name, hook, width, norm, provenance, the
operations applied to it, and the vector's checksum). Loading verifies that the two files belong together.

Directions only combine with directions of the same model (content hash), hook and width; anything else is a
one-line :class:`DirectionMismatchError` naming both sides. A direction never changes a saved model by itself: only
the LoRA surgery command (:mod:`crosscoder.personas.compose.surgery`) writes one into a *new* adapter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.errors import CrosscoderError, DataError
from crosscoder.io import (
    atomic_write_json,
    load_checked_safetensors,
    read_json,
    save_checked_safetensors,
    sha256_tensors,
)

FORMAT_VERSION = 1
PROVENANCE_KINDS = ("persona_vector", "latent_decoder", "decoder_diff", "activation_diff", "file", "derived")


class DirectionMismatchError(CrosscoderError):
    """Two directions (or a direction and a model, hook or adapter) that do not belong to the same residual stream."""


@dataclass(frozen=True)
class Provenance:
    """Where a direction came from."""

    kind: str
    """persona_vector | latent_decoder | decoder_diff | activation_diff | file | derived."""
    trait: str | None = None
    """persona_vector: the trait whose pos/neg contrast it is."""
    latent: int | None = None
    """latent_decoder / decoder_diff: the crosscoder latent."""
    source: str | None = None
    """The file or folder it was read from (trait file, crosscoder run, vector file)."""
    source_sha256: str | None = None
    """Content hash of that source (trait file, crosscoder weights, vector file)."""
    models: tuple[str, ...] = ()
    """decoder_diff: (minuend, subtrahend) model names, e.g. (ft, base); latent_decoder: the decoder's model."""
    detail: str = ""
    """Free text: options used (persona-vector source, scale convention)."""

    def __post_init__(self) -> None:
        if self.kind not in PROVENANCE_KINDS:
            raise DataError(
                f"direction provenance: unknown kind {self.kind!r}; use one of {', '.join(PROVENANCE_KINDS)}"
            )


@dataclass(frozen=True)
class Operation:
    """One operation in a direction's history."""

    op: str
    """scale | add | subtract | orthogonalise | project_out | normalise."""
    factor: float | None = None
    """scale: the factor."""
    operands: tuple[str, ...] = ()
    """The other directions involved, as ``name@<vector checksum, 12 hex>``."""


@dataclass
class PersonaDirection:
    """A residual-stream direction of one model at one hook."""

    name: str
    vector_D: Float[Tensor, " D"]
    model_hash: str
    """Content hash of the model the direction lives in (``LoadedModel.content_hash``)."""
    model_name: str
    hook: str
    """A residual hook, ``blocks.<l>.hook_resid_post`` or ``blocks.<l>.hook_resid_pre``."""
    provenance: Provenance
    operations: tuple[Operation, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        from crosscoder.models.residual import parse_resid_hook

        parse_resid_hook(self.hook)
        v = self.vector_D.detach().to(torch.float32).reshape(-1).clone()
        if v.numel() == 0 or not torch.isfinite(v).all():
            raise DataError(f"direction {self.name!r}: the vector is empty or has NaN/inf values; recompute it")
        self.vector_D = v

    @property
    def d_model(self) -> int:
        return int(self.vector_D.shape[0])

    @property
    def norm(self) -> float:
        return float(self.vector_D.norm())

    @property
    def checksum(self) -> str:
        return sha256_tensors({"vector_D": self.vector_D})

    @property
    def ref(self) -> str:
        """``name@checksum`` as recorded in other directions' operations."""
        return f"{self.name}@{self.checksum[:12]}"

    def unit(self) -> Tensor:
        """The unit vector (a zero direction is refused)."""
        n = self.vector_D.norm()
        if float(n) < 1e-12:
            raise DataError(f"direction {self.name!r} has zero norm; it has no direction to use")
        return self.vector_D / n

    def where(self) -> str:
        return (
            f"{self.name!r} (model {self.model_name or '?'} {self.model_hash[:12]}, {self.hook}, width {self.d_model})"
        )

    def check_same_space(self, other: PersonaDirection) -> None:
        """Refuse `other` unless it has this direction's model hash, hook and width."""
        if (self.model_hash, self.hook, self.d_model) != (other.model_hash, other.hook, other.d_model):
            raise DirectionMismatchError(
                f"direction {self.where()} and direction {other.where()} are not in the same residual stream; "
                "combine directions of one model, hook and width"
            )

    def check_model(self, model_hash: str, d_model: int, model_name: str = "", *, accept: tuple[str, ...] = ()) -> None:
        """Refuse a model whose content hash (or one of `accept`) or width differs from the direction's."""
        if (self.model_hash not in (model_hash, *accept)) or self.d_model != d_model:
            raise DirectionMismatchError(
                f"direction {self.where()} does not belong to model {model_name or '?'} {model_hash[:12]} "
                f"(width {d_model}); make the direction in this model (or the adapter's base)"
            )

    def derived(self, name: str, vector_D: Tensor, op: Operation) -> PersonaDirection:
        """A new direction in the same space, keeping this one's provenance, with `op` appended to its history."""
        return replace(self, name=name, vector_D=vector_D, operations=(*self.operations, op))

    def manifest(self) -> dict[str, Any]:
        """The JSON manifest (without the vector)."""
        return {
            "format": "crosscoder.persona_direction",
            "version": FORMAT_VERSION,
            "name": self.name,
            "model_hash": self.model_hash,
            "model_name": self.model_name,
            "hook": self.hook,
            "d_model": self.d_model,
            "norm": self.norm,
            "vector_sha256": self.checksum,
            "provenance": asdict(self.provenance),
            "operations": [asdict(op) for op in self.operations],
        }

    def save(self, path: str | Path) -> Path:
        """Write ``<stem>.safetensors`` and ``<stem>.json``; returns the safetensors path."""
        st, js = direction_paths(path)
        save_checked_safetensors(st, {"vector_D": self.vector_D.contiguous()}, metadata={"name": self.name})
        atomic_write_json(js, self.manifest())
        return st

    @classmethod
    def load(cls, path: str | Path) -> PersonaDirection:
        """Read a direction written by :meth:`save` (either file of the pair), verifying that they match."""
        st, js = direction_paths(path)
        if not js.is_file():
            raise DataError(
                f"direction manifest {js} not found (a direction is a .safetensors + .json pair); check the path"
            )
        man = read_json(js)
        if not isinstance(man, dict) or man.get("format") != "crosscoder.persona_direction":
            raise DataError(f"{js} is not a persona-direction manifest (no format field); pass a file written by save")
        tensors, _ = load_checked_safetensors(st, what="direction file")
        if "vector_D" not in tensors or sha256_tensors({"vector_D": tensors["vector_D"]}) != man.get("vector_sha256"):
            raise DataError(f"direction {st} does not match its manifest {js} (checksum); re-save the direction")
        try:
            prov = Provenance(**{**man["provenance"], "models": tuple(man["provenance"].get("models", ()))})
            ops = tuple(Operation(**{**o, "operands": tuple(o.get("operands", ()))}) for o in man["operations"])
            return cls(man["name"], tensors["vector_D"], man["model_hash"], man["model_name"], man["hook"], prov, ops)
        except (KeyError, TypeError) as err:
            raise DataError(
                f"direction manifest {js} is missing or has a bad field ({err}); re-save the direction"
            ) from err


def direction_paths(path: str | Path) -> tuple[Path, Path]:
    """(``.safetensors``, ``.json``) of a direction given either file or the common stem."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def check_same_space(directions: list[PersonaDirection]) -> None:
    """Refuse a set of directions that do not all share the first one's model, hook and width."""
    if not directions:
        raise DataError("no directions given; pass at least one")
    for d in directions[1:]:
        directions[0].check_same_space(d)
