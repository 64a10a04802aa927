"""W&B logging of an analysis folder: the latent and candidate tables (HTML cells), summary, and an offline run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosscoder.analysis.export.wandb_log import (
    build_payload,
    candidate_table,
    latent_table,
    log_to_wandb,
    summary_metrics,
)
from crosscoder.analysis.report.data import load_analysis
from crosscoder.errors import ConfigError
from crosscoder.testing.report_sample import write_sample_analysis


@pytest.fixture
def analysis_dir(tmp_path: Path) -> Path:
    folder = write_sample_analysis(tmp_path / "run" / "analysis", n_latents=200, n_candidates=4, seed=2)
    cands = json.loads((folder / "candidates.json").read_text())
    cands[0]["top_examples"][0]["tokens"][cands[0]["top_examples"][0]["max_pos"]] = "<b>&"
    (folder / "candidates.json").write_text(json.dumps(cands))
    return folder


def test_tables_have_every_latent_and_html_evidence(analysis_dir: Path) -> None:
    import wandb

    data = load_analysis(analysis_dir)
    lt = latent_table(data)
    assert len(lt.data) == data.n_latents and set(lt.columns) < set(data.columns)
    assert {"latent", "rel_norm", "cos", "class", "score", "rank", "label", "freq_all", "nu_err"} <= set(lt.columns)
    assert "freq_assistant" not in lt.columns and "attr_user" not in lt.columns  # per-slice detail: artifact only
    nu = lt.columns.index("nu_err")
    assert any(row[nu] is None for row in lt.data)  # NaN -> empty cell, not a float W&B rejects
    ct = candidate_table(data)
    assert len(ct.data) == len(data.candidates) and {"evidence", "top_context", "logit_lens_diff"} <= set(ct.columns)
    top = ct.data[0][ct.columns.index("top_context")]
    assert isinstance(top, wandb.Html) and "&lt;b&gt;&amp;" in top.html and "rgba(253,126,20" in top.html
    # the HTML cells travel with the table into an artifact
    art = wandb.Artifact("t", type="check")
    art.add(ct, "candidates")
    html_entries = [n for n in art.manifest.entries if n.endswith(".html")]
    assert len(html_entries) == 3 * len(data.candidates)


def test_summary_and_payload(analysis_dir: Path) -> None:
    data = load_analysis(analysis_dir)
    s = summary_metrics(data)
    assert s["fve/base"] == pytest.approx(0.81) and s["n_candidates"] == len(data.candidates)
    assert s["class/shared"] == data.summary["class_counts"]["shared"]
    assert 0.9 <= s["splice/ft/frac_recovered"] <= 1.0
    assert s["top/1"].startswith(f"#{data.candidates[0]['latent']} ")
    first_labels = list(dict.fromkeys(c["label"] for c in data.candidates if c["label"] != "unlabelled"))
    assert s["personas"] == ", ".join(first_labels)
    payload = build_payload(data)
    assert {"latents", "candidates", "hist/rel_norm", "hist/cos", "plots/beta_scatter"} <= set(payload)


def test_auto_mode_follows_the_environment(analysis_dir: Path) -> None:
    assert log_to_wandb(analysis_dir, mode="auto") is None  # WANDB_MODE=disabled (conftest): nothing logged
    assert not (analysis_dir / "wandb").exists()


def test_bad_mode_refused(analysis_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(ConfigError, match="^analyze.export.wandb_mode: unknown mode 'sometimes'"):
        log_to_wandb(analysis_dir, mode="sometimes")


def test_offline_run_holds_tables_and_artifact(
    analysis_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    log_to_wandb(analysis_dir, mode="offline")  # an explicit mode wins over WANDB_MODE=disabled (conftest)
    runs = list((analysis_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = runs[0] / "files" / "media"
    tables = {p.name.split("_")[0] for p in (media / "table").glob("*.table.json")}
    assert tables == {"latents", "candidates"}
    assert len(list((media / "images" / "plots").rglob("*.png"))) == 4  # the report's four charts


def _sample_dashboards(analysis_dir: Path) -> list[int]:
    """dashboards/latents.json for three latents of the sample analysis, built from its candidates' evidence."""
    from crosscoder.analysis.dashboards.page import write_page
    from crosscoder.analysis.dashboards.records import LatentDashboard
    from crosscoder.analysis.records.candidate import LensTop, TopExample

    cands = json.loads((analysis_dir / "candidates.json").read_text())[:3]
    out = []
    for c in cands:
        ex = [TopExample.from_json({"pos": 0, "max_act": max(e["acts"]), **e}) for e in c["top_examples"]]
        lens = {k: LensTop.from_json(v) for k, v in c["logit_lens"].items()}
        out.append(LatentDashboard(c["latent"], c["class"], c["label"], c["rank"], 0.01, ex[0].max_act, 1.0, 0.9, 0.5,
                                   [3, 2, 1], ex[:2], [[], ex[2:3]], lens).to_json())  # fmt: skip
    folder = analysis_dir / "dashboards"
    folder.mkdir()
    (folder / "latents.json").write_text(json.dumps({"models": ["base", "ft"], "n_latents": 200, "n_bands": 2,
                                                     "n_live": 150, "density_all": [0.0] * 50 + [0.01] * 150,
                                                     "latents": out}))  # fmt: skip
    page = write_page(folder).read_text()
    assert "Latent dashboards" in page and f'"latent": {cands[0]["latent"]},' in page
    return [c["latent"] for c in cands]


def test_dashboards_are_logged_with_the_analysis(
    analysis_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crosscoder.testing.wandb_offline import offline_runs

    latents = _sample_dashboards(analysis_dir)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    log_to_wandb(analysis_dir, mode="offline")
    (run,) = offline_runs(analysis_dir)
    assert run.summary["latent_dashboards/nrows"] == len(latents) and "hist/log10_density/bins" in run.summary
    assert run.summary["dashboards/_type"] == "html-file"
    media = run.folder / "files" / "media" / "table"
    (table,) = [p for p in media.glob("latent_dashboards*.table.json")]
    rows = json.loads(table.read_text())
    assert [r[0] for r in rows["data"]] == latents and rows["columns"][-2:] == ["top_contexts", "band_contexts"]
