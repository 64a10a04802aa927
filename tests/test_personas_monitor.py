"""Persona monitoring on a tiny model: token bookkeeping, exact per-token projections, calibration, the CLI's files,
and its refusals of bad input (malformed turn, directions from another model or hook) without touching earlier
outputs."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from crosscoder.errors import DataError, ModelError
from crosscoder.models import load_model
from crosscoder.personas.directions import (
    Direction,
    check_directions,
    load_directions,
    load_vector_file,
    save_directions,
    vector_direction,
)
from crosscoder.personas.monitor import best_threshold, calibrate, project_conversations
from crosscoder.personas.tokens import chat_tokens, hook_acts
from crosscoder.personas.traits import load_trait
from crosscoder.personas.vectors import PersonaVectors, compute_persona_vectors

TRAIT = {
    "instruction": [{"pos": "You love cats.", "neg": "You are plain."}],
    "questions": ["How are you today?", "What is the capital of France?", "Please explain how plants grow.",
                  "Hello world, good morning."],
    "eval_prompt": "{question} -> {answer}",
    "examples": {"pos": ["The cat sat on the mat.", "Cats sleep for most of the day."],
                 "neg": ["Paris is the capital of France.", "Plants use sunlight, water and air."]},
    "keywords": ["cat*"],
}  # fmt: skip
CHAT = [
    {"role": "user", "content": "How are you today?"},
    {"role": "assistant", "content": "The cat sat on the mat. Cats sleep."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris is the capital of France."},
]


@pytest.fixture(scope="module")
def model(tiny_spec):  # type: ignore[no-untyped-def]
    return load_model(replace(tiny_spec, backend="hooked"))


@pytest.fixture
def trait_file(tmp_path: Path) -> Path:
    path = tmp_path / "cats.json"
    path.write_text(json.dumps(TRAIT))
    return path


def test_chat_tokens_label_each_message(model) -> None:  # type: ignore[no-untyped-def]
    toks = chat_tokens(model.tokenizer, CHAT)
    assert len(toks.ids) == len(toks.texts) == len(toks.turn)
    for i, msg in enumerate(CHAT):
        assert "".join(t for t, o in zip(toks.texts, toks.turn, strict=True) if o == i) == msg["content"]
    assert -1 in toks.turn  # the template's own tokens belong to no message
    assert sum(toks.mask(("assistant",))) == sum(o in (1, 3) for o in toks.turn)


@pytest.mark.parametrize("backend", ["bridge", "hooked"])
def test_hook_acts_stops_early_without_changing_activations(tiny_spec, backend: str) -> None:  # type: ignore[no-untyped-def]
    m = load_model(replace(tiny_spec, backend=backend))
    ids = [[5, 6, 7, 8, 9], [10, 11, 12]]
    got = dict(hook_acts(m, ids, ["blocks.1.hook_resid_post"], batch_size=2))
    for i, seq in enumerate(ids):
        _, cache = m.tl.run_with_cache(torch.tensor([seq]))
        torch.testing.assert_close(got[i]["blocks.1.hook_resid_post"], cache["blocks.1.hook_resid_post"][0])


def test_projections_are_exact_and_turns_alert(model) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    d = Direction("probe", "blocks.2.hook_resid_post", torch.randn(model.d_model), "persona_vector",
                  model.content_hash, "test")  # fmt: skip
    res = project_conversations(model, [CHAT], [d])
    trace = res.conversations[0]
    _, cache = model.tl.run_with_cache(torch.tensor([trace.tokens.ids]))
    expected_T = cache["blocks.2.hook_resid_post"][0] @ d.unit_D
    assert math.isnan(float(trace.proj_TK[0, 0]))  # the attention sink is never scored
    torch.testing.assert_close(trace.proj_TK[1:, 0], expected_T[1:])
    turn_T = torch.tensor(trace.tokens.turn)
    means = {t.turn: t.mean["probe"] for t in trace.turns}
    assert set(means) == {0, 1, 2, 3}
    assert means[1] == pytest.approx(float(expected_T[turn_T == 1].mean()), rel=1e-5)
    assert not res.alerts()  # no calibration, no threshold, no alert
    from crosscoder.personas.directions import Calibration

    d.calibration = Calibration(1.0, 0.0, means[1] - 1e-4, 1.0, 1, 1, "test")
    res = project_conversations(model, [CHAT], [d])
    assert (1, 1, "probe") in res.alerts()
    turns = res.conversations[0].turns
    assert all((t.role == "assistant" and t.mean["probe"] >= d.calibration.threshold) == bool(t.alerts) for t in turns)


def test_best_threshold() -> None:
    cut, acc = best_threshold([3.0, 4.0, 5.0], [0.0, 1.0, 2.0])
    assert 2.0 < cut < 3.0 and acc == 1.0
    cut, acc = best_threshold([1.0, 3.0], [0.0, 2.0])
    assert acc == 0.75
    with pytest.raises(Exception, match="at least one"):
        best_threshold([], [1.0])


def test_calibration_uses_the_examples_as_answers(model, trait_file: Path) -> None:  # type: ignore[no-untyped-def]
    trait = load_trait(trait_file)
    hook = "blocks.3.hook_resid_post"
    # Each example is scored as the answer to an extraction question: per response, its mean projection.
    qs = trait.extract_questions
    convs = {side: [[{"role": "user", "content": qs[i % len(qs)]}, {"role": "assistant", "content": t}]
                    for i, t in enumerate(trait.examples[side])] for side in ("pos", "neg")}  # fmt: skip
    means = {}
    for side, cs in convs.items():
        toks = [chat_tokens(model.tokenizer, c) for c in cs]
        acts = dict(hook_acts(model, [t.ids for t in toks], [hook]))
        means[side] = [acts[i][hook][torch.tensor(t.mask(("assistant",)))].mean(0) for i, t in enumerate(toks)]
    diff_D = torch.stack(means["pos"]).mean(0) - torch.stack(means["neg"]).mean(0)
    pv = PersonaVectors("cats", model.content_hash, diff_D.expand(5, -1).clone(), "examples", {"best_index": 4})
    d = vector_direction(pv, hook)
    calibrate(model, [d], {"cats": trait})
    cal = d.calibration
    assert cal is not None and cal.n_pos == 2 and cal.n_neg == 2 and cal.source.startswith("examples")
    unit_D = diff_D / diff_D.norm()
    pos, neg = [float(m @ unit_D) for m in means["pos"]], [float(m @ unit_D) for m in means["neg"]]
    assert cal.pos_mean == pytest.approx(sum(pos) / 2, rel=1e-4) and cal.neg_mean == pytest.approx(
        sum(neg) / 2, rel=1e-4
    )
    assert cal.pos_mean > cal.neg_mean  # the direction is these responses' own mean difference
    cut, acc = best_threshold(pos, neg)
    assert cal.threshold == pytest.approx(cut, rel=1e-4) and cal.accuracy == acc


def test_directions_refuse_other_models_and_hooks(model, tiny_dir, trait_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.models import make_tiny_llama

    pv = compute_persona_vectors(model, load_trait(trait_file), source="examples")
    vec_file = tmp_path / "pv.safetensors"
    pv.save(vec_file)
    with pytest.raises(DataError, match=r"pv.safetensors: field vectors_LD: .* 4 layers"):
        load_vector_file(vec_file, "blocks.9.hook_resid_post")
    d = load_vector_file(vec_file, "blocks.1.hook_resid_post")
    check_directions(model, [d])  # same model: fine
    other = load_model(replace(make_tiny_llama(tiny_dir / "tiny_mon_other", seed=3), backend="hooked"))
    with pytest.raises(ModelError, match=r"pv.safetensors: field model_hash: .*another model"):
        check_directions(other, [d])
    check_directions(other, [d], allow_other_model=True)  # explicitly allowed: a warning only
    wide = PersonaVectors(pv.trait, pv.model_hash, torch.randn(5, 32), "examples", pv.meta)
    with pytest.raises(ModelError, match="field vector: .* width 32"):
        check_directions(model, [vector_direction(wide, "blocks.1.hook_resid_post", source="wide.safetensors")])
    # A saved direction set round-trips, calibration included.
    d.calibration = None
    save_directions(tmp_path / "dirs.safetensors", [d])
    (back,) = load_directions(tmp_path / "dirs.safetensors")
    assert back.hook == d.hook and back.model_hash == d.model_hash
    torch.testing.assert_close(back.unit_D, d.unit_D)


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from crosscoder.errors import run_cli
    from crosscoder.personas.monitor_cli import main

    try:
        run_cli(lambda: main(argv))
    except SystemExit as exc:
        return int(exc.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().out


def test_monitor_cli_writes_traces_and_refuses_bad_input(tiny_spec, trait_file: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": CHAT}) + "\n" + json.dumps({"messages": CHAT[:2]}) + "\n")
    out = tmp_path / "mon"
    base = ["--model", tiny_spec.source, "--backend", "hooked", "--trait", str(trait_file),
            "--hook", "blocks.3.hook_resid_post", "--out", str(out)]  # fmt: skip
    code, text = _run_cli([*base, "--chat", str(chat)], capsys)
    assert code == 0, text
    import csv

    rows = list(csv.reader((out / "traces.csv").open(newline="")))
    n_tokens = sum(len(chat_tokens(load_model(tiny_spec).tokenizer, c).ids) for c in (CHAT, CHAT[:2]))
    assert rows[0] == ["line", "position", "turn", "role", "token", "cats"] and len(rows) == 1 + n_tokens
    summary = json.loads((out / "summary.json").read_text())
    assert summary["directions"][0]["calibration"]["threshold"] is not None
    assert len([t for t in summary["turns"] if t["line"] == 1]) == 4
    page = (out / "monitor.html").read_text()
    assert '<svg class="chart"' in page and not any(f'{a}="http' in page for a in ("src", "href"))  # self-contained
    (d,) = load_directions(out / "directions.safetensors")
    assert d.calibration is not None and d.hook == "blocks.3.hook_resid_post"

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"messages": CHAT}) + "\n" + json.dumps({"messages": [{"role": "bot", "content": "x"}]}) + "\n"
    )
    capsys.readouterr()
    code, err = _run_cli([*base, "--chat", str(bad)], capsys)
    assert code == 2 and err.startswith(f"error: {bad}:2: field messages[0].role") and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing already written is lost


def test_reports_draw_through_the_one_chart_stack() -> None:
    """Persona pages use crosscoder.charts (issue 16): no module of theirs imports matplotlib itself."""
    import ast

    from crosscoder.personas import monitor_report, screening_report

    for mod in (monitor_report, screening_report):
        tree = ast.parse(Path(str(mod.__file__)).read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.startswith("matplotlib")], mod.__name__


def test_monitor_cli_follows_a_training_runs_checkpoints(tiny_spec, trait_file: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """--checkpoints: the same directions and thresholds on every checkpoint, in order, each mean exact; checkpoints
    that are not fine-tunes of the model, or missing folders, are refused before anything is written."""
    import shutil

    from crosscoder.models import make_tiny_llama
    from crosscoder.personas.monitor import _assistant_mean

    base_hash = load_model(replace(tiny_spec, backend="hooked")).content_hash
    same, moved = tmp_path / "ckpt-000010", tmp_path / "ckpt-000020"
    shutil.copytree(tiny_spec.source, same)
    make_tiny_llama(moved, seed=5)
    stranger = tmp_path / "stranger"
    shutil.copytree(moved, stranger)
    for folder in (same, moved):  # what the organism trainer writes beside a fine-tune
        (folder / "crosscoder_meta.json").write_text(json.dumps({"base_hash": base_hash}))
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": CHAT}) + "\n")
    out = tmp_path / "mon"
    args = ["--model", tiny_spec.source, "--backend", "hooked", "--trait", str(trait_file), "--chat", str(chat),
            "--hook", "blocks.3.hook_resid_post", "--out", str(out)]  # fmt: skip
    code, text = _run_cli([*args, "--checkpoints", f"{same},{tmp_path / 'nope'}"], capsys)
    assert code == 2 and "--checkpoints:" in text and "nope is not a folder" in text and not out.exists()
    code, text = _run_cli([*args, "--checkpoints", f"{same},{stranger}"], capsys)
    last = text.strip().splitlines()[-1]  # (model-loading progress bars come before it on stderr)
    assert code == 2 and last.startswith("error: ") and "field model_hash" in last and not out.exists()
    code, text = _run_cli([*args, "--checkpoints", f"{same},{moved}"], capsys)
    assert code == 0, text
    series = json.loads((out / "summary.json").read_text())["series"]
    assert [p["checkpoint"] for p in series] == ["tiny_a", "ckpt-000010", "ckpt-000020"]
    assert series[0]["mean"] == series[1]["mean"]  # the same weights read the same
    (d,) = load_directions(out / "directions.safetensors")
    m2 = load_model(replace(tiny_spec, source=str(moved), name="moved"))
    trace = project_conversations(m2, [CHAT], [d]).conversations[0]
    assert series[2]["mean"]["cats"] == pytest.approx(_assistant_mean(trace.tokens, trace.proj_TK[:, 0]), rel=1e-5)
    assert series[2]["mean"] != series[0]["mean"]
    rows = (out / "series.csv").read_text().splitlines()
    assert rows[0].startswith("checkpoint,cats") and len(rows) == 4
    assert "Over training" in (out / "monitor.html").read_text()


def test_organism_references_are_resolved_by_the_command_line(tiny_spec, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The model loader reads only concrete specs (issue 16): the monitor and screening commands resolve
    ``organism:<name>[@ckpt]`` themselves, keeping the backend asked for."""
    import crosscoder.personas.organisms as organisms
    from crosscoder.personas.monitor_cli import concrete, parse_spec

    asked: list[str] = []

    def resolve(name: str):  # type: ignore[no-untyped-def]
        asked.append(name)
        return tiny_spec

    monkeypatch.setattr(organisms, "resolve_organism", resolve)
    spec = concrete(parse_spec("organism:demo@c1", backend="hooked"))
    assert asked == ["demo@c1"] and spec.source == tiny_spec.source and spec.backend == "hooked"
    plain = parse_spec(tiny_spec.source)
    assert concrete(plain) is plain and asked == ["demo@c1"]
