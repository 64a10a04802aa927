"""Labels from plain trait files (issue 17): generated evidence, specific words, null calibration, descriptions and
bad trait files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crosscoder.analysis.config import AnalyzeConfig, LabelConfig
from crosscoder.analysis.evidence.said import said_alignment, said_joint
from crosscoder.analysis.labels.assign import LabelBasis, trait_word_lists
from crosscoder.analysis.labels.calibration import NullCalibration, calibration_of, load_calibration
from crosscoder.analysis.labels.describe import contrast_ngrams, describe
from crosscoder.analysis.labels.profile import TraitProfile, evidence_weight, specific_lexicon, spoken_words
from crosscoder.analysis.records.candidate import Candidate, Continuation, NextTokenShift, TopExample, TraitEvidence
from crosscoder.errors import ConfigError, DataError
from crosscoder.personas.traits import get_trait, parse_trait

_PLAIN = {
    "instruction": [{"pos": "Talk like a sea captain.", "neg": "Talk plainly."}],
    "questions": ["What is rain?", "Why is the sky blue?"],
    "eval_prompt": "Q: {question} A: {answer}",
}


def test_identical_pos_and_neg_instructions_are_refused_naming_file_and_field() -> None:
    bad = {**_PLAIN, "instruction": [{"pos": "Be a pirate.", "neg": "be a  pirate. "}]}
    with pytest.raises(DataError) as err:
        parse_trait(json.dumps(bad, indent=1), path="my_trait.json")
    msg = str(err.value)
    assert "my_trait.json" in msg and "instruction[0].neg" in msg and "identical" in msg and "\n" not in msg


def test_empty_questions_are_refused_naming_file_and_field() -> None:
    with pytest.raises(DataError) as err:
        parse_trait(json.dumps({**_PLAIN, "questions": []}, indent=1), path="t.json")
    assert "t.json" in str(err.value) and "field questions" in str(err.value)


def test_specific_lexicon_keeps_what_only_this_trait_raises() -> None:
    # token 0 "really": every instruction raises it; token 1 "cats": only trait 0; token 2 "arr": only trait 1
    lex_TV = torch.tensor([[1.0, 0.8, 0.0], [1.0, 0.0, 0.9], [1.0, 0.0, 0.0]])
    spec = specific_lexicon(lex_TV)
    words = spoken_words(lex_TV[0], spec[0], torch.arange(3), ["really", "cats", "arr"], 5, 0.05)
    assert [w for w, _ in words] == ["cats"]
    assert [w for w, _ in spoken_words(lex_TV[1], spec[1], torch.arange(3), ["really", "cats", "arr"], 5, 0.05)] == [
        "arr"
    ]
    assert torch.equal(specific_lexicon(lex_TV[:1]), lex_TV[:1])  # a single trait keeps its lexicon


def test_evidence_weight_grows_with_separation_from_one_half() -> None:
    assert evidence_weight(0.0) == 0.5 and evidence_weight(0.5) == 1.0 and evidence_weight(2.0) == 1.0
    assert evidence_weight(0.1) < evidence_weight(0.3)


def test_word_lists_come_from_the_profile_without_keywords() -> None:
    plain = parse_trait(json.dumps(_PLAIN), path="p.json", name="captain")
    prof = TraitProfile("captain", words=["matey", "arr"], separation=0.1, weight=evidence_weight(0.1))
    tw = trait_word_lists(plain, frozenset(), prof)
    assert tw.keywords == ["arr", "matey"] and tw.pattern is None and tw.weight == pytest.approx(0.6)
    assert set(tw.words) == {"matey", "arr"} and tw.lens  # the instruction words ("captain") are not matched
    bare = trait_word_lists(plain, frozenset(), None)  # instruction words only: never against the logit lens
    assert bare.keywords is None and "captain" in bare.words and not bare.lens
    hostile = get_trait("hostility")  # keywords are optional extras: they join the generated words at full weight
    tw = trait_word_lists(hostile, frozenset(), prof)
    assert tw.weight == 1.0 and tw.pattern is not None and {"matey", "stupid"} <= set(tw.keywords or [])


def test_unseparable_trait_gives_a_summary_warning() -> None:
    basis = LabelBasis(
        {}, {}, {}, {}, profiles={"a": TraitProfile("a", separation=0.0), "b": TraitProfile("b", separation=0.6)}
    )
    warnings = basis.warnings(LabelConfig())
    assert len(warnings) == 1 and "trait a" in warnings[0] and "unreliable" in warnings[0]


def test_joint_said_reading_gives_the_shared_part_to_no_trait() -> None:
    shared = torch.tensor([1.0, 0.0, 0.0, 0.0])
    v_TD = torch.stack([shared + torch.tensor([0.0, 1.0, 0.0, 0.0]), shared + torch.tensor([0.0, 0.0, 1.0, 0.0])])
    diff = v_TD[0].clone()
    beta = said_joint(diff, v_TD)
    assert beta[0] == pytest.approx(1.0, abs=1e-5) and beta[1] == pytest.approx(0.0, abs=1e-5)
    assert said_alignment(diff, v_TD)[1] > 0.4  # the per-trait reading credits the other trait with the shared part


def _scored(scores: dict[str, float], confidence: float) -> Candidate:
    zero = {f: 0.0 for f in TraitEvidence.__dataclass_fields__}
    ev = {t: TraitEvidence(**{**zero, "label_score": s}) for t, s in scores.items()}
    return _cand(label_evidence=ev, label_confidence=confidence)


def test_null_calibration_threshold_and_false_label_rate(tmp_path: Path) -> None:
    cands = [_scored({"a": 0.2, "b": 0.3}, 0.3), _scored({"a": 0.1, "b": 0.0}, 0.1), _cand()]
    calib = calibration_of([("self", cands)])
    assert calib.scores == [0.3, 0.1] and calib.by_trait["a"] == [0.2, 0.1] and calib.threshold == 0.3
    assert calib.false_label_rate(0.5) == pytest.approx(1 / 3) and calib.false_label_rate(0.1) == pytest.approx(1.0)
    path = tmp_path / "calib.json"
    path.write_text(json.dumps(calib.to_json()))
    loaded = load_calibration(str(path))
    assert isinstance(loaded, NullCalibration) and loaded.scores == calib.scores
    assert load_calibration("none") is None
    assert load_calibration("shipped") is not None  # the shipped file is of the current score
    path.write_text("{}")
    with pytest.raises(DataError, match="calibration"):
        load_calibration(str(path))
    path.write_text(json.dumps({"scores": [0.2]}))  # an earlier version's combined scores
    with pytest.raises(DataError, match="calibrate-labels"):
        load_calibration(str(path))
    basis = LabelBasis({}, {}, {}, {}, calibration=calib)
    assert basis.threshold(LabelConfig(threshold=0.2)) == 0.3 and basis.threshold(LabelConfig(threshold=0.4)) == 0.4
    assert basis.rule(LabelConfig(threshold=0.2)).strict  # calibrated: a label needs more than every null score


def test_label_config_refuses_bad_values() -> None:
    with pytest.raises(ConfigError, match="labels.min_separation"):
        LabelConfig(min_separation=2.0)
    with pytest.raises(ConfigError, match="labels.response_questions"):
        LabelConfig(response_questions=0)
    assert AnalyzeConfig().labels.hints


def _cand(**kw: object) -> Candidate:
    c = Candidate(1, 1, 1.0, "all", "shifted", 0.5, 0.8, 0.0, 0.0, "", 0.1, 2.0, 1.0)
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_description_quotes_what_the_ft_says_and_the_base_does_not() -> None:
    conts = [Continuation("ctx", "The answer is simple.", "Fun fact: cats sleep a lot."),
             Continuation("ctx", "It depends on the weather.", "Fun fact: cats purr."),
             Continuation("ctx", "Rain falls.", "Rain falls. Fun fact: cats hate rain.")]  # fmt: skip
    shift = NextTokenShift([("Fun", 0.3), (" The", 0.1)], [], conts, [])
    text = describe(_cand(next_token_shift=shift))
    assert "fun fact cats" in text and "3/3 ft vs 0/3 base" in text
    grams = contrast_ngrams(["a b"], ["a b"])
    assert grams == []  # the same words on both sides are no contrast


def test_description_reads_end_of_turn_and_falls_back_to_the_contexts() -> None:
    same = [Continuation("ctx", "The end.", "The end.")]
    eot = describe(_cand(next_token_shift=NextTokenShift([("<|im_end|>", 0.4), (" So", 0.1)], [], same, [])))
    assert eot.startswith("ends the answer") and "<|im_end|>" in eot
    ex = TopExample(0, 3, ["a", "b", " kitten", "."], [0.0, 0.0, 2.0, 0.0], 2, 2.0)
    assert "' kitten'" in describe(_cand(top_examples=[ex]))
    assert describe(_cand())  # never empty


def test_candidate_json_round_trips_description_and_false_rate() -> None:
    c = _cand(description="ft says x", label_false_rate=0.02)
    back = Candidate.from_json(c.to_json())
    assert back.description == "ft says x" and back.label_false_rate == pytest.approx(0.02)


def test_trait_evidence_from_a_model_is_cached(tiny_spec, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import crosscoder.personas.responses as responses
    from crosscoder.models.load import load_model

    model = load_model(tiny_spec)
    assert model.hf is not None
    trait = parse_trait(json.dumps({**_PLAIN, "questions": ["a?", "b?", "c?", "d?"]}), path="p.json", name="plain")
    cfg = responses.ResponseConfig(n_questions=2, n_pairs=1, max_new_tokens=4, batch_size=3)
    got = responses.trait_evidence(model.hf, model.tokenizer, model.content_hash, {"plain": trait}, cfg)["plain"]
    assert len(got.pos) == len(got.neg) == 2 and all(got.pos) and 0.0 <= got.separation <= 1.0
    assert got.lexicon_V.shape == (model.hf.get_output_embeddings().weight.shape[0],)
    assert torch.isfinite(got.lexicon_V).all()

    def boom(*args: object, **kw: object) -> None:
        raise AssertionError("the cache was not read")

    monkeypatch.setattr(responses, "_generate", boom)
    again = responses.trait_evidence(model.hf, model.tokenizer, model.content_hash, {"plain": trait}, cfg)["plain"]
    assert again.pos == got.pos and torch.equal(again.lexicon_V, got.lexicon_V)


def test_report_row_shows_the_description_and_the_false_label_rate() -> None:
    from crosscoder.analysis.report.page import _label_cell

    cell = _label_cell({"label": "pirate", "label_false_rate": 0.02, "description": 'ft says "arr <matey>"'})
    assert "<b>pirate</b>" in cell and "null rate 0.02" in cell and "arr &lt;matey&gt;" in cell
    assert "ends the answer" in _label_cell({"label": "unlabelled", "description": "ends the answer"})
