"""Steering with one or several persona directions, only inside a context manager.

``steer(model, [(d1, c1), (d2, c2), ...])`` adds ``sum_i c_i d_i`` at each hook the directions name (directions at
one hook are summed into a single edit) for every forward pass inside the ``with`` block, HF ``generate`` and
TransformerLens runs alike; ``ablate(model, directions)`` removes the residual's component in their span instead.
All hooks are removed when the block exits, also when the body raises. Weights are never modified, and nothing is
saved: see :mod:`crosscoder.personas.compose.surgery` for the one command that writes directions into a new adapter.

A direction must belong to the model it is applied to (same content hash and width); a fine-tune shares its base's
residual basis, so a base direction may be applied to a fine-tune when the caller passes the fine-tune's hash in
`allow_models` (the benchmark does this explicitly, e.g. steering an organism along the base's persona vector).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crosscoder.errors import ConfigError
from crosscoder.models.residual import Edit, edit_residual
from crosscoder.personas.compose.directions import PersonaDirection
from crosscoder.personas.compose.ops import combined_vector, orthonormal_basis

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel


def _check(model: LoadedModel, directions: list[PersonaDirection], allow_models: tuple[str, ...]) -> None:
    for d in directions:
        d.check_model(model.content_hash, model.d_model, model.name, accept=allow_models)
    model.check_hooks(sorted({d.hook for d in directions}))


def _by_hook(directions: list[PersonaDirection]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(directions):
        groups.setdefault(d.hook, []).append(i)
    return groups


def add_edit(vector_D: Tensor) -> Edit:
    """An edit adding `vector_D` at every position."""
    v = vector_D.detach().float()

    def edit(x: Tensor) -> Tensor:
        return x + v.to(dtype=x.dtype, device=x.device)

    return edit


def ablate_edit(basis_KD: Tensor) -> Edit:
    """An edit removing the component of the residual in the span of orthonormal rows `basis_KD`."""
    q = basis_KD.detach().float()

    def edit(x: Tensor) -> Tensor:
        qx = q.to(dtype=x.dtype, device=x.device)
        return x - (x @ qx.T) @ qx

    return edit


@contextmanager
def steer(
    model: LoadedModel, terms: list[tuple[PersonaDirection, float]], *, allow_models: tuple[str, ...] = ()
) -> Iterator[None]:
    """Add ``sum_i c_i d_i`` at the directions' hooks inside the block; hooks are removed on exit, exceptions included."""
    if not terms:
        raise ConfigError("steer: no directions given; pass at least one (direction, coefficient)")
    directions = [d for d, _ in terms]
    _check(model, directions, allow_models)
    with ExitStack() as stack:
        for hook, idx in _by_hook(directions).items():
            vec = combined_vector([terms[i] for i in idx])
            stack.enter_context(edit_residual(model, hook, add_edit(vec)))
        yield


@contextmanager
def ablate(
    model: LoadedModel, directions: list[PersonaDirection], *, allow_models: tuple[str, ...] = ()
) -> Iterator[None]:
    """Project the residual onto the orthogonal complement of the directions (per hook) inside the block."""
    if not directions:
        raise ConfigError("ablate: no directions given; pass at least one")
    _check(model, directions, allow_models)
    with ExitStack() as stack:
        for hook, idx in _by_hook(directions).items():
            basis = orthonormal_basis(torch.stack([directions[i].vector_D for i in idx]))
            stack.enter_context(edit_residual(model, hook, ablate_edit(basis)))
        yield
