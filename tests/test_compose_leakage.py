"""Leakage on a tiny model: every trait measured per variant, an edit's column against its reference, the report."""

from __future__ import annotations

import functools
import re

import pytest
import torch

from crosscoder.errors import DataError
from crosscoder.models import load_model
from crosscoder.personas.compose.capability import Fact, read_facts
from crosscoder.personas.compose.directions import PersonaDirection, Provenance
from crosscoder.personas.compose.expression import ExpressionConfig, relative_change
from crosscoder.personas.compose.leakage import LeakageSetup, leakage_column, measure_variant
from crosscoder.personas.compose.report import Report, leakage_heatmap, leakage_table, render
from crosscoder.personas.compose.steer import steer
from crosscoder.personas.traits import get_trait
from crosscoder.personas.vectors import compute_persona_vectors


def test_shipped_facts_are_valid_and_balanced(tmp_path) -> None:
    facts = read_facts()
    assert len(facts) == 40 and len({f.question for f in facts}) == 40
    assert sorted({f.answer for f in facts}) == [0, 1, 2, 3]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "choices": ["a"], "answer": 0}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        read_facts(bad)


def test_relative_change() -> None:
    assert relative_change(0.5, 1.0, 0.0) == 0.5
    assert relative_change(0.2, 0.6, 0.2) == 0.0
    assert relative_change(0.3, 0.3, 0.3) != relative_change(0.3, 0.3, 0.3)  # NaN when the fine-tune added nothing


def test_leakage_column_and_report(tiny_spec) -> None:
    m = load_model(tiny_spec)
    traits = {t: get_trait(t) for t in ("pirate", "cat_obsession")}
    vectors = {t: compute_persona_vectors(m, tr, use_cache=False) for t, tr in traits.items()}
    convs = [[{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "hello world good morning"}]]
    setup = LeakageSetup(traits, vectors, ExpressionConfig(n_questions=2, max_new_tokens=4, batch_size=4), convs,
                         [Fact("Count?", ("one", "two"), 0)])  # fmt: skip
    ref = measure_variant(setup, "base", m)
    hook = "blocks.1.hook_resid_post"
    d = PersonaDirection("big", torch.full((m.d_model,), 1.0), m.content_hash, m.name, hook, Provenance("file"))
    edited = measure_variant(setup, "steer", m, functools.partial(steer, m, [(d, 30.0)]))
    assert set(ref.expression) == set(traits) and all(e.n == 2 for e in ref.expression.values())
    col = leakage_column(edited, ref)
    assert set(col.delta) == set(traits)
    assert col.perplexity_change != 0.0  # the steering moved the perplexity
    assert col.capability_change == max(abs(col.perplexity_change), abs(col.accuracy_change))
    html = render(
        Report("t", heatmaps=[leakage_heatmap([col], sorted(traits))], tables=[leakage_table([col], sorted(traits))])
    )
    assert html.count('<svg class="chart"') == 1 and "<table>" in html and "steer (vs base)" in html
    assert f"<title>capability change / steer: {col.capability_change:+.4g}</title>" in html  # a hover per cell
    # self-contained: no external fetches (the SVG xmlns is a namespace name, not a request)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html) and "<script" not in html


def test_heatmap_chart_has_a_hover_per_finite_cell() -> None:
    from crosscoder import charts

    chart = charts.heatmap([[0.5, float("nan")], [-0.25, 1.5]], ["a", "b"], ["e1", "e2"], "t", limit=1.0)
    assert chart is not None and len(chart.tips) == 3 and chart.tips["cell-1-0"] == "b / e1: -0.25"
    svg = charts.inline(chart, "t")
    assert svg.count("<title>") == 3 and "a / e2" not in svg and "+1.50" in svg
    assert charts.heatmap([], [], [], "empty") is None
