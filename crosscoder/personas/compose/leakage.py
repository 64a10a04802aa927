"""Cross-trait leakage: what an edit or a steering vector does to *every* trait of the library, and to capability.

A *variant* is a model with an optional edit active while it is measured (a steering context, or an adapter made by
surgery, loaded as its own model). Each variant is measured once (:func:`measure_variant`): every library trait's
expression on its held-out questions and the capability proxy. An edit's leakage column is its difference from
the variant it edits (its *reference*): the change in each trait's keyword rate (the behavioural score), the
change in each trait's persona-vector projection in units of the reference's spread, and the capability change.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from crosscoder.personas.compose.capability import Capability, Fact, capability_change, measure_capability
from crosscoder.personas.compose.expression import ExpressionConfig, TraitExpression, measure_expression
from crosscoder.personas.traits import Trait
from crosscoder.personas.vectors import PersonaVectors

log = logging.getLogger(__name__)


@dataclass
class VariantResult:
    """One model (+ edit) measured on every trait and on the capability proxy."""

    name: str
    description: str
    expression: dict[str, TraitExpression]
    capability: Capability
    seconds: float


@dataclass
class LeakageColumn:
    """The effect of one edit, relative to the variant it edits."""

    edit: str
    reference: str
    description: str
    delta: dict[str, float]
    """Trait -> change in expression score (keyword rate; projection for traits without keywords)."""
    projection_delta: dict[str, float]
    """Trait -> change in the persona-vector projection, in units of the reference's standard deviation."""
    perplexity_change: float
    """Relative change of the held-out perplexity."""
    accuracy_change: float
    """Absolute change of the factual accuracy."""
    capability_change: float
    """The larger of the two, as a fraction."""


@dataclass
class LeakageSetup:
    """What every variant is measured on."""

    traits: dict[str, Trait]
    vectors: dict[str, PersonaVectors]
    """The base model's persona vectors of every trait (one set for every variant)."""
    expression: ExpressionConfig
    heldout: list[list[dict[str, str]]]
    """(question, base answer) chats for the perplexity."""
    facts: list[Fact]
    results: dict[str, VariantResult] = field(default_factory=dict)


def measure_variant(
    setup: LeakageSetup,
    name: str,
    model: Any,
    edit: Callable[[], AbstractContextManager[None]] | None = None,
    description: str = "",
) -> VariantResult:
    """Measure `model` with `edit` (a context-manager factory, e.g. ``lambda: steer(model, terms)``) active."""
    t0 = time.perf_counter()
    with (edit or contextlib.nullcontext)():
        expr = measure_expression(model, setup.traits, setup.vectors, setup.expression)
        cap = measure_capability(model, setup.heldout, setup.facts)
    res = VariantResult(name, description, expr, cap, round(time.perf_counter() - t0, 1))
    setup.results[name] = res
    log.info("variant %s: %s; perplexity %.3f, accuracy %.3f (%.0f s)", name,
             ", ".join(f"{t} {e.score:.2f}" for t, e in expr.items()), cap.perplexity, cap.accuracy, res.seconds)  # fmt: skip
    return res


def leakage_column(edited: VariantResult, reference: VariantResult) -> LeakageColumn:
    """Every trait's expression change and the capability change of `edited` against `reference`."""
    delta, proj = {}, {}
    for trait, e in edited.expression.items():
        r = reference.expression[trait]
        delta[trait] = e.score - r.score
        proj[trait] = (e.projection - r.projection) / max(r.projection_std, 1e-6)
    ppl = edited.capability.perplexity / reference.capability.perplexity - 1.0
    acc = edited.capability.accuracy - reference.capability.accuracy
    return LeakageColumn(
        edited.name, reference.name, edited.description, delta, proj, ppl, acc,
        capability_change(edited.capability, reference.capability),
    )  # fmt: skip
