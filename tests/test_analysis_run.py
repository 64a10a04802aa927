"""End-to-end analysis on tiny models: the planted-direction organism, a model paired with itself, splice metrics,
and refusal of bad input. Crosscoders are trained with the real pipeline (`run_train`) on the tiny models."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from analysis_fixtures import PLANT_HOOK, PLANT_TRAIT, build_planted_run

from crosscoder.analysis.causal.splice import splice_metrics
from crosscoder.analysis.config import (
    AnalyzeConfig,
    EvidenceConfig,
    ExportConfig,
    LabelConfig,
    RankConfig,
    ReportConfig,
    SpliceConfig,
    SteeringConfig,
)
from crosscoder.analysis.labels.signals import check_persona_vectors
from crosscoder.analysis.run import resolve_run_dir, run_analysis
from crosscoder.errors import DataError, ModelError
from crosscoder.xc.config import CrosscoderConfig
from crosscoder.xc.model import Crosscoder

TRAITS = [PLANT_TRAIT, "pirate", "sycophancy"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("planted")
    mp = pytest.MonkeyPatch()
    mp.setenv("CROSSCODER_CACHE", str(root / "cache"))
    run_dir, models, direction = build_planted_run(root)
    cfg = AnalyzeConfig(run_dir=str(run_dir), labels=LabelConfig(traits=TRAITS, questions=3, persona_questions=6),
                        rank=RankConfig(n_candidates=8), splice=SpliceConfig(tokens=512),
                        steering=SteeringConfig(n_candidates=1, questions=3, max_new_tokens=10, strengths=[2.0, 4.0]))  # fmt: skip
    result = run_analysis(cfg, models=models)
    yield run_dir, models, direction, result
    mp.undo()


def test_planted_direction_is_found_labelled_and_causal(planted) -> None:
    run_dir, models, direction, res = planted
    top = res.candidates[0]
    assert top.klass == "ft_exclusive" and top.rank == 1
    cc = Crosscoder.load(run_dir / "final")
    d_ft = cc.W_dec_FMLD.detach()[top.latent, 1, 0]
    assert torch.nn.functional.cosine_similarity(d_ft, direction, dim=0) >= 0.9
    assert top.label == PLANT_TRAIT, top.label_evidence
    assert top.steering is not None and top.ablation is not None
    scores = top.steering.trait_score
    assert top.steering.trait == PLANT_TRAIT and top.steering.strengths[0] == 0.0
    assert scores[-1] > scores[0] and scores[1] > scores[0]
    assert top.ablation.drop > 0


def test_output_files_follow_the_format(planted) -> None:
    run_dir, _, _, res = planted
    out = run_dir / "analysis"
    for name in (
        "latents.parquet",
        "latents.csv",
        "latents.json",
        "candidates.json",
        "baseline.json",
        "splice.json",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    rows = json.loads((out / "latents.json").read_text())
    assert len(rows) == res.summary.n_latents and {"rel_norm", "nu_err", "class", "label", "runner_up"} <= set(rows[0])
    cand = json.loads((out / "candidates.json").read_text())[0]
    ex = cand["top_examples"][0]
    assert len(ex["tokens"]) == len(ex["acts"]) and ex["acts"][ex["max_pos"]] == pytest.approx(
        max(ex["acts"]), rel=1e-3
    )
    assert {"base", "ft", "diff"} <= set(cand["logit_lens"]) and len(cand["logit_lens"]["diff"]["promoted"]) == 15
    assert set(cand["label_evidence"]) == set(TRAITS) and set(cand["pos_neg"]) == set(TRAITS)
    assert "said_ids" not in cand["next_token_shift"]  # token ids feed the said signal; the file keeps the texts
    said = [ev["said"] for ev in cand["label_evidence"].values()]
    assert any(s != 0 for s in said) and all(
        ev["persona_signal"] == max(ev["cosine_signal"], ev["said_signal"]) for ev in cand["label_evidence"].values()
    )
    baseline = json.loads((out / "baseline.json").read_text())
    assert baseline["positions"]["all"]["n_tokens"] > 0 and baseline["hook"] == PLANT_HOOK
    splice = json.loads((out / "splice.json").read_text())
    assert splice["ft"]["ce_zero_ablation"] > splice["ft"]["ce_clean"] and splice["ft"]["kl"] >= 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["top_candidates"][0]["label"] == PLANT_TRAIT and summary["class_counts"]["ft_exclusive"] >= 1
    labelled = res.table[res.table["is_candidate"]]
    assert (labelled["label"] != "").all()


def test_model_paired_with_itself_has_no_exclusive_latents(tmp_path: Path) -> None:
    run_dir, models, _ = build_planted_run(tmp_path, same_model=True, n_tokens=6000, steps=400)
    res = run_analysis(
        AnalyzeConfig(
            run_dir=str(run_dir),
            labels=LabelConfig(enabled=False),
            splice=SpliceConfig(enabled=False),
            evidence=EvidenceConfig(baseline=False),
        ),
        models=models,
    )
    counts = res.summary.class_counts
    assert counts["ft_exclusive"] == 0 and counts["base_exclusive"] == 0, counts
    assert res.candidates == [] or all(c.klass != "ft_exclusive" for c in res.candidates)


def test_exact_reconstruction_splices_losslessly(planted) -> None:
    """A crosscoder with ReLU latents +-e_i reconstructs exactly: spliced CE == clean CE, KL 0, all CE recovered."""
    run_dir, models, _, _ = planted
    from crosscoder.data.api import ActivationSet

    info = json.loads((run_dir / "run.json").read_text())
    acts = ActivationSet.open(info["activations"], verify=False)
    D, M = models[0].d_model, 2
    cc = Crosscoder(CrosscoderConfig(architecture="l1", n_latents=2 * M * D, n_models=M, n_hooks=1, d_model=D)).eval()
    eye = torch.eye(M * D)
    with torch.no_grad():
        basis = torch.cat([eye, -eye])  # [F, M*D]
        cc.W_dec_FMLD.copy_(basis.view(-1, M, 1, D))
        cc.W_enc_MLDF.copy_(basis.T.reshape(M, 1, D, -1))
        cc.b_enc_F.zero_()
        cc.b_dec_MLD.zero_()
    out = splice_metrics(cc, models, [PLANT_HOOK], acts, 300, 4)
    for name in ("base", "ft"):
        m = out[name]
        assert m["ce_spliced"] == pytest.approx(m["ce_clean"], abs=1e-4) and m["kl"] == pytest.approx(0.0, abs=1e-5)
        assert m["frac_recovered"] == pytest.approx(1.0, abs=1e-3) and m["n_tokens"] > 0


def test_run_without_final_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(DataError, match="no finished checkpoint") as err:
        resolve_run_dir(AnalyzeConfig(run_dir=str(tmp_path / "run")))
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="does not exist"):
        resolve_run_dir(AnalyzeConfig(run_dir=str(tmp_path / "nope")))
    with pytest.raises(DataError, match="no finished training run"):
        resolve_run_dir(AnalyzeConfig(runs_root=str(tmp_path / "empty_runs")))


def test_persona_vectors_for_another_model_are_refused(planted) -> None:
    from crosscoder.personas.vectors import PersonaVectors

    _, models, _, _ = planted
    base, ft = models
    other = PersonaVectors(PLANT_TRAIT, base.content_hash, torch.zeros(ft.n_layers + 1, ft.d_model), "prompts")
    with pytest.raises(DataError, match="computed for model hash"):
        check_persona_vectors(other, ft)
    narrow = PersonaVectors(PLANT_TRAIT, ft.content_hash, torch.zeros(ft.n_layers + 1, ft.d_model // 2), "prompts")
    with pytest.raises(ModelError, match="width"):
        check_persona_vectors(narrow, ft)


def test_control_fine_tune_sets_aside_what_it_shares(planted, tmp_path: Path) -> None:
    """A control that makes the ft's own change takes the planted latent's score away; a control identical to the
    base leaves it in place."""
    from crosscoder.analysis.stats.control import harvest_control

    run_dir, models, _, res = planted
    top = res.candidates[0].latent
    quick = dict(labels=LabelConfig(traits=TRAITS, enabled=False), steering=SteeringConfig(enabled=False),
                 splice=SpliceConfig(enabled=False), evidence=EvidenceConfig(baseline=False),
                 report=ReportConfig(enabled=False), export=ExportConfig(saelens=False, wandb_mode="disabled"))  # fmt: skip
    same_as_ft = harvest_control(run_dir, models[1].spec)
    with_ft = run_analysis(
        AnalyzeConfig(run_dir=str(run_dir), out_dir=str(tmp_path / "a"), control_activations=str(same_as_ft), **quick),
        models=models,
    )
    row = with_ft.table.loc[top]
    assert row["score_uncontrolled"] > 0 and row["score"] <= 0.05 * row["score_uncontrolled"]
    assert row["rank"] != 1 and with_ft.summary.control_activations == str(same_as_ft)
    same_as_base = harvest_control(run_dir, models[0].spec)
    with_base = run_analysis(
        AnalyzeConfig(
            run_dir=str(run_dir), out_dir=str(tmp_path / "b"), control_activations=str(same_as_base), **quick
        ),
        models=models,
    )
    t = with_base.table  # the control stands in for the ft: what is left of its change is the normalisation's
    assert int(t.loc[top, "rank"]) == 1
    assert abs(t.loc[top, "score"] - t.loc[top, "score_uncontrolled"]) <= 0.05 * t.loc[top, "score_uncontrolled"]


def test_control_cache_is_checked_against_the_run(planted, tmp_path: Path) -> None:
    import copy

    from crosscoder.analysis.stats.control import open_control
    from crosscoder.data.api import ActivationSet

    run_dir, _, _, _ = planted
    cache = json.loads((run_dir / "run.json").read_text())["activations"]
    acts = ActivationSet.open(cache, verify=False)
    with pytest.raises(DataError, match="not found; make them with python -m crosscoder.analysis.control"):
        open_control(tmp_path / "missing", acts)
    other = copy.copy(acts)  # the same cache, recorded as made with another base model
    other.manifest = dataclasses.replace(
        acts.manifest, models=[dataclasses.replace(acts.manifest.models[0], content_hash="0" * 64)]
    )
    with pytest.raises(DataError, match="harvested with another base model"):
        open_control(cache, other)


def test_control_harvest_refuses_a_folder_without_a_run_or_its_cache(tmp_path: Path) -> None:
    from crosscoder.analysis.stats.control import harvest_control
    from crosscoder.models import ModelSpec

    spec = ModelSpec(source="smollm2-135m-instruct")
    with pytest.raises(DataError, match="has no run.json; pass a folder written by train.py"):
        harvest_control(tmp_path, spec)
    (tmp_path / "run.json").write_text(json.dumps({"models": [], "activations": str(tmp_path / "gone")}))
    with pytest.raises(DataError, match="activation cache of run .* is missing; re-run its training"):
        harvest_control(tmp_path, spec)


def test_files_round_trip_through_their_records(planted) -> None:
    """candidates.json, summary.json and the latent table read back through the typed records unchanged."""
    import pyarrow.parquet as pq

    from crosscoder.analysis.records.candidate import Candidate
    from crosscoder.analysis.records.summary import AnalysisSummary
    from crosscoder.analysis.records.table import latent_schema, read_table

    run_dir, _, _, res = planted
    out = run_dir / "analysis"
    cands = json.loads((out / "candidates.json").read_text())
    assert [Candidate.from_json(c).to_json() for c in cands] == cands
    assert [c.to_json() for c in res.candidates] == cands
    summary = json.loads((out / "summary.json").read_text())
    assert AnalysisSummary.from_json(summary).to_json() == summary
    assert summary["config"]["rank"]["n_candidates"] == 8 and summary["config"]["steering"]["n_candidates"] == 1
    table = pq.read_table(out / "latents.parquet")
    assert table.schema.remove_metadata() == latent_schema(table.column_names)
    cols = read_table(out)
    assert cols["is_candidate"].dtype == bool and cols["class"].dtype == object
    assert cols["rank"].dtype == float and int(cols["is_candidate"].sum()) == len(cands)
    with pytest.raises(DataError, match="missing key 'top_examples'"):
        Candidate.from_json({k: v for k, v in cands[0].items() if k != "top_examples"})


def test_dashboards_cover_every_live_latent(planted) -> None:
    run_dir, _, _, res = planted
    folder = run_dir / "analysis" / "dashboards"
    data = json.loads((folder / "latents.json").read_text())
    live = res.table[res.table["freq_all"] > 0]
    assert data["n_live"] == len(live) and {d["latent"] for d in data["latents"]} == set(live["latent"])
    first = data["latents"][: len(res.candidates)]
    assert [d["latent"] for d in first] == [c.latent for c in res.candidates]  # candidates first, by rank
    n_tokens = res.summary.n_tokens
    for d in data["latents"]:
        assert sum(d["hist"]) == pytest.approx(d["density"] * n_tokens, abs=0.5)  # every active token binned once
        assert {"base", "ft", "diff"} <= set(d["lens"]) and len(d["bands"]) == 5
        if d["top"]:
            assert d["top"][0]["max_act"] == pytest.approx(d["max_act"], rel=1e-3)
        for b, band in enumerate(d["bands"]):
            for e in band:  # a band example peaks inside its band (re-encoded, so up to float noise)
                assert b / 5 * d["max_act"] * (1 - 1e-3) <= e["max_act"] <= (b + 1) / 5 * d["max_act"] * (1 + 1e-3)
    top = next(d for d in data["latents"] if d["latent"] == res.candidates[0].latent)
    assert sum(len(b) for b in top["bands"]) > 0
    page = (folder / "dashboards.html").read_text()
    assert "<script id='data' type='application/json'>" in page and 'src="http' not in page and "<link" not in page


def test_fit_export_reconstructs_the_planted_organism_like_the_crosscoder(planted) -> None:
    from crosscoder.bench.export_fve import run as export_fve

    run_dir, _, _, res = planted
    meta = json.loads((run_dir / "analysis" / "saelens" / f"ft__{PLANT_HOOK}" / "cfg.json").read_text())["metadata"]
    assert meta["crosscoder_encoder"] == "fit" and meta["model_name"] == str((run_dir.parent / "ft").resolve())
    out = export_fve(run_dir, ["fit", "mirror", "own"])
    key = f"ft/{PLANT_HOOK}"
    assert out.ratio["fit"][key] >= 0.9, out  # the target: >= 90% of the crosscoder's per-model FVE
    assert out.export_fve["fit"][key] >= max(out.export_fve["mirror"][key], out.export_fve["own"][key]) - 1e-3
