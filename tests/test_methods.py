"""The diffing methods of issue 23 on a tiny planted run and on a model paired with itself."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import torch
from analysis_fixtures import PLANT_TRAIT, build_planted_run

from crosscoder.analysis.config import (
    AnalyzeConfig,
    EvidenceConfig,
    LabelConfig,
    RankConfig,
    SpliceConfig,
    SteeringConfig,
)
from crosscoder.analysis.methods import MethodResult, MethodRun, MethodsConfig, get_method, open_method_run, run_method
from crosscoder.analysis.methods.config import ADLConfig, DiffSAEConfig, FuzzingConfig
from crosscoder.bench.methods_score import Target, format_table, html_summary, score
from crosscoder.errors import ConfigError

TRAITS = [PLANT_TRAIT, "pirate", "sycophancy"]


def _configs(run_dir: Path) -> tuple[AnalyzeConfig, MethodsConfig]:
    analysis = AnalyzeConfig(run_dir=str(run_dir), labels=LabelConfig(traits=TRAITS, questions=3),
                             rank=RankConfig(n_candidates=5), splice=SpliceConfig(enabled=False),
                             steering=SteeringConfig(enabled=False), evidence=EvidenceConfig(baseline=False))  # fmt: skip
    # the fixture's crosscoder is an L1 one (no k of its own): the diff-SAE gets a k suited to a rank-1 plant
    methods = MethodsConfig(diff_sae=DiffSAEConfig(steps=300, batch_size=256, lr=3e-3, k=4),
                            adl=ADLConfig(questions=3, max_new_tokens=8),
                            fuzzing=FuzzingConfig(questions=3, max_new_tokens=8, samples=1, bootstrap=50))  # fmt: skip
    return analysis, methods


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("methods")
    mp = pytest.MonkeyPatch()
    mp.setenv("CROSSCODER_CACHE", str(root / "cache"))
    run_dir, models, direction = build_planted_run(root, n_tokens=6000, steps=400)
    analysis, methods = _configs(run_dir)
    yield open_method_run(analysis, methods, models=models), direction
    mp.undo()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=0))


def test_diff_sae_finds_and_labels_the_planted_direction(planted) -> None:
    run, direction = planted
    res = run_method(run, "diff_sae")
    top = res.candidates[0]
    assert top.kind == "diff_latent" and top.direction_D is not None
    assert _cos(top.direction_D, direction) >= 0.8  # 300 steps, k=4 on a rank-1 difference: 0.88 measured
    assert top.label == PLANT_TRAIT, top.evidence.label_evidence if top.evidence else None
    assert res.metrics["n_latents"] == 128 and (run.out_dir / "diff_sae" / "final").is_dir()
    assert (run.out_dir / "diff_sae.directions.safetensors").is_file()
    saved = json.loads((run.out_dir / "diff_sae.json").read_text())
    assert saved["candidates"][0]["label"] == PLANT_TRAIT and saved["skipped"] is None


def test_adl_mean_difference_points_along_the_plant_and_is_labelled(planted) -> None:
    run, direction = planted
    res = run_method(run, "adl")
    assert {c.position for c in res.candidates} <= {"all", "first_assistant", "last_assistant"}
    best = max(res.candidates, key=lambda c: _cos(cast(torch.Tensor, c.direction_D), direction))
    assert _cos(cast(torch.Tensor, best.direction_D), direction) >= 0.8
    assert best.evidence is not None and best.evidence.steering is not None
    assert len(best.evidence.steering.generations) == 3 * len(run.cfg.adl.steer_strengths)
    assert PLANT_TRAIT in res.labels()


def test_persona_vectors_rank_the_planted_trait_first(planted) -> None:
    run, _ = planted
    res = run_method(run, "persona_vectors")
    assert res.candidates[0].trait == PLANT_TRAIT and res.candidates[0].label == PLANT_TRAIT
    assert sorted(str(c.trait) for c in res.candidates) == sorted(TRAITS)
    assert res.candidates[0].score > res.candidates[1].score


def test_fuzzing_scores_every_trait(planted) -> None:
    run, _ = planted
    res = run_method(run, "fuzzing")
    assert sorted(str(c.trait) for c in res.candidates) == sorted(TRAITS)
    assert all(torch.isfinite(torch.tensor(c.score)) for c in res.candidates)
    assert [c.score for c in res.candidates] == sorted((c.score for c in res.candidates), reverse=True)
    assert all(c.label in (c.trait, "unlabelled") for c in res.candidates)


def test_model_with_itself_gets_no_persona_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSCODER_CACHE", str(tmp_path / "cache"))
    run_dir, models, _ = build_planted_run(tmp_path, same_model=True, n_tokens=3000, steps=100)
    analysis, methods = _configs(run_dir)
    run = open_method_run(analysis, MethodsConfig(methods=["diff_sae", "adl", "persona_vectors", "fuzzing"],
                                                  fuzzing=methods.fuzzing, adl=methods.adl), models=models)  # fmt: skip
    for name in run.cfg.methods:
        res = run_method(run, name)
        rec = score(res, Target(None, "null-self"))
        assert rec["false_labels"] == 0, (name, rec)
        if name != "fuzzing":
            assert res.candidates == [] and any("zero" in n for n in res.notes), (name, res.notes)


def test_unknown_method_and_config_errors_are_one_line() -> None:
    with pytest.raises(ConfigError, match="unknown method 'lda'; known: crosscoder, diff_sae, adl"):
        get_method("lda")
    with pytest.raises(ConfigError, match="methods.methods: unknown method 'x'"):
        MethodsConfig(methods=["x"])
    with pytest.raises(ConfigError, match="methods.adl.steer_strengths"):
        ADLConfig(steer_strengths=[0.0])


def test_diff_sae_is_skipped_on_a_series_with_the_reason() -> None:
    run = cast(MethodRun, SimpleNamespace(names=["base", "c1", "c2"]))
    reason = get_method("diff_sae").cannot_apply(run)
    assert reason is not None and "3" in reason
    rec = score(MethodResult("diff_sae", "run", skipped=reason), Target("pirate", "sft"))
    assert rec["skipped"] == reason and rec["top1_label_correct"] is None


def test_scores_table_and_html() -> None:
    from crosscoder.analysis.methods.base import MethodCandidate

    def result(method: str, labels: list[str]) -> MethodResult:
        cands = [
            MethodCandidate(rank=i + 1, name=str(i), kind="trait", score=1.0, label=lab) for i, lab in enumerate(labels)
        ]
        return MethodResult(method, "run", cands, seconds=2.0)

    recs = [score(result("adl", ["unlabelled", "pirate"]), Target("pirate", "sft")),
            score(result("adl", ["pirate", "pirate", "unlabelled"]), Target(None, "null-control"))]  # fmt: skip
    assert recs[0]["top1_label_correct"] is False and recs[0]["top5_label_correct"] is True
    assert recs[0]["rank_of_first_correct"] == 2 and recs[1]["false_labels"] == 1
    text = format_table(recs)
    assert "top1 0/1, top5 1/1, rank 2.0" in text and "1 false / 1 pairs" in text
    page = html_summary(recs, {"n_tokens": 10})
    assert "<svg" in page and "null-control" in page


def test_bench_refuses_unknown_names_and_bad_organisms(tmp_path: Path) -> None:
    from crosscoder.bench.methods import parse_args
    from crosscoder.errors import DataError

    with pytest.raises(ConfigError, match="--architectures: unknown architecture 'moe'; known: .*matryoshka"):
        parse_args(["--architectures", "batchtopk,moe"])
    with pytest.raises(ConfigError, match="--methods: unknown method 'lda'"):
        parse_args(["--methods", "crosscoder,lda"])
    with pytest.raises(ConfigError, match="--organism: 'pirate' is not KIND:TRAIT:PATH"):
        parse_args(["--organism", "pirate"])
    with pytest.raises(DataError, match="--organism: folder .* not found"):
        parse_args(["--organism", f"sft:pirate:{tmp_path / 'missing'}"])
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    opts = parse_args(["--organism", f"sft:pirate:{tmp_path / 'adapter'}", "--null", "self", "trainer.steps=10"])
    org = opts.organisms[0]
    assert (org.kind, org.trait, org.spec.adapter) == ("sft", "pirate", str(tmp_path / "adapter"))
    assert opts.nulls == ["self"] and opts.recovery.overrides == ["trainer.steps=10"]
    assert str(opts.recovery.out) == "results/recovery_methods.json"
