"""Persona composition: directions as typed objects and their algebra, multi-direction steering, LoRA surgery, the
latent-basis adapter, cross-trait leakage and the receive-side audit (see docs/COMPOSITION.md)."""

from crosscoder.personas.compose.directions import DirectionMismatchError, Operation, PersonaDirection, Provenance
from crosscoder.personas.compose.ops import add, cosine_matrix, normalise, orthogonalise, project_out, scale, subtract
from crosscoder.personas.compose.steer import ablate, steer
from crosscoder.personas.compose.surgery import lora_surgery

__all__ = [
    "DirectionMismatchError",
    "Operation",
    "PersonaDirection",
    "Provenance",
    "ablate",
    "add",
    "cosine_matrix",
    "lora_surgery",
    "normalise",
    "orthogonalise",
    "project_out",
    "scale",
    "steer",
    "subtract",
]
