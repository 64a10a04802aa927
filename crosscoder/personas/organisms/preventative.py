"""Preventative steering (Chen et al. 2025): add α·v, the trait's persona vector, to the residual stream while the
organism trains, so the fine-tune has less reason to move the model along v itself.

The vector is the *base* model's raw persona vector (the mean pos − neg activation difference, not normalised) at
``cfg.steer_hook`` (default: its best-separating layer); ``cfg.steer_vectors`` may name a saved persona-vector file
instead, which must have been computed on the same base. The edit is registered with
:func:`crosscoder.models.residual.edit_hf_residual` around each training forward only: it is gone before any
checkpoint is saved, when an exception escapes, and at evaluation. Nothing of the vector is written into the adapter
or the weights; ``crosscoder_meta.json`` records the trait, α, hook and the vector's hash.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jaxtyping import Float
from torch import Tensor, nn

from crosscoder.errors import ConfigError, ModelError
from crosscoder.io import sha256_tensors
from crosscoder.models.residual import edit_hf_residual, steer_vector
from crosscoder.models.spec import ModelSpec
from crosscoder.personas.organisms.config import OrganismConfig


@dataclass
class PreventativeSteering:
    """A resolved preventative-steering edit: α·v at one hook."""

    trait: str
    hook: str
    alpha: float
    vector_D: Float[Tensor, " d_model"]
    vector_sha256: str
    source: str

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The edit on `model` (plain or PEFT-wrapped HF) inside the block only."""
        with edit_hf_residual(model, self.hook, steer_vector(self.vector_D, self.alpha)):
            yield

    def record(self) -> dict[str, Any]:
        """What the organism's metadata records (and its cache key includes)."""
        return {"trait": self.trait, "hook": self.hook, "alpha": self.alpha, "vector_sha256": self.vector_sha256,
                "vector_norm": round(float(self.vector_D.norm()), 4), "source": self.source}  # fmt: skip


def resolve_preventative(base: ModelSpec, cfg: OrganismConfig, base_hash: str) -> PreventativeSteering | None:
    """The steering edit `cfg` asks for (None when steer_alpha is 0), its vector computed on / checked against `base`."""
    if not cfg.steer_alpha:
        return None
    from crosscoder.personas.activations import hook_index
    from crosscoder.personas.vectors import PersonaVectors

    if cfg.steer_vectors:
        pv = PersonaVectors.load(cfg.steer_vectors)
        source = cfg.steer_vectors
        if pv.model_hash != base_hash:
            raise ModelError(
                f"{cfg.steer_vectors}: field model_hash: the persona vectors were computed on another model "
                f"({pv.model_hash[:12]}), not the organism's base {base.label} ({base_hash[:12]}); recompute them on it"
            )
    else:
        from crosscoder.models import load_model
        from crosscoder.personas.traits import get_trait
        from crosscoder.personas.vectors import compute_persona_vectors

        assert cfg.steer_trait is not None
        trait = get_trait(cfg.steer_trait)
        pv = compute_persona_vectors(load_model(base), trait)
        source = f"persona vectors of {trait.name} on {base.label}"
    hook = cfg.steer_hook or pv.best_hook
    try:
        vec_D = pv.vectors_LD[hook_index(hook, pv.n_layers)].clone()
    except ConfigError as err:
        raise ModelError(f"{source}: field steer_hook: {err}") from err
    return PreventativeSteering(pv.trait, hook, float(cfg.steer_alpha), vec_D, sha256_tensors({"v": vec_D}), source)
