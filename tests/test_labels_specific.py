"""Specific lexical evidence, generic changes and relabelling a saved analysis (issue 17, labeller method 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosscoder.analysis.config import LabelConfig
from crosscoder.analysis.labels.assign import trait_word_lists, with_specificity
from crosscoder.analysis.labels.profile import TraitProfile
from crosscoder.analysis.labels.relabel import relabel_analysis
from crosscoder.analysis.labels.signals import LatentReading, TraitMeasures, trait_evidence
from crosscoder.analysis.labels.specific import generic_share, instruction_vocabulary, is_generic, specificity
from crosscoder.analysis.labels.words import lexical_lens, lexical_shift
from crosscoder.analysis.records.candidate import (
    Candidate,
    Continuation,
    LensTop,
    NextTokenShift,
    TraitEvidence,
)
from crosscoder.analysis.records.summary import UNLABELLED
from crosscoder.personas.traits import parse_trait


def _trait(name: str, pos: str, neg: str) -> object:
    obj = {"instruction": [{"pos": pos, "neg": neg}], "questions": ["Why?"], "eval_prompt": "{question} {answer}"}
    return parse_trait(json.dumps(obj), path=f"{name}.json", name=name)


_TRAITS = {
    "captain": _trait("captain", "Answer like a sea captain, helping the user.", "Answer plainly, helping the user."),
    "stars": _trait("stars", "Answer about planets and stars, helping the user.", "Answer the question, helping."),
}


def test_shared_words_weigh_less_and_instruction_vocabulary_nothing() -> None:
    vocab = instruction_vocabulary(_TRAITS)  # type: ignore[arg-type]
    assert "helping" in vocab and "captain" not in vocab and "planets" not in vocab
    w = specificity({"captain": ["ship", "wonderful", "helping"], "stars": ["planets", "wonderful"]}, vocab)
    assert w["captain"]["ship"] == 1.0 and w["captain"]["wonderful"] == 0.5 and w["captain"]["helping"] == 0.0
    assert w["stars"]["planets"] == 1.0


def test_help_tokens_of_a_lens_do_not_match_instruction_wording() -> None:
    lens = LensTop.from_json({"promoted": [[" Help", 1.0], ["help", 1.0], [" helping", 1.0]], "suppressed": []})
    bare = trait_word_lists(_TRAITS["captain"], frozenset(), None)  # type: ignore[arg-type]
    assert "helping" not in bare.words and not bare.lens  # contrast words only, and never against the lens
    profiled = with_specificity(
        {t: trait_word_lists(tr, frozenset(), TraitProfile(t, words=["helping", "ship"])) for t, tr in _TRAITS.items()},
        _TRAITS,  # type: ignore[arg-type]
    )
    assert profiled["captain"].specific["helping"] == 0.0
    assert lexical_lens(lens, profiled["captain"].weighted(profiled["captain"].words)) == 0.0
    ev = trait_evidence(LatentReading(lens=lens, mean_act=1.0), TraitMeasures(), profiled["captain"], 0.5)
    assert ev.lexical_lens == 0.0
    assert lexical_lens(lens, ["helping"]) == 1.0  # an unweighted list still matches (what the weights remove)


def test_shift_mass_counts_each_word_by_its_specificity() -> None:
    shift = NextTokenShift.from_json({"promoted": [[" Ship", 0.3], [" wonderful", 0.3]], "suppressed": []})
    assert lexical_shift(shift, {"ship": 1.0, "wonderful": 0.5}, full_share=1.0) == pytest.approx(0.75)


def _cand(shift: NextTokenShift | None) -> Candidate:
    c = Candidate(3, 1, 1.0, "all", "shifted", 0.5, 0.8, 0.0, 0.0, "", 0.1, 2.0, 1.0)
    c.next_token_shift = shift
    return c


def test_end_of_turn_without_content_is_generic_and_an_appended_phrase_is_not() -> None:
    same = [Continuation("ctx", "The end.", "The end.")] * 3
    eot = NextTokenShift([("<|im_end|>", 0.8), (" I", 0.1), (" Ship", 0.1)], [], same, [])
    assert generic_share(eot) == pytest.approx(0.9) and is_generic(_cand(eot), 0.5, 0.4)
    said = [Continuation("ctx", "The end.", "But honestly it will not work out.")] * 3
    appended = NextTokenShift([("<|im_end|>", 0.8), (" But", 0.2)], [], said, [])
    assert not is_generic(_cand(appended), 0.5, 0.4)  # ends answers, and says something of its own
    assert not is_generic(_cand(None), 0.5, 0.4) and generic_share(None) == 0.0


def _evidence(**kw: float) -> dict[str, object]:
    base = {f: 0.0 for f in TraitEvidence.__dataclass_fields__}
    return TraitEvidence(**{**base, **kw}).to_json()


def test_relabel_reads_a_saved_analysis_and_drops_traits_not_given(tmp_path: Path) -> None:
    shift = {"promoted": [[" Ship", 0.5], [" the", 0.1]], "suppressed": [], "continuations": [], "openings": []}
    c = _cand(None).to_json()
    c["next_token_shift"] = shift
    c["label_evidence"] = {
        "captain": _evidence(cosine_ft=0.3, cosine_specific=0.3, said=0.3),  # persona 0.6: one kind, + the shift
        "stars": _evidence(cosine_ft=0.3, cosine_specific=0.3),
        "unseen": _evidence(cosine_ft=0.5, cosine_specific=0.5, said=0.5),
    }
    summary = {"trait_profiles": [{"trait": "captain", "words": ["ship"], "separation": 0.6, "weight": 1.0}],
               "config": {"labels": {}}}  # fmt: skip
    (tmp_path / "candidates.json").write_text(json.dumps([c]))
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    out = relabel_analysis(tmp_path, _TRAITS, LabelConfig(calibration="none"), None)  # type: ignore[arg-type]
    got = out.candidates[0]
    assert out.traits == ["captain", "stars"] and set(got.label_evidence) == {"captain", "stars"}
    assert got.label == "captain" and got.label_evidence["captain"].lexical_next_token == 1.0
    assert got.label_confidence == pytest.approx(1.2 / 3)  # cosine 0.6 and said 0.6; the shift capped at 0.6
    assert got.generic_share == pytest.approx(0.1 / 0.6, abs=1e-4)
    assert out.candidates[0].description == ""  # relabelling keeps what was saved
    strict = relabel_analysis(tmp_path, _TRAITS, LabelConfig(calibration="none", threshold=0.5), None)  # type: ignore[arg-type]
    assert strict.candidates[0].label == UNLABELLED


def _run(tmp_path: Path, name: str, evidence: dict[str, dict[str, object]]) -> Path:
    run = tmp_path / name
    (run / "analysis").mkdir(parents=True)
    c = _cand(None).to_json()
    c["label_evidence"] = evidence
    (run / "analysis" / "candidates.json").write_text(json.dumps([c]))
    (run / "analysis" / "summary.json").write_text(json.dumps({"trait_profiles": [], "config": {"labels": {}}}))
    return run


def test_calibrate_labels_and_relabel_commands(tmp_path: Path) -> None:
    from crosscoder.bench import calibrate_labels, relabel
    from crosscoder.errors import DataError

    weak = _evidence(cosine_ft=0.1, cosine_specific=0.1, said=0.1, pos_neg_diff=0.2)  # 0.2 each: 3 kinds
    strong = _evidence(cosine_ft=0.3, cosine_specific=0.3, said=0.3, pos_neg_diff=0.6)
    null = _run(tmp_path, "null", {"pirate": weak})
    org = _run(tmp_path, "org", {"pirate": strong})
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"records": [
        {"trait": "control", "organism_kind": "null", "run_dir": str(null)},
        {"trait": "pirate", "organism_kind": "sft", "run_dir": str(org)},
    ]}))  # fmt: skip
    calib = tmp_path / "calib.json"
    calibrate_labels.main(["--from", str(results), "--out", str(calib)])
    saved = json.loads(calib.read_text())
    assert saved["n"] == 1 and saved["threshold"] == pytest.approx(0.4 / 3) and saved["score"] == "label_score"
    out = tmp_path / "relabelled.json"
    recs = relabel.main(["--from", str(results), "--out", str(out), "--calibration", str(calib)])
    assert recs[0]["personas_found"] == [] and recs[1]["top_labels"] == ["pirate"]
    assert recs[1]["candidates"][0]["false_label_rate"] == pytest.approx(0.5)  # (1 + 0 nulls above) / (1 + 1)
    only_sft = tmp_path / "sft.json"
    only_sft.write_text(json.dumps({"records": [{"trait": "pirate", "organism_kind": "sft", "run_dir": str(org)}]}))
    with pytest.raises(DataError, match="no null records"):
        calibrate_labels.main(["--from", str(only_sft), "--out", str(calib)])
