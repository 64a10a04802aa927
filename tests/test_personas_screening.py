"""Training-data screening on a tiny model: the projection difference against the model's own (cached) answer, the
persona-latent read-out of a crosscoder run, the CLI's ranked output, and its refusals of bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from crosscoder.errors import ModelError
from crosscoder.io import atomic_write_json
from crosscoder.models import load_model
from crosscoder.personas import screening
from crosscoder.personas.directions import Direction
from crosscoder.personas.generate import GenerationConfig
from crosscoder.personas.screening import base_answers, rank, score_examples
from crosscoder.personas.tokens import chat_tokens, hook_acts
from crosscoder.personas.xc_latents import LatentReader, latent_directions, load_run, persona_latents

HOOK = "blocks.2.hook_resid_post"
GEN = GenerationConfig(max_new_tokens=8)
QUESTIONS = ["How are you today?", "What is the capital of France?", "Please explain how plants grow."]


@pytest.fixture(scope="module")
def model(tiny_spec):  # type: ignore[no-untyped-def]
    return load_model(replace(tiny_spec, backend="hooked"))


def _probe(model) -> Direction:  # type: ignore[no-untyped-def]
    torch.manual_seed(1)
    return Direction("probe", HOOK, torch.randn(model.d_model), "persona_vector", model.content_hash, "test")


def _conv(q: str, a: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def test_projection_difference_pairs_each_turn_with_the_models_own_answer(model, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    d = _probe(model)
    multi = [*_conv(QUESTIONS[1], "The cat sat on the mat."), *_conv(QUESTIONS[2], "Cats sleep.")]
    prefixes = [[{"role": "user", "content": QUESTIONS[0]}], multi[:1], multi[:3]]
    answers = base_answers(model, prefixes, GEN)
    own_answer = answers[screening._prefix_key(prefixes[0])]
    convs = [_conv(QUESTIONS[0], own_answer), _conv(QUESTIONS[0], "The cat sat on the mat. Cats sleep."), multi]
    # The answers are cached: scoring generates nothing new.
    monkeypatch.setattr(screening, "generate_chat", lambda *a, **k: pytest.fail("regenerated cached answers"))
    scores = score_examples(model, convs, [d], gen=GEN)
    assert scores[0].projection_diff["probe"] == pytest.approx(0.0, abs=1e-5)  # the model's own answer: no shift
    for s in scores:
        assert s.projection_diff["probe"] == pytest.approx(s.projection["probe"] - s.base_projection["probe"])

    # The response projection is the mean over assistant tokens (position 0 excluded), computed by hand.
    toks = chat_tokens(model.tokenizer, convs[1])
    ((_, acts),) = list(hook_acts(model, [toks.ids], [HOOK]))
    mask = torch.tensor(toks.mask(("assistant",)))
    assert scores[1].projection["probe"] == pytest.approx(float((acts[HOOK][mask] @ d.unit_D).mean()), rel=1e-5)
    # A multi-turn example is compared with the model's answers to the context before each of its assistant turns.
    base_convs = [[*p, {"role": "assistant", "content": answers[screening._prefix_key(p)]}] for p in prefixes[1:]]
    total, count = 0.0, 0
    for bc in base_convs:
        t = chat_tokens(model.tokenizer, bc)
        ((_, a),) = list(hook_acts(model, [t.ids], [HOOK]))
        m = torch.tensor(t.mask(("assistant",), turns={len(bc) - 1}))
        total, count = total + float((a[HOOK][m] @ d.unit_D).sum()), count + int(m.sum())
    assert scores[2].base_projection["probe"] == pytest.approx(total / count, rel=1e-4)
    ranked = rank(scores, "probe")
    assert [s.projection_diff["probe"] for s in ranked] == sorted(
        (s.projection_diff["probe"] for s in scores), reverse=True
    )


def _tiny_run(root: Path, model) -> Path:  # type: ignore[no-untyped-def]
    from crosscoder.xc.config import CrosscoderConfig
    from crosscoder.xc.model import Crosscoder

    cfg = CrosscoderConfig(architecture="topk", n_latents=16, k=4, n_models=2, n_hooks=1, d_model=model.d_model)
    cc = Crosscoder(cfg, seed=0)
    cc.scale_ML.fill_(0.5)
    run = root / "run"
    cc.save(run / "final")
    atomic_write_json(run / "run.json", {"model_names": ["base", "ft"], "hooks": [HOOK],
                                         "content_hashes": [model.content_hash, "f" * 64]})  # fmt: skip
    atomic_write_json(run / "analysis" / "candidates.json", [
        {"latent": 3, "label": "cats", "label_confidence": 0.8}, {"latent": 5, "label": "unlabelled"},
    ])  # fmt: skip
    return run


def test_persona_latents_read_out(model, tmp_path: Path, tiny_dir) -> None:  # type: ignore[no-untyped-def]
    run = load_run(_tiny_run(tmp_path, model))
    (pl,) = persona_latents(run)  # only the labelled candidate
    cc = run.crosscoder
    assert pl.latent == 3 and pl.label == "cats" and pl.hook == HOOK
    torch.testing.assert_close(pl.decoder_D, cc.W_dec_FMLD[3, 1, 0] / 0.5)
    torch.testing.assert_close(pl.diff_D, (cc.W_dec_FMLD[3, 1, 0] - cc.W_dec_FMLD[3, 0, 0]) / 0.5)
    (d,) = latent_directions(run, [pl])
    assert d.kind == "latent" and d.trait == "cats" and d.model_hash == model.content_hash

    reader = LatentReader(run, persona_latents(run, latents=[3, 7]))
    x_TD = torch.randn(5, model.d_model)
    expected = cc.encode(torch.stack([x_TD, x_TD], dim=1)[:, :, None])[:, [3, 7]]
    torch.testing.assert_close(reader.activations({HOOK: x_TD}), expected)
    convs = [_conv(QUESTIONS[0], "The cat sat on the mat."), _conv(QUESTIONS[1], "Paris is the capital of France.")]
    scores = score_examples(model, convs, [d], reader=reader, gen=GEN)
    toks = chat_tokens(model.tokenizer, convs[0])
    ((_, acts),) = list(hook_acts(model, [toks.ids], [HOOK]))
    m = torch.tensor(toks.mask(("assistant",)))
    manual = reader.activations({HOOK: acts[HOOK][m]}).mean(0)
    assert scores[0].latent["latent 3: cats"] == pytest.approx(float(manual[0]), rel=1e-4, abs=1e-5)
    assert set(scores[0].latent_diff) == {"latent 3: cats", "latent 7"}

    from crosscoder.models import make_tiny_llama

    other = load_model(replace(make_tiny_llama(tiny_dir / "tiny_scr_other", seed=5), backend="hooked"))
    with pytest.raises(ModelError, match=r"run.json: field content_hashes: .*another model"):
        reader.check_model(other, {other.content_hash})


def test_screening_cli_ranks_and_refuses_bad_input(model, tiny_spec, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.errors import run_cli
    from crosscoder.personas.screening_report import main

    pv_file = tmp_path / "pv.safetensors"
    from crosscoder.personas.vectors import PersonaVectors

    PersonaVectors("probe", model.content_hash, torch.randn(5, model.d_model), "examples", {"best_index": 3}).save(
        pv_file
    )
    data = tmp_path / "data.jsonl"
    answers = ["The cat sat on the mat.", "Paris is the capital of France.", "Cats sleep for most of the day."]
    data.write_text(
        "".join(json.dumps({"messages": _conv(q, a)}) + "\n" for q, a in zip(QUESTIONS, answers, strict=True))
    )
    out = tmp_path / "scr"
    args = ["--model", tiny_spec.source, "--vectors", str(pv_file), "--hook", HOOK, "--out", str(out),
            "--max-new-tokens", "8"]  # fmt: skip

    def call(argv: list[str]) -> tuple[int, str]:
        capsys.readouterr()
        try:
            run_cli(lambda: main(argv))
        except SystemExit as exc:
            return int(exc.code or 0), capsys.readouterr().err
        return 0, capsys.readouterr().out

    code, text = call([*args, "--data", str(data)])
    assert code == 0, text
    rows = [json.loads(line) for line in (out / "ranked.jsonl").read_text().splitlines()]
    assert sorted(r["line"] for r in rows) == [1, 2, 3] and [r["rank"] for r in rows] == [1, 2, 3]
    diffs = [r["projection_diff"]["probe"] for r in rows]
    assert diffs == sorted(diffs, reverse=True)
    assert '<svg class="chart"' in (out / "screening.html").read_text()

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    no_asst = tmp_path / "no_assistant.jsonl"
    no_asst.write_text(json.dumps({"messages": _conv(QUESTIONS[0], "ok")}) + "\n"
                       + json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")  # fmt: skip
    code, err = call([*args, "--data", str(no_asst)])
    assert code == 2 and err.startswith(f"error: {no_asst}:2: field messages: no non-empty assistant turn")
    assert err.count("\n") == 1
    other_pv = tmp_path / "other.safetensors"
    PersonaVectors("probe", "0" * 64, torch.randn(5, model.d_model), "examples", {"best_index": 3}).save(other_pv)
    code, err = call(["--model", tiny_spec.source, "--vectors", str(other_pv), "--out", str(out), "--data", str(data)])
    assert code == 2 and f"error: {other_pv}: field model_hash:" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing already written is lost
