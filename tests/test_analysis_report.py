"""HTML report, plots and the headless-Chromium check, on synthetic analysis folders (no models needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from crosscoder import charts
from crosscoder.analysis.cli import check_report_main as main
from crosscoder.analysis.report.check import check_report, find_chromium, inspect_png, screenshot
from crosscoder.analysis.report.data import load_analysis
from crosscoder.analysis.report.html import highlighted_tokens
from crosscoder.analysis.report.page import write_report
from crosscoder.analysis.report.plots import PLOT_NAMES, make_plots
from crosscoder.errors import DataError
from crosscoder.testing.report_sample import write_sample_analysis

NASTY = "<script>alert('x')</script>"


@pytest.fixture
def analysis_dir(tmp_path: Path) -> Path:
    """A sample analysis folder whose first candidate carries hostile tokens and text."""
    folder = write_sample_analysis(tmp_path / "run" / "analysis", n_latents=400, n_candidates=6, seed=1)
    cands = json.loads((folder / "candidates.json").read_text())
    c0 = cands[0]
    c0["top_examples"][0]["tokens"][-1] = NASTY
    c0["top_examples"][0]["tokens"][-2] = "a & b\nnext"
    c0["top_examples"][0]["tokens"][-3] = "\x01"
    c0["logit_lens"]["diff"]["promoted"][0] = ["</td><b>bold", 9.0]
    c0["steering"]["generations"][0]["text"] = "<img src=x onerror=alert(1)> & more"
    (folder / "candidates.json").write_text(json.dumps(cands))
    return folder


def test_report_is_self_contained_and_complete(analysis_dir: Path) -> None:
    out = write_report(analysis_dir)
    html = out.read_text(encoding="utf-8")
    data = load_analysis(analysis_dir)
    # offline: no external fetches (the SVG xmlns is a namespace name, not a request)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert "<link" not in html and "@import" not in html
    # every candidate is an expandable row with its label or "unlabelled", the first one open
    for c in data.candidates:
        assert f'id="latent-{c["latent"]}"' in html
    assert html.count('<details class="cand"') == len(data.candidates)
    assert html.count('<details class="cand" id="latent-') == len(data.candidates)
    assert 'class="cand" id="latent-{}" open'.format(data.candidates[0]["latent"]) in html
    labelled = [c["label"] for c in data.candidates if c["label"] != "unlabelled"]
    assert labelled and all(f"<b>{lab}</b>" in html for lab in labelled)
    assert any(c["label"] == "unlabelled" for c in data.candidates) and "label-unl" in html
    # the personas line links every labelled candidate to its entry, with its model-diff rank
    personas = html[html.index("Personas found") :].split("</p>", 1)[0]
    for c in data.candidates:
        shown = f'<a href="#latent-{c["latent"]}">{c["latent"]}</a> (#{c["rank"]},' in personas
        assert shown == (c["label"] != "unlabelled")
    # summary numbers, splice metrics and the baseline's position classes are shown
    counts = data.summary["class_counts"]
    assert f'<div class="v">{counts["shared"]:,}</div>' in html
    assert "fraction of CE recovered" in html and "first_assistant" in html and "last_assistant" in html
    # charts: two histograms, the scatter (one labelled point per candidate with finite nu) and the score bars
    assert html.count('<svg class="chart"') >= 4
    n_scatter = sum(1 for c in data.candidates if c["nu_err"] is not None and c["nu_recon"] is not None)
    assert html.count('class="pt-hi"') == n_scatter


def test_report_escapes_tokens_and_text(analysis_dir: Path) -> None:
    html = write_report(analysis_dir).read_text(encoding="utf-8")
    assert NASTY not in html and "<img src=x" not in html and "</td><b>bold" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; more" in html
    assert "a &amp; b" in html and "&#8629;" in html  # newline shown as a return glyph
    assert "\x01" not in html and '<span class="nl">\\x01</span>' in html  # control bytes shown as hex
    # each model's greedy continuation at the top contexts and the phrases the promoted tokens open, escaped
    assert "What each model says next" in html and "Cats &lt;3 naps &amp; sun." in html
    assert "Phrases the most promoted" in html and "Cats &lt;b&gt;nap&lt;/b&gt; all day." in html


def test_token_highlighting_scales_with_activation() -> None:
    html = highlighted_tokens(["a", "b", "c", "d"], [0.0, 1.0, 4.0, 2.0], 2, scale=4.0)
    alphas = [float(a) for a in re.findall(r"rgba\(253,126,20,([0-9.]+)\)", html)]
    assert alphas == [0.25, 1.0, 0.5]  # zero activation gets no background
    assert 'class="tok max"' in html and html.index("tok max") < html.index(">c<")
    # a long context is cut to the window around the max position, with ellipses
    toks = [f"t{i}" for i in range(100)]
    cut = highlighted_tokens(toks, [0.0] * 100, 50, 1.0, window=(5, 2))
    assert "t45" in cut and "t44" not in cut and "t52" in cut and "t53" not in cut and cut.count("&hellip;") == 2


def test_missing_optional_files_are_reported(analysis_dir: Path) -> None:
    (analysis_dir / "baseline.json").unlink()
    (analysis_dir / "splice.json").unlink()
    html = write_report(analysis_dir).read_text(encoding="utf-8")
    assert "baseline.json not computed" in html and "splice.json not computed" in html


def test_report_notes_a_control_fine_tune_only_when_one_was_used(analysis_dir: Path) -> None:
    assert "control fine-tune" not in write_report(analysis_dir).read_text(encoding="utf-8")
    summary = json.loads((analysis_dir / "summary.json").read_text())
    summary["control_activations"] = "/caches/<ctl>"
    (analysis_dir / "summary.json").write_text(json.dumps(summary))
    html = write_report(analysis_dir).read_text(encoding="utf-8")
    assert "Ranked against a control fine-tune (activations <code>/caches/&lt;ctl&gt;</code>)" in html


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda d: (d / "summary.json").unlink(), "summary.json"),
        (lambda d: (d / "candidates.json").write_text("{not json"), "candidates.json"),
        (lambda d: (d / "candidates.json").write_text('{"a": 1}'), "candidates.json"),
        (lambda d: [(d / n).unlink() for n in ("latents.json", "latents.csv")], "latents.json"),
        (lambda d: (d / "latents.json").write_text("[]"), "no rows"),
    ],
)
def test_bad_analysis_folder_raises_clear_error(analysis_dir: Path, damage, needle: str) -> None:
    damage(analysis_dir)
    with pytest.raises(DataError, match=re.escape(needle)) as err:
        write_report(analysis_dir)
    assert "\n" not in str(err.value) and "analyze.py" in str(err.value)


def test_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        write_report(tmp_path / "nope")


def test_csv_and_column_json_read_like_records(analysis_dir: Path) -> None:
    rec = load_analysis(analysis_dir)
    (analysis_dir / "latents.json").rename(analysis_dir / "latents.records.json")
    csv_data = load_analysis(analysis_dir)
    for col in ("rel_norm", "cos", "nu_err", "freq_all", "score"):
        np.testing.assert_allclose(csv_data.column(col), rec.column(col), equal_nan=True)
    assert list(csv_data.columns["class"]) == list(rec.columns["class"])
    rows = json.loads((analysis_dir / "latents.records.json").read_text())
    (analysis_dir / "latents.json").write_text(json.dumps({k: [r[k] for r in rows] for k in rows[0]}))
    col_data = load_analysis(analysis_dir)
    np.testing.assert_allclose(col_data.column("rel_norm"), rec.column("rel_norm"))
    assert col_data.columns["is_candidate"].sum() == len(rec.candidates)


def test_svg_histogram_counts() -> None:
    groups = {"a": np.array([0.05, 0.05, 0.5]), "b": np.array([0.5, np.nan])}
    chart = charts.stacked_histogram(groups, {"a": "#111111", "b": "#222222"}, 10, (0.0, 1.0), "t", "x", log_y=False)
    out = charts.inline(chart, "t")
    tips = re.findall(r"<title>(\w+): (\d+) latents", out)
    assert sorted(tips) == [("a", "1"), ("a", "2"), ("b", "1")]  # NaN dropped, one rect per non-empty (group, bin)


def test_make_plots_writes_png_and_offline_html(analysis_dir: Path) -> None:
    from PIL import Image

    paths = make_plots(analysis_dir)
    assert sorted(p.name for p in paths) == sorted([f"{n}.png" for n in PLOT_NAMES] + [f"{n}.html" for n in PLOT_NAMES])
    for p in paths:
        if p.suffix == ".png":
            with Image.open(p) as im:
                rgb = np.asarray(im.convert("RGB"))
            assert rgb.shape[0] > 200 and (rgb.min(axis=2) < 200).mean() > 0.01  # something was drawn
        else:
            html = p.read_text(encoding="utf-8")
            assert '<svg class="chart"' in html and not re.search(r"""<script[^>]+src=["']https?://""", html)


@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(analysis_dir: Path, tmp_path: Path) -> None:
    result = check_report(analysis_dir, tmp_path / "shot.png", window=(1400, 1800))
    assert (result.width, result.height) == (1400, 1800)
    assert not result.blank and result.non_white > 0.05 and result.n_colors > 50
    # the check really distinguishes: an empty page is flagged blank
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    assert inspect_png(screenshot(empty, tmp_path / "empty.png", window=(400, 300))).blank


@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium not installed (apt-get install -y chromium)")
def test_check_report_cli_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = main([str(tmp_path / "sample"), "--sample", "--window", "1000,900"])
    assert result.path == tmp_path / "sample" / "report.png" and result.path.is_file()
    assert "rendered" in capsys.readouterr().out


def test_report_command_rewrites_report_and_plots(analysis_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crosscoder.analysis.cli import main as analysis_cli

    report = analysis_cli(["report", str(analysis_dir)])
    assert report == analysis_dir / "report.html" and report.is_file()
    assert sorted(p.name for p in (analysis_dir / "plots").iterdir()) == sorted(
        [f"{n}.png" for n in PLOT_NAMES] + [f"{n}.html" for n in PLOT_NAMES]
    )
    assert "report:" in capsys.readouterr().out
