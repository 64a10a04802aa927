"""The combined method (crosscoder+adl), result round trips, and the benchmark's per-method progress file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosscoder.analysis.methods.base import MethodCandidate, MethodResult
from crosscoder.analysis.methods.combined import COMBINED, confirm_labels
from crosscoder.bench.methods_progress import Progress, TrainedRun
from crosscoder.bench.methods_score import Target, method_key, score
from crosscoder.errors import ConfigError


def _result(method: str, labels: list[str | None], arch: str | None = None) -> MethodResult:
    cands = [MethodCandidate(rank=i + 1, name=f"c{i}", kind="latent", score=float(10 - i), label=lab)
             for i, lab in enumerate(labels)]  # fmt: skip
    return MethodResult(method, "run", cands, seconds=3.0, architecture=arch)


def test_confirmed_labels_move_first_and_unconfirmed_ones_are_dropped() -> None:
    cc = _result("crosscoder", ["hostility", "unlabelled", "pirate", None, "sycophancy"], "dfc")
    adl = _result("adl", ["pirate", "unlabelled", "sycophancy"])
    out = confirm_labels(cc, adl)
    assert out.method == COMBINED and out.architecture == "dfc" and out.seconds == 6.0
    assert out.labels() == ["pirate", "sycophancy", "unlabelled", "unlabelled", None]
    assert [c.details["primary_rank"] for c in out.candidates] == [3.0, 5.0, 1.0, 2.0, 4.0]
    assert "2 of 5" in out.notes[0] and "dropped: hostility" in out.notes[0]
    rec = score(out, Target("pirate", "sft"))
    assert rec["top1_label_correct"] is True and method_key(rec) == "crosscoder+adl[dfc]"


def test_combined_names_nothing_when_adl_names_nothing_and_says_why_when_skipped() -> None:
    cc = _result("crosscoder", ["pirate", "hostility"])
    out = confirm_labels(cc, _result("adl", ["unlabelled"]))
    assert score(out, Target(None, "null-self"))["false_labels"] == 0
    skipped = _result("adl", [])
    skipped.skipped = "mean difference is zero"
    out = confirm_labels(cc, skipped)
    assert out.skipped is not None and "adl skipped (mean difference is zero)" in out.skipped and not out.candidates


def test_method_result_round_trips_through_json() -> None:
    res = _result("adl", ["pirate", None])
    res.candidates[0].details = {"z": float("inf"), "norm": 2.5}
    res.metrics = {"fve": 0.5}
    back = MethodResult.from_json(json.loads(json.dumps(res.to_json())))
    assert back.labels() == ["pirate", None] and back.metrics == {"fve": 0.5}
    assert (
        back.candidates[0].details["norm"] == 2.5 and back.candidates[0].details["z"] != back.candidates[0].details["z"]
    )


def test_progress_is_written_per_record_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    scale = {"overrides": "trainer.steps=10", "architectures": "batchtopk"}
    prog = Progress.open(out, "blocks.1.hook_resid_post", scale, resume=False)
    run_dir = tmp_path / "run"
    (run_dir / "final").mkdir(parents=True)
    prog.set_run("sft", "pirate", "batchtopk", TrainedRun(str(run_dir), 4.0))
    prog.add(score(_result("crosscoder", ["pirate"], "batchtopk"), Target("pirate", "sft")))
    prog.add(score(_result("adl", ["unlabelled"]), Target(None, "null-self")))
    body = json.loads(out.read_text())
    assert body["complete"] is False and len(body["records"]) == 2
    again = Progress.open(out, "blocks.1.hook_resid_post", scale, resume=True)
    assert again.done("sft", "pirate", "crosscoder", "batchtopk") and not again.done(
        "sft", "pirate", "crosscoder", "dfc"
    )
    assert again.done("null-self", "none", "adl", None) and not again.done("sft", "pirate", "adl", None)
    assert again.run_of("sft", "pirate", "batchtopk") == TrainedRun(str(run_dir), 4.0)
    (run_dir / "final").rmdir()
    assert again.run_of("sft", "pirate", "batchtopk") is None  # a deleted run is retrained, not trusted
    with pytest.raises(ConfigError, match="--resume: .* written at scale"):
        Progress.open(out, "blocks.1.hook_resid_post", {**scale, "architectures": "dfc"}, resume=True)
    assert Progress.open(out, "h", scale, resume=False).records == []


def test_markdown_table_has_one_row_per_method_and_a_null_column(tmp_path: Path) -> None:
    from crosscoder.bench.methods_score import main, markdown_table

    recs = [score(_result("adl", ["unlabelled", "pirate"]), Target("pirate", "sft")),
            score(_result("adl", ["hostility"]), Target(None, "null-self")),
            score(_result("crosscoder", ["pirate"], "dfc"), Target("pirate", "planted"))]  # fmt: skip
    lines = markdown_table(recs).splitlines()
    assert lines[0] == "| method | planted | sft | null | s/run |"
    assert "| adl | - | top1 0/1, top5 1/1, rank 2.0 | 1 false / 1 pairs | 3 |" in lines
    assert any(line.startswith("| crosscoder[dfc] | top1 1/1") for line in lines)
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"records": recs}))
    main([str(path)])
