"""Algebra on persona directions: scale, add, subtract, Gram–Schmidt orthogonalisation, project out, cosine matrix.

Every operation checks that its operands share one model, hook and width, and records itself in the result's
history (``operations``), naming the operands by ``name@checksum``. Nothing here touches a model.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.errors import DataError
from crosscoder.personas.compose.directions import Operation, PersonaDirection, check_same_space

_REL_TOL = 1e-6
"""A vector whose norm falls below this fraction of its input's is treated as lying in the span (no direction left)."""


def scale(d: PersonaDirection, factor: float, name: str | None = None) -> PersonaDirection:
    """``factor * d``."""
    return d.derived(
        name or f"{factor:g}*{d.name}", d.vector_D * float(factor), Operation("scale", factor=float(factor))
    )


def normalise(d: PersonaDirection, name: str | None = None) -> PersonaDirection:
    """``d / ||d||`` (a zero direction is refused)."""
    return d.derived(name or f"unit({d.name})", d.unit(), Operation("normalise"))


def add(a: PersonaDirection, b: PersonaDirection, name: str | None = None) -> PersonaDirection:
    """``a + b`` (same model, hook and width)."""
    a.check_same_space(b)
    return a.derived(name or f"{a.name}+{b.name}", a.vector_D + b.vector_D, Operation("add", operands=(b.ref,)))


def subtract(a: PersonaDirection, b: PersonaDirection, name: str | None = None) -> PersonaDirection:
    """``a - b`` (same model, hook and width)."""
    a.check_same_space(b)
    return a.derived(name or f"{a.name}-{b.name}", a.vector_D - b.vector_D, Operation("subtract", operands=(b.ref,)))


def orthonormal_basis(vectors_ND: Float[Tensor, "N D"]) -> Float[Tensor, "K D"]:
    """An orthonormal basis of the rows' span by modified Gram–Schmidt (rows inside the span so far are skipped)."""
    basis: list[Tensor] = []
    for v in vectors_ND.to(torch.float64):
        w = v.clone()
        for _ in range(2):  # re-orthogonalise once: keeps the basis orthogonal to machine precision
            for q in basis:
                w = w - (w @ q) * q
        if float(w.norm()) > _REL_TOL * max(float(v.norm()), 1e-30):
            basis.append(w / w.norm())
    if not basis:
        return vectors_ND.new_zeros(0, vectors_ND.shape[-1])
    return torch.stack(basis).to(vectors_ND.dtype)


def remove_span(x_D: Tensor, against_ND: Tensor) -> Tensor:
    """`x` minus its orthogonal projection onto the span of the rows of `against`."""
    q_KD = orthonormal_basis(against_ND).to(torch.float64)
    x = x_D.to(torch.float64)
    return (x - (q_KD @ x) @ q_KD).to(x_D.dtype)


def project_out(d: PersonaDirection, against: list[PersonaDirection], name: str | None = None) -> PersonaDirection:
    """`d` without its component in the span of `against` (refused when nothing is left)."""
    check_same_space([d, *against])
    out = remove_span(d.vector_D, torch.stack([a.vector_D for a in against]))
    if float(out.norm()) <= _REL_TOL * d.norm:
        names = ", ".join(a.name for a in against)
        raise DataError(f"direction {d.name!r} lies in the span of {names}; projecting them out leaves nothing")
    op = Operation("project_out", operands=tuple(a.ref for a in against))
    return d.derived(name or f"{d.name}⊥", out, op)


def orthogonalise(directions: list[PersonaDirection], *, unit: bool = False) -> list[PersonaDirection]:
    """Gram–Schmidt in the given order: each result is the direction minus its projection on all earlier ones.

    The first is kept as is; norms are kept unless `unit`. A direction inside the span of the earlier ones is refused.
    """
    check_same_space(directions)
    out: list[PersonaDirection] = []
    for i, d in enumerate(directions):
        if i == 0:
            res = d
        else:
            vec = remove_span(d.vector_D, torch.stack([e.vector_D for e in directions[:i]]))
            if float(vec.norm()) <= _REL_TOL * d.norm:
                raise DataError(f"direction {d.name!r} lies in the span of the directions before it; drop it")
            op = Operation("orthogonalise", operands=tuple(e.ref for e in directions[:i]))
            res = d.derived(f"{d.name}⊥", vec, op)
        out.append(normalise(res, res.name) if unit else res)
    return out


def cosine_matrix(directions: list[PersonaDirection]) -> Float[Tensor, "N N"]:
    """Pairwise cosine similarities of a set of directions (same model, hook and width)."""
    check_same_space(directions)
    u_ND = torch.stack([d.unit() for d in directions])
    return u_ND @ u_ND.T


def combined_vector(terms: list[tuple[PersonaDirection, float]]) -> Float[Tensor, " D"]:
    """``sum_i c_i d_i`` of (direction, coefficient) pairs sharing one model, hook and width."""
    check_same_space([d for d, _ in terms])
    return torch.stack([c * d.vector_D for d, c in terms]).sum(0)
