"""The screening benchmark's data and measures (no model): mixtures, training sets, ranking metrics, targets."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from crosscoder.bench.screening import BenchOptions, targets
from crosscoder.bench.screening_data import NEUTRAL_SOURCE, load_bench_data, mixtures, training_set
from crosscoder.bench.screening_eval import auroc, pearson, precision_at_k, spearman
from crosscoder.bench.screening_steer import _points, residual_norm, steer_alphas
from crosscoder.errors import ConfigError
from crosscoder.personas.traits import get_trait


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    traits = {t: get_trait(t) for t in ("pirate", "sycophancy", NEUTRAL_SOURCE)}
    return load_bench_data(traits, n_persona_pool=40, seed=0)


def test_neutral_examples_are_the_base_answers_without_persona(data) -> None:  # type: ignore[no-untyped-def]
    q = data.prompts[0]
    neutral = data.neutral[q][-1]["content"]
    for trait in ("pirate", "sycophancy"):
        persona = data.persona[trait][q][-1]["content"]
        assert persona != neutral
    # cat_obsession only appends a remark: its answer is the neutral one plus a suffix
    assert data.persona[NEUTRAL_SOURCE][q][-1]["content"].startswith(neutral + " ")
    assert not set(data.persona_pool) & set(data.neutral_pool)
    assert len(data.persona_pool) == 40 and len(data.prompts) == len(set(data.prompts)) >= 190


def test_mixtures_hold_the_contamination_and_never_share_a_prompt(data) -> None:  # type: ignore[no-untyped-def]
    for c, n_persona in ((0.05, 6), (0.10, 13), (0.25, 40)):
        mixes = mixtures(data, c, 120, draws=3, seed=1)
        for m in mixes:
            assert len(m.persona) == n_persona and len(m.neutral) == 120
            assert not set(m.persona) & set(m.neutral)
            assert abs(len(m.persona) / (len(m.persona) + len(m.neutral)) - c) < 0.01
        assert mixes[0].persona != mixes[1].persona  # different draws
    with pytest.raises(ConfigError, match="pools hold"):
        mixtures(data, 0.5, 120, draws=1, seed=0)


def test_training_sets_share_prompts_and_the_neutral_set_is_trait_free(data) -> None:  # type: ignore[no-untyped-def]
    rows = training_set(data, "pirate", 0.25, 100)
    assert sum(is_p for _, is_p in rows) == 25 and [q for q, _ in rows] == data.prompts[:100]
    assert training_set(data, "pirate", 0.0, 100) == training_set(data, None, 0.5, 100)  # one neutral organism


def test_ranking_metrics() -> None:
    assert auroc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auroc([1.0], [1.0]) == 0.5
    assert auroc([1.0, 3.0], [2.0, 0.0]) == 0.75
    assert precision_at_k([5.0, 1.0], [4.0, 3.0, 0.0]) == 0.5
    assert precision_at_k([2.0], [2.0]) == 0.0  # ties go against the positives
    assert pearson([1.0, 2.0, 3.0], [2.0, 4.0, 6.5]) == pytest.approx(0.9986, abs=1e-3)
    assert math.isnan(pearson([1.0, 1.0], [1.0, 2.0]))
    assert spearman([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 100.0]) == pytest.approx(1.0)  # monotone, not linear
    assert spearman([0.0, 1.0, 2.0, 3.0], [2.0, 1.0, 3.0, 4.0]) == pytest.approx(0.8)
    assert spearman([1.0, 2.0, 3.0], [5.0, 5.0, 6.0]) == pytest.approx(pearson([1.0, 2.0, 3.0], [1.5, 1.5, 3.0]))


def test_targets_report_misses_as_misses() -> None:
    scr = {t: {"0.10": {"auroc": a}} for t, a in zip("abcde", (0.95, 0.99, 0.91, 0.5, 0.89), strict=True)}
    steer = {"a": {"alphas": {"2": {"trait_drop": 0.6, "capability_change": 0.01},
                              "5": {"trait_drop": 0.9, "capability_change": 0.2}}},
             "b": {"alphas": {"2": {"trait_drop": None, "capability_change": 0.0}}}}  # fmt: skip
    six: list[dict[str, float]] = [{}] * 6
    out = targets({"screening": scr, "shift": {"a": {"shift_r": 0.9, "datasets": six},
                                               "b": {"shift_r": float("nan"), "datasets": six}},
                   "steering": steer})  # fmt: skip
    assert out["screening_auroc_10pct"] == {"traits_at_or_above_0.9": ["a", "b", "c"], "met": False}
    assert out["shift_r"]["met"] is False  # an undefined r is not a pass
    few = targets({"shift": {"a": {"shift_r": 0.99, "datasets": [{}] * 3}}})["shift_r"]
    assert few == {"per_trait": {"a": 0.99}, "n_datasets": {"a": 3}, "met": False}  # the issue asks for 6 datasets
    partial = targets({"shift": {"a": {"datasets": [{}]}}, "steering": {"a": {"base": {}}}})
    assert partial["shift_r"]["met"] is False and partial["preventative_steering"]["met"] is False
    assert "screening_auroc_10pct" not in partial  # a stage the run skipped is not reported as a miss
    assert out["preventative_steering"] == {"traits_with_drop_ge_50pct_and_capability_within_5pct": ["a"], "met": False}


def test_quick_options_shrink_sizes_not_the_recipe() -> None:
    quick, full = BenchOptions(quick=True), BenchOptions()
    assert (quick.steps, quick.n_train, quick.eval_tokens) == (full.steps, full.n_train, full.eval_tokens)
    assert quick.shares == [0.0, 0.5, 1.0] and len(full.shares) >= 6 and len(full.steer_traits) == 3
    assert len(full.steer_strengths) >= 2 and not full.alphas  # strengths fixed in advance, raw alphas only on request
    assert BenchOptions(quick=True, shares=[0.0, 0.1, 1.0]).shares == [0.0, 0.1, 1.0]  # given shares are kept
    six = [0.0, 0.05, 0.1, 0.25, 0.5, 1.0]
    assert BenchOptions(quick=True, shares=list(six)).shares == six  # even when they equal the full default
    with pytest.raises(ConfigError, match="steering"):
        BenchOptions(steer_strengths=[0.05, -0.01])
    assert BenchOptions(screen_only=True).stages == ["screening"]
    with pytest.raises(ConfigError, match="--stages"):
        BenchOptions(stages=["screening", "train"])


def test_bench_cli_dispatches_screening(monkeypatch: pytest.MonkeyPatch) -> None:
    from crosscoder.bench import __main__ as bench_main
    from crosscoder.bench import screening

    seen: list[list[str]] = []
    monkeypatch.setattr(screening, "main", lambda argv: seen.append(argv))
    bench_main.main(["screening", "--quick", "--out", "x.json"])
    assert seen == [["--quick", "--out", "x.json"]]


def test_steering_strength_gives_every_trait_the_same_push() -> None:
    r = 300.0
    for norm in (16.3, 33.6):
        alphas = steer_alphas([0.025, 0.05], r, norm)
        assert [a * norm for a in alphas] == pytest.approx([7.5, 15.0])  # ||alpha v|| = s R whatever ||v|| is
    with pytest.raises(ConfigError, match="must be > 0"):
        steer_alphas([0.05], 0.0, 16.0)
    opts = BenchOptions(steer_traits=["a"])
    assert [(k, s) for k, s, _ in _points(opts, r, 20.0)] == [("s0.025", 0.025), ("s0.05", 0.05)]
    raw = BenchOptions(steer_traits=["a"], alphas=[1.0, 2.0])
    assert _points(raw, None, 20.0) == [("1", None, 1.0), ("2", None, 2.0)]  # raw alphas: R is not needed


def test_residual_norm_is_the_median_token_norm_without_the_sink(tiny_spec) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.models import load_model
    from crosscoder.personas.tokens import chat_tokens

    model = load_model(tiny_spec)
    convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": "Fine, thanks."}]
             for q in ("Hello there?", "How do plants grow in the spring?")]  # fmt: skip
    hook = "blocks.2.hook_resid_post"
    norms = []
    for c in convs:
        ids = torch.tensor([chat_tokens(model.tokenizer, c).ids])
        _, cache = model.tl.run_with_cache(ids, names_filter=[hook])
        norms.append(cache[hook][0, 1:].norm(dim=-1))
    assert residual_norm(model, convs, hook) == pytest.approx(statistics.median(torch.cat(norms).tolist()), rel=1e-5)
    with pytest.raises(ConfigError, match="residual norm"):
        residual_norm(model, [], hook)


def _result(steering: dict, **over) -> dict:  # type: ignore[type-arg]
    opts = {"n_train": 96, "steps": 12, "eval_tokens": 64, "n_eval": 20, "answer_tokens": 48, "seed": 0}
    res = {"benchmark": "screening", "model": "m", "hook": "blocks.20.hook_resid_post", "options": opts,
           "vectors": {t: {"norm_at_hook": 16.0} for t in steering}, "steering": steering, "seconds": {"total": 10.0},
           "steering_scale": {"resid_norm": 300.0, "vector_norms": {t: 16.0 for t in steering}}}  # fmt: skip
    res.update(over)
    return res


def test_merge_unions_split_runs_and_refuses_unlike_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from crosscoder.bench.screening import main

    good = {"alphas": {"s0.05": {"trait_drop": 0.7, "capability_change": 0.02}}}
    paths = []
    for name, res in (("a", _result({"x": good})), ("b", _result({"y": good})), ("c", _result({"x": good})),
                      ("d", _result({"z": good}, hook="blocks.10.hook_resid_post"))):  # fmt: skip
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(res))
    main(["--merge", str(paths[0]), str(paths[1]), "--out", str(tmp_path / "m.json")])
    merged = json.loads((tmp_path / "m.json").read_text())
    assert sorted(merged["steering"]) == ["x", "y"] and merged["seconds"]["total"] == 20.0
    assert merged["targets"]["preventative_steering"]["met"] is True  # two traits now, each run alone had one
    assert sorted(merged["steering_scale"]["vector_norms"]) == ["x", "y"]
    with pytest.raises(ConfigError, match="already measured"):
        main(["--merge", str(paths[0]), str(paths[2]), "--out", str(tmp_path / "m2.json")])
    with pytest.raises(ConfigError, match="field hook"):
        main(["--merge", str(paths[0]), str(paths[3]), "--out", str(tmp_path / "m3.json")])
    assert not (tmp_path / "m2.json").exists()
