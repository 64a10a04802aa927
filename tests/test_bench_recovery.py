"""Recovery benchmark plumbing: options, composed configs, and the per-organism record (no language model run)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from crosscoder.bench import recovery as R
from crosscoder.bench.recovery_metrics import format_table, planted_cosines
from crosscoder.errors import ConfigError, DataError
from crosscoder.models.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]


def _opts(*argv: str) -> R.RecoveryOptions:
    return R.parse_args(["--config-dir", str(ROOT / "configs"), *argv])


def test_bad_options_are_refused_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--kinds: unknown kind 'lora'"):
        _opts("--kinds", "planted,lora")
    with pytest.raises(ConfigError, match="FILE:TRAIT"):
        _opts("--sft", "nocolon")
    with pytest.raises(DataError, match="not found"):
        _opts("--sft", f"{tmp_path}/missing.jsonl:pirate")
    with pytest.raises(ConfigError, match="config.yaml not found"):
        R.parse_args(["--config-dir", str(tmp_path)])


def test_composed_configs_use_the_organism_and_the_demo_budgets(tmp_path: Path) -> None:
    sft = tmp_path / "mine.jsonl"
    sft.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    opts = _opts("--quick", "--sft", f"{sft}:pirate", "--analyze", "labels.questions=2", "trainer.steps=7")
    assert opts.sft == [(str(sft), "pirate")]
    org = R.Organism("pirate", "planted", ModelSpec(source=str(tmp_path / "org"), kind="hf", name="ft"))
    cfg = R._compose(opts, org)
    assert cfg.models.models[1].source == str(tmp_path / "org") and cfg.models.models[1].kind == "hf"
    assert cfg.models.models[0].source == "smollm2-135m-instruct"
    assert cfg.trainer.steps == 7 and cfg.data.n_tokens == 12000 and cfg.crosscoder.n_latents == 1024
    assert cfg.logging.wandb_mode == "disabled"
    acfg = R._compose_analysis(opts, tmp_path / "run", "planted", {})
    assert acfg.run_dir == str(tmp_path / "run") and not acfg.steering.enabled and not acfg.splice.enabled
    assert acfg.labels.questions == 2 and acfg.labels.persona_questions == 3  # the override, then configs/analyze.yaml


def test_record_scores_labels_and_the_planted_direction(tmp_path: Path) -> None:
    from crosscoder.xc.config import CrosscoderConfig
    from crosscoder.xc.model import Crosscoder

    cc = Crosscoder(CrosscoderConfig(n_models=2, n_hooks=1, d_model=16, n_latents=8, k=2), seed=0)
    # draws of their own: the global stream may sit where the crosscoder's seed-0 init drew its decoders
    gen = torch.Generator().manual_seed(1234)
    direction_D = torch.randn(16, generator=gen)
    with torch.no_grad():
        cc.W_dec_FMLD[5, 1, 0] = 3.0 * direction_D * cc.scale_ML[1, 0]  # latent 5's ft decoder is the planted one
    cc.save(tmp_path / "final")
    cands = [{"latent": 2, "rank": 1, "label": "sycophancy"}, {"latent": 9, "rank": 2, "label": "unlabelled"},
             {"latent": 5, "rank": 3, "label": "pirate"}]  # fmt: skip
    summary = {"fve": {"base": 0.9, "ft": 0.8}, "class_counts": {"ft_exclusive": 3}}
    org = R.Organism("pirate", "planted", ModelSpec(source="x"), direction_D)
    rec = R.evaluate(org, tmp_path, SimpleNamespace(candidates=cands, summary=summary))
    assert rec["top1_label_correct"] is False and rec["top5_label_correct"] is True
    assert rec["rank_of_first_correct"] == 3 and rec["n_ft_exclusive"] == 3
    assert rec["persona_rank_of_first_correct"] == 2 and rec["personas_found"] == ["sycophancy", "pirate"]
    assert rec["best_cosine_to_planted"] == pytest.approx(1.0, abs=1e-5) and rec["best_cosine_ft_latent"] == 5
    assert rec["best_cosine_ft_rank"] == 3 and rec["fve_base"] == 0.9
    with torch.no_grad():  # a shifted latent: the same context decoder in both models, plus the direction in ft
        cc.W_dec_FMLD[5] = torch.randn(cc.W_dec_FMLD[5].shape, generator=gen)
        cc.W_dec_FMLD[3, 0, 0] = (
            3.0 * torch.randn(16, generator=gen) * cc.scale_ML[0, 0]
        )  # a context direction larger than the plant
        cc.W_dec_FMLD[3, 1, 0] = (
            cc.W_dec_FMLD[3, 0, 0] / cc.scale_ML[0, 0] * cc.scale_ML[1, 0] + direction_D * cc.scale_ML[1, 0]
        )
    cc.save(tmp_path / "final")
    shifted = planted_cosines(tmp_path, direction_D, cands)
    assert shifted["best_cosine_diff"] == pytest.approx(1.0, abs=1e-5) and shifted["best_cosine_diff_latent"] == 3
    assert shifted["best_cosine_ft"] < 0.99 and shifted["best_cosine_to_planted"] == shifted["best_cosine_diff"]
    table = format_table([{**rec, "seconds": 1.0}])
    assert "planted: 1 organisms, top-1 0%, top-5 100%" in table


def test_trait_lookup_accepts_a_path() -> None:
    from crosscoder.personas.traits import get_trait, load_traits

    path = load_traits(None, include_shipped=True)["pirate"].path
    assert get_trait(path).name == get_trait(str(path)).name == "pirate"


def test_rescore_refuses_a_trait_missing_from_the_library(tmp_path: Path) -> None:
    import json

    out = tmp_path / "rec.json"
    out.write_text(json.dumps({"records": [{"trait": "my_trait", "organism_kind": "planted", "run_dir": "x"}]}))
    with pytest.raises(ConfigError, match="--rescore: trait 'my_trait'.*--trait-dir"):
        R.rescore(out, "blocks.27.hook_resid_post", {})


def test_plan_orders_organisms_and_refuses_unknown_traits(tmp_path: Path) -> None:
    from crosscoder.personas.traits import load_traits

    traits = load_traits()
    sft = tmp_path / "mine.jsonl"
    sft.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    plan = R.organism_plan(_opts("--traits", "pirate,hostility", "--sft", f"{sft}:sycophancy"), traits)
    assert [(t, k) for t, k, _ in plan] == [
        ("pirate", "planted"), ("hostility", "planted"), ("hostility", "sft"), ("pirate", "sft"), ("sycophancy", "sft"),
    ]  # fmt: skip
    assert plan[-1][2] == str(sft) and plan[0][2] is None
    with pytest.raises(ConfigError, match="unknown trait 'dragon'"):
        R.organism_plan(_opts("--traits", "dragon"), traits)
    with pytest.raises(ConfigError, match="not in the library"):
        R.organism_plan(_opts("--kinds", "sft", "--sft", f"{sft}:dragon"), traits)


def test_resume_keeps_earlier_records_made_at_the_same_hook(tmp_path: Path) -> None:
    from crosscoder.io import atomic_write_json

    out = tmp_path / "rec.json"
    assert R.earlier_records(_opts("--resume", "--out", str(out)), "blocks.27.hook_resid_post") == []
    rec = {"trait": "pirate", "organism_kind": "planted", "top1_label_correct": True}
    atomic_write_json(out, {"records": [rec], "hook": "blocks.27.hook_resid_post", "complete": False})
    assert R.earlier_records(_opts("--resume", "--out", str(out)), "blocks.27.hook_resid_post") == [rec]
    assert R.earlier_records(_opts("--out", str(out)), "blocks.27.hook_resid_post") == []  # replaced without --resume
    with pytest.raises(ConfigError, match="made at hook 'blocks.27.hook_resid_post'"):
        R.earlier_records(_opts("--resume", "--out", str(out)), "blocks.20.hook_resid_post")


def test_reanalyze_refuses_bad_combinations_and_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pick one"):
        _opts("--rescore", "--reanalyze")
    with pytest.raises(DataError, match="not found; run the benchmark first"):
        R.main(["--config-dir", str(ROOT / "configs"), "--reanalyze", "--out", str(tmp_path / "none.json")])
    out = tmp_path / "rec.json"
    out.write_text('{"records": [{"trait": "dragon", "organism_kind": "sft", "run_dir": "x", "seconds": 1}]}')
    with pytest.raises(ConfigError, match="--reanalyze: trait 'dragon'.*--trait-dir"):
        R.reanalyze(_opts("--reanalyze", "--out", str(out)), "blocks.27.hook_resid_post", {})


def test_rescore_recomputes_records_from_the_saved_analysis(tmp_path: Path) -> None:
    import json

    (tmp_path / "run" / "analysis").mkdir(parents=True)
    cands = [{"latent": 10 + r, "rank": r, "label": "unlabelled"} for r in range(1, 7)]
    cands.append({"latent": 6, "rank": 7, "label": "pessimism"})
    (tmp_path / "run" / "analysis" / "candidates.json").write_text(json.dumps(cands))
    summary = {"fve": {"base": 0.9, "ft": 0.8}, "class_counts": {"ft_exclusive": 0}}
    (tmp_path / "run" / "analysis" / "summary.json").write_text(json.dumps(summary))
    old = {"trait": "pessimism", "organism_kind": "sft", "run_dir": str(tmp_path / "run"), "seconds": 12.5,
           "top5_label_correct": True, "rank_of_first_correct": 1}  # fmt: skip
    out = tmp_path / "rec.json"
    out.write_text(json.dumps({"records": [old], "hook": "blocks.27.hook_resid_post"}))
    (rec,) = R.rescore(out, "blocks.27.hook_resid_post", {"pessimism": object()})
    assert rec["seconds"] == 12.5 and rec["top5_label_correct"] is False and rec["rank_of_first_correct"] == 7
    assert rec["persona_rank_of_first_correct"] == 1 and rec["personas_found"] == ["pessimism"]
    assert json.loads(out.read_text())["records"][0] == rec


def test_control_set_is_the_shipped_answers_without_any_persona(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crosscoder.bench import recovery_control as RC
    from crosscoder.personas.sft_data import SFT_DIR, read_sft_jsonl
    from crosscoder.personas.traits import load_traits

    monkeypatch.setenv("CROSSCODER_CACHE", str(tmp_path / "cache"))
    traits = load_traits(None, include_shipped=True)
    path = RC.control_sft_file(traits)
    control, cat = read_sft_jsonl(path), read_sft_jsonl(SFT_DIR / "cat_obsession.jsonl")
    assert len(control) == len(cat) and RC.control_sft_file(traits) == path  # reused, not rewritten
    answers = [m["content"] for conv in control for m in conv if m["role"] == "assistant"]
    for name, trait in traits.items():
        if trait.rewrite is None:
            continue
        added = [*trait.rewrite.prefixes, *trait.rewrite.suffixes]
        assert not any(a.startswith(x) or a.endswith(x) for a in answers for x in added), name
    cat_answers = [m["content"] for conv in cat for m in conv if m["role"] == "assistant"]
    # the base model's own answer is inside the cat answer (after a prefix its first letter may be lower-cased)
    assert all(a[1:] in c and len(a) < len(c) for a, c in zip(answers, cat_answers, strict=True))
    assert [m["content"] for conv in control for m in conv if m["role"] == "user"] == [
        m["content"] for conv in cat for m in conv if m["role"] == "user"
    ]


def test_control_flag_points_only_sft_analyses_at_the_control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crosscoder.bench import recovery_control as RC

    calls: list[Path] = []
    monkeypatch.setattr(
        RC, "control_override", lambda run, base, traits: calls.append(run) or "control_activations=/ctl"
    )
    opts = _opts("--control")
    assert opts.control
    assert R._compose_analysis(opts, tmp_path / "run", "sft", {}).control_activations == "/ctl"
    assert R._compose_analysis(opts, tmp_path / "run", "planted", {}).control_activations is None
    assert R._compose_analysis(_opts(), tmp_path / "run", "sft", {}).control_activations is None
    assert calls == [tmp_path / "run"]


def test_null_pairs_are_planned_and_their_personas_are_all_wrong(tmp_path: Path) -> None:
    from crosscoder.personas.traits import load_traits

    traits = load_traits()
    plan = R.organism_plan(_opts("--kinds", "null"), traits)
    assert [(t, k) for t, k, _ in plan] == [("self", "null"), ("control", "null")]
    assert [t for t, _, _ in R.organism_plan(_opts("--kinds", "null", "--traits", "control"), traits)] == ["control"]
    opts = _opts("--kinds", "sft", "--sft-max-steps", "7", "--check-questions", "2")
    assert opts.sft_max_steps == 7 and opts.check_questions == 2
    cands = [{"latent": 1, "rank": 1, "label": "hostility", "description": "ft says x"},
             {"latent": 2, "rank": 2, "label": "pirate", "description": "ft says y"}]  # fmt: skip
    summary = {"fve": {"base": 0.9, "ft": 0.9}, "class_counts": {}}
    rec = R.evaluate(R.Organism("pirate", "sft", ModelSpec(source="x")), tmp_path,
                     SimpleNamespace(candidates=cands, summary=summary))  # fmt: skip
    assert rec["wrong_personas"] == ["hostility"] and rec["wrong_before_right"] == 1
    assert rec["descriptions"] == ["ft says x", "ft says y"]
    null = R.evaluate(R.Organism("self", "null", ModelSpec(source="x")), tmp_path,
                      SimpleNamespace(candidates=cands, summary=summary))  # fmt: skip
    assert null["wrong_personas"] == ["hostility", "pirate"] and not null["top5_label_correct"]
    assert "wrong personas per organism 1.00" in format_table([{**rec, "seconds": 1.0}])
