"""Persona directions: unit vectors at a residual hook that monitoring and screening project activations on.

A :class:`Direction` comes from a trait's persona vector (:func:`vector_direction`) or from a crosscoder latent's
decoder (:mod:`crosscoder.personas.xc_latents`). A set of directions, with their alert thresholds, saves to one
safetensors file (:func:`save_directions`) whose header records the model it was computed on, so a monitor can
reuse a calibrated set.

Every direction is checked against the model it is applied to (:func:`check_directions`): the width and the hook
must fit, and the model must be the one the direction was computed on or a fine-tune of it (a LoRA adapter or a
full fine-tune whose ``crosscoder_meta.json`` records that base). Anything else is a one-line error naming the file
and the field, unless ``allow_other_model`` is set.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.errors import ConfigError, DataError, ModelError
from crosscoder.io import load_checked_safetensors, read_json, save_checked_safetensors
from crosscoder.models.residual import parse_resid_hook
from crosscoder.personas.vectors import PersonaVectors

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel

log = logging.getLogger(__name__)

KINDS = ("persona_vector", "latent")
_FORMAT = "crosscoder.directions/1"


@dataclass
class Calibration:
    """How a direction's alert threshold was set: per-response mean projections of trait-positive and -negative
    responses, and the cut that separates them best (in-sample)."""

    pos_mean: float
    neg_mean: float
    threshold: float
    accuracy: float
    """Balanced accuracy of the threshold on the calibration responses themselves."""
    n_pos: int
    n_neg: int
    source: str
    """What the responses were (e.g. ``examples``: the trait's example texts as assistant turns)."""


@dataclass
class Direction:
    """One unit direction at one residual hook."""

    name: str
    """Display name (the trait, or ``latent <j>: <label>``)."""
    hook: str
    """Residual hook the direction lives at (``blocks.<l>.hook_resid_post`` or ``_pre``)."""
    unit_D: Float[Tensor, " d_model"]
    kind: str
    """persona_vector | latent."""
    model_hash: str
    """Content hash of the model the direction was computed on."""
    source: str
    """File or run the direction was read from (named in errors)."""
    trait: str | None = None
    """The trait it stands for (a latent's label), used to calibrate the threshold."""
    raw_norm: float = 1.0
    """Norm of the vector before normalising (the persona vector's mean difference, or the decoder's norm)."""
    calibration: Calibration | None = None
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"direction {self.name}: unknown kind {self.kind!r}; use one of {', '.join(KINDS)}")
        parse_resid_hook(self.hook)
        self.unit_D = self.unit_D.detach().float().flatten()
        norm = float(self.unit_D.norm())
        if not norm > 0 or not torch.isfinite(self.unit_D).all():
            raise DataError(f"{self.source}: direction {self.name} is zero or not finite; recompute it")
        self.unit_D = self.unit_D / norm

    @property
    def threshold(self) -> float | None:
        return None if self.calibration is None else self.calibration.threshold


def vector_direction(pv: PersonaVectors, hook: str | None = None, source: str = "persona vectors") -> Direction:
    """The unit persona vector of `pv` at `hook` (default: its best-separating layer)."""
    from crosscoder.personas.activations import hook_index

    hook = hook or pv.best_hook
    vec_D = pv.vectors_LD[hook_index(hook, pv.n_layers)]
    return Direction(
        name=pv.trait, hook=hook, unit_D=vec_D, kind="persona_vector", model_hash=pv.model_hash, source=source,
        trait=pv.trait, raw_norm=float(vec_D.norm()),
    )  # fmt: skip


def load_vector_file(path: str | Path, hook: str | None = None) -> Direction:
    """A direction from a persona-vector file (:meth:`PersonaVectors.save`), checking the requested hook fits it."""
    pv = PersonaVectors.load(path)
    if hook is not None:
        layer, _ = parse_resid_hook(hook)
        if layer >= pv.n_layers:
            raise DataError(
                f"{path}: field vectors_LD: the file holds {pv.n_layers} layers, so hook {hook} is not in it; "
                "pick a hook of the model the vectors were computed on"
            )
    return vector_direction(pv, hook, source=str(path))


def lineage_hashes(model: LoadedModel) -> set[str]:
    """The model's content hash and, for an organism, the content hash of the base it was fine-tuned from."""
    hashes = {model.content_hash}
    spec = model.spec
    for folder in (spec.adapter, spec.source):
        meta = Path(folder).expanduser() / "crosscoder_meta.json" if folder else None
        if meta is not None and meta.is_file():
            base = read_json(meta).get("base_hash")
            if isinstance(base, str):
                hashes.add(base)
    return hashes


def check_directions(model: LoadedModel, directions: list[Direction], *, allow_other_model: bool = False) -> None:
    """Refuse directions that do not fit `model` (width, hook) or were computed on an unrelated model."""
    if not directions:
        raise ConfigError("no persona directions given; pass a trait, a persona-vector file or a crosscoder run")
    lineage = lineage_hashes(model)
    for d in directions:
        layer, _ = parse_resid_hook(d.hook)
        if layer >= model.n_layers:
            raise ModelError(
                f"{d.source}: field hook: direction {d.name} is at {d.hook}, but model {model.name} has "
                f"{model.n_layers} layers; use directions computed on this model"
            )
        if d.unit_D.shape[0] != model.d_model:
            raise ModelError(
                f"{d.source}: field vector: direction {d.name} has width {d.unit_D.shape[0]}, model {model.name} "
                f"has d_model {model.d_model}; use directions computed on this model"
            )
        if d.model_hash not in lineage:
            msg = (
                f"{d.source}: field model_hash: direction {d.name} was computed on another model "
                f"({d.model_hash[:12]}), not on {model.name} ({model.content_hash[:12]}) or its base; "
                "recompute it on this model's base or pass --allow-other-model"
            )
            if not allow_other_model:
                raise ModelError(msg)
            log.warning("%s (allowed)", msg)


def save_directions(path: str | Path, directions: list[Direction]) -> None:
    """Write directions (unit vectors, hooks, thresholds, calibrations) to one checked safetensors file."""
    if not directions:
        raise ConfigError("save_directions: nothing to save")
    tensors = {f"unit_{i}": d.unit_D.contiguous() for i, d in enumerate(directions)}
    rows = []
    for d in directions:
        cal = None if d.calibration is None else vars(d.calibration)
        rows.append({"name": d.name, "hook": d.hook, "kind": d.kind, "model_hash": d.model_hash, "source": d.source,
                     "trait": d.trait, "raw_norm": d.raw_norm, "calibration": cal, "meta": d.meta})  # fmt: skip
    save_checked_safetensors(path, tensors, metadata={"format": _FORMAT, "directions": json.dumps(rows)})


def load_directions(path: str | Path) -> list[Direction]:
    """Directions written by :func:`save_directions` (checksum verified)."""
    tensors, header = load_checked_safetensors(path, what="direction file")
    if header.get("format") != _FORMAT or "directions" not in header:
        raise DataError(
            f"{path}: field format: not a direction file ({_FORMAT}); write one with crosscoder.personas.monitor"
        )
    out = []
    for i, row in enumerate(json.loads(header["directions"])):
        if f"unit_{i}" not in tensors:
            raise DataError(f"{path}: field unit_{i}: missing tensor; the file is incomplete, rewrite it")
        cal = Calibration(**row["calibration"]) if row.get("calibration") else None
        d = Direction(row["name"], row["hook"], tensors[f"unit_{i}"], row["kind"], row["model_hash"], str(path),
                      row.get("trait"), float(row.get("raw_norm", 1.0)), cal, row.get("meta") or {})  # fmt: skip
        out.append(d)
    return out
