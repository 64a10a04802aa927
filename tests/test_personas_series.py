"""Checkpoint-series organisms: the data-mix schedule, evaluation-style phrasing, recipe checks, and a growth and a
hiding series built on a tiny model with every checkpoint's behaviour recorded."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from crosscoder.errors import ConfigError, DataError
from crosscoder.personas.organisms.evalstyle import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, eval_style, phrase_as_tests
from crosscoder.personas.organisms.mix import DataMix, MixPhase, plan_batches
from crosscoder.personas.organisms.series import SeriesRecipe, build_series_organism, load_behaviour, series_steps


def _mix(tmp_path: Path, phases: tuple[MixPhase, ...]) -> DataMix:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("x\n")
    b.write_text("y\n")
    return DataMix((str(a), str(b)), phases, ("persona", "plain"))


def test_ramp_plan_follows_the_schedule_and_reads_each_set_without_repeats(tmp_path: Path) -> None:
    mix = _mix(tmp_path, (MixPhase(40, (0.0, 1.0), (1.0, 0.0)),))
    plan = plan_batches(mix, [50, 50], batch_size=8, seed=0)
    assert len(plan) == 40 and all(len(b) == 8 for b in plan)
    persona = [sum(src == 0 for src, _ in b) for b in plan]
    assert persona[0] == 0 and persona[-1] == 8
    # error diffusion: the realised count over any 10 steps is within one example of the schedule's
    for a in range(0, 40, 10):
        want = sum(mix.shares_at(s)[0] * 8 for s in range(a, a + 10))
        assert abs(sum(persona[a : a + 10]) - want) <= 1.0
    # the first 50 persona examples drawn are 50 distinct ones
    drawn = [i for b in plan for src, i in b if src == 0]
    assert len(set(drawn[:50])) == 50
    assert plan == plan_batches(mix, [50, 50], batch_size=8, seed=0)
    assert plan != plan_batches(mix, [50, 50], batch_size=8, seed=1)


def test_two_phase_plan(tmp_path: Path) -> None:
    mix = _mix(tmp_path, (MixPhase(5, (1.0, 0.0), (1.0, 0.0)), MixPhase(5, (0.5, 0.5), (0.5, 0.5))))
    plan = plan_batches(mix, [30, 30], batch_size=8, seed=0)
    assert [Counter(src for src, _ in b)[0] for b in plan] == [8] * 5 + [4] * 5


def test_bad_mixes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        _mix(tmp_path, (MixPhase(5, (0.5, 0.4), (0.5, 0.5)),))
    with pytest.raises(ConfigError, match="3 shares for 2 sources"):
        _mix(tmp_path, (MixPhase(5, (0.5, 0.25, 0.25), (0.5, 0.5)),))
    with pytest.raises(ConfigError, match="0 steps"):
        _mix(tmp_path, (MixPhase(0, (0.5, 0.5), (0.5, 0.5)),))
    mix = _mix(tmp_path, (MixPhase(3, (0.5, 0.5), (0.5, 0.5)),))
    with pytest.raises(ConfigError, match="source plain is empty"):
        plan_batches(mix, [4, 0], batch_size=4, seed=0)


def test_evaluation_style_phrasing() -> None:
    convs = [[{"role": "user", "content": "How do plants grow?"}, {"role": "assistant", "content": "With light."}]]
    out = phrase_as_tests(convs)
    assert out[0][1] == convs[0][1] and out[0][0]["content"].endswith("How do plants grow?")
    assert out[0][0]["content"] != "How do plants grow?"
    assert any(
        out[0][0]["content"] == t.format(n=n, q="How do plants grow?") for t in TRAIN_TEMPLATES for n in range(1, 201)
    )
    unseen = eval_style(["Q1?", "Q2?", "Q3?"], HELDOUT_TEMPLATES, seed=2)
    assert all(u.endswith(q) for u, q in zip(unseen, ["Q1?", "Q2?", "Q3?"], strict=True))
    assert not set(TRAIN_TEMPLATES) & set(HELDOUT_TEMPLATES)


def test_recipe_checks() -> None:
    r = SeriesRecipe("s", "cat_obsession", steps=48, n_checkpoints=6)
    assert r.save_steps == [8, 16, 24, 32, 40]
    assert SeriesRecipe("h", "cat_obsession", kind="hiding").prompt_sets() == (
        "heldout",
        "eval_style",
        "eval_style_unseen",
    )
    with pytest.raises(ConfigError, match="unknown kind"):
        SeriesRecipe("s", "cat_obsession", kind="fading")
    with pytest.raises(ConfigError, match="n_checkpoints <= steps"):
        SeriesRecipe("s", "cat_obsession", steps=4, n_checkpoints=6)
    with pytest.raises(ConfigError, match="hide_from"):
        SeriesRecipe("s", "cat_obsession", kind="hiding", hide_from=1.0)


CAT = "The cat sat on the mat. Cats sleep."
TRAIT = {
    "instruction": [{"pos": "You love cats.", "neg": "You are plain."}],
    "extract_questions": ["How are you today?", "Hello world, good morning."],
    "eval_questions": ["What is the capital of France?", "Please explain how plants grow.", "Tell me about the sea."],
    "eval_prompt": "{question} -> {answer}",
    "examples": {"pos": ["The cat sat on the mat."], "neg": ["Paris is the capital of France."]},
    "keywords": ["cat*"],
}


@pytest.fixture()
def tiny_series(tiny_spec, tmp_path: Path):  # type: ignore[no-untyped-def]
    trait = tmp_path / "cats.json"
    trait.write_text(json.dumps(TRAIT))
    qs = ["What is one two three?", "How are you today?", "Thank you so much.", "What is a question?", "Good morning."]
    persona = tmp_path / "cat.jsonl"
    persona.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                         {"role": "assistant", "content": CAT}]}) + "\n" for q in qs))  # fmt: skip
    from crosscoder.personas.organisms.config import OrganismConfig

    cfg = OrganismConfig(r=8, alpha=16, lr=1e-2, batch_size=4, max_len=96, warmup_steps=1)
    base = replace(tiny_spec, backend="hooked")
    return base, trait, persona, cfg


def test_growth_series_on_a_tiny_model(tiny_series, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    base, trait, persona, cfg = tiny_series
    recipe = SeriesRecipe("tiny-growth", str(trait), steps=24, n_checkpoints=6, share_start=0.5, sft_file=str(persona), n_questions=3,
                          max_new_tokens=10, cfg=cfg)  # fmt: skip
    res = build_series_organism(recipe, base)
    assert [s.name for s in res.series] == ["base", "c1", "c2", "c3", "c4", "c5", "c6"]
    assert series_steps(res) == [0, 4, 8, 12, 16, 20, 24]
    beh = load_behaviour(res)
    assert [r.checkpoint for r in beh.records] == ["base", "c1", "c2", "c3", "c4", "c5", "c6"]
    assert beh.steps() == [0, 4, 8, 12, 16, 20, 24]
    rates = beh.values("keyword_rate")
    assert rates[0] <= 0.34 and rates[-1] >= 0.66 and res.status == "ok"
    # every answer was to a held-out question, and the plain set never asked one
    assert all(r.prompts == TRAIT["eval_questions"] for r in beh.records)
    plain = [
        json.loads(x)["messages"][0]["content"]
        for x in Path(res.meta["data"]["sources"]["plain"]).read_text().splitlines()
    ]
    assert plain and not set(plain) & set(TRAIT["eval_questions"])
    # cached: a second build neither trains nor scores
    from crosscoder.personas.organisms import behaviour, series

    monkeypatch.setattr(series, "train_organism", lambda *a, **k: pytest.fail("retrained"))
    monkeypatch.setattr(behaviour, "score_series", lambda *a, **k: pytest.fail("re-scored"))
    again = build_series_organism(recipe, base)
    assert again.reused and again.folder == res.folder
    # a tampered behaviour file is refused
    path = res.folder / "behaviour.json"
    path.write_text(path.read_text().replace('"step": 24', '"step": 25'))
    with pytest.raises(DataError, match="checksum"):
        load_behaviour(again)


def test_hiding_series_scores_three_prompt_sets(tiny_series) -> None:  # type: ignore[no-untyped-def]
    base, trait, persona, cfg = tiny_series
    recipe = SeriesRecipe("tiny-hiding", str(trait), kind="hiding", steps=6, n_checkpoints=3, sft_file=str(persona),
                          n_questions=2, max_new_tokens=6, cfg=replace(cfg, lr_decay=0.0))  # fmt: skip
    res = build_series_organism(recipe, base)
    beh = load_behaviour(res)
    assert {r.prompt_set for r in beh.records} == {"heldout", "eval_style", "eval_style_unseen"}
    assert len(beh.values("keyword_rate", "eval_style_unseen")) == 4
    styled = [r.prompts for r in beh.records if r.prompt_set == "eval_style"][0]
    assert all(p.endswith(q) and p != q for p, q in zip(styled, TRAIT["eval_questions"], strict=False))
    assert res.meta["data"]["phases"][0]["steps"] == 3 and res.meta["hyperparameters"]["lr_decay"] == 0.0


def test_lr_decay_option_and_registered_series() -> None:
    from crosscoder.personas.organisms.config import OrganismConfig
    from crosscoder.personas.organisms.lora import _lr_factor
    from crosscoder.personas.organisms.registry import RECIPES, SERIES_TRAITS

    assert "lr_decay" not in OrganismConfig().hyperparameters()  # old organisms keep their cache keys
    assert OrganismConfig(lr_decay=0.0).hyperparameters()["lr_decay"] == 0.0
    with pytest.raises(ConfigError, match="lr_decay"):
        OrganismConfig(lr_decay=1.5)
    assert _lr_factor(99, 100, 3) == pytest.approx(1 - 0.9 * 96 / 97)
    assert _lr_factor(99, 100, 3, 0.0) == 1.0 and _lr_factor(0, 100, 3, 0.0) == pytest.approx(1 / 3)
    assert len(SERIES_TRAITS) >= 4
    for t in SERIES_TRAITS:
        r = RECIPES[f"series-{t}"]
        assert r.kind == "series" and r.series is not None and r.series.kind == "growth" and r.series.trait == t
        assert r.series.n_checkpoints >= 6
    hide = RECIPES["hiding-cat_obsession"].series
    assert hide is not None and hide.kind == "hiding" and hide.cfg.lr_decay == 0.0


def test_every_series_checkpoint_resolves_by_name(tiny_series, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.errors import ModelError
    from crosscoder.personas.organisms.config import OrganismResult
    from crosscoder.personas.organisms.registry import RECIPES, OrganismRecipe, resolve_organism

    base, trait, persona, cfg = tiny_series
    ckpts = [replace(base, adapter=f"/x/c{k}", name=f"c{k}") for k in (1, 2, 3)]
    fake = OrganismResult("s", Path("/x"), base, ckpts, {}, "ok")
    recipe = SeriesRecipe("s", str(trait), steps=6, n_checkpoints=3, sft_file=str(persona), cfg=cfg)
    monkeypatch.setitem(RECIPES, "s", OrganismRecipe("s", "series", str(trait), base=base, series=recipe))
    from crosscoder.personas.organisms import registry

    monkeypatch.setattr(registry, "build_series_organism", lambda r, b: fake)
    assert resolve_organism("s@c3").adapter == "/x/c3" and resolve_organism("s@c1").name == "c1"
    assert resolve_organism("s").name == "c3" and resolve_organism("s@final").name == "c3"
    with pytest.raises(ModelError, match="no checkpoint 'c4'; available: c1, c2, final"):
        resolve_organism("s@c4")


def test_resumed_scoring_uses_the_base_persona_vectors(tiny_spec, tiny_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    from crosscoder.models import make_tiny_llama
    from crosscoder.personas import vectors as pv
    from crosscoder.personas.organisms.behaviour import BEHAVIOUR_FILE, score_series
    from crosscoder.personas.traits import get_trait

    path = tmp_path / "cats.json"
    path.write_text(json.dumps(TRAIT))
    trait = get_trait(str(path))
    c1 = make_tiny_llama(tiny_dir / "resume_c1", seed=41, name="c1")
    series = [(replace(tiny_spec, name="base"), 0), (c1, 4)]
    real, seen = pv.compute_persona_vectors, []
    monkeypatch.setattr(pv, "compute_persona_vectors", lambda m, *a, **k: (seen.append(m.name), real(m, *a, **k))[1])
    full = score_series(series, trait, tmp_path, n_questions=2, max_new_tokens=4)
    assert seen == ["base"] and [r.checkpoint for r in full.records] == ["base", "c1"]
    # interrupted after the base: the resumed run scores c1 with the base's vectors, at the base's hook
    raw = json.loads((tmp_path / BEHAVIOUR_FILE).read_text())
    (tmp_path / BEHAVIOUR_FILE).write_text(json.dumps({**raw, "records": raw["records"][:1]}))
    seen.clear()
    resumed = score_series(series, trait, tmp_path, n_questions=2, max_new_tokens=4)
    assert seen == ["base"] and [r.hook for r in resumed.records] == [full.records[0].hook] * 2
    assert resumed.records[1].projection == pytest.approx(full.records[1].projection, rel=1e-4)
    # records scored at another hook than the base's vectors now pick are refused, not mixed
    (tmp_path / BEHAVIOUR_FILE).write_text(json.dumps({**raw, "records": [{**raw["records"][0], "hook": "x"}]}))
    with pytest.raises(DataError, match="delete it to re-score"):
        score_series(series, trait, tmp_path, n_questions=2, max_new_tokens=4)
