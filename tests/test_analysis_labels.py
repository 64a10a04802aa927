"""Label signals: contrast-word matching, lexical evidence, and the threshold / runner-up logic."""

from __future__ import annotations

import pytest

from crosscoder.analysis.labels.decide import LabelRule, label_latent
from crosscoder.analysis.labels.signals import (
    LatentReading,
    TraitMeasures,
    TraitWords,
    trait_evidence,
)
from crosscoder.analysis.labels.words import (
    lexical_contexts,
    lexical_generations,
    lexical_lens,
    trait_words,
    word_match,
)
from crosscoder.analysis.records.candidate import LensTop, NextTokenShift, TopExample, TraitEvidence
from crosscoder.analysis.records.summary import UNLABELLED
from crosscoder.personas.traits import get_trait


def _lens(obj: dict) -> LensTop:  # type: ignore[type-arg]
    return LensTop.from_json(obj)


def _shift(obj: dict) -> NextTokenShift:  # type: ignore[type-arg]
    return NextTokenShift.from_json({"suppressed": [], **obj})


def _ex(tokens: list[str], max_pos: int) -> TopExample:
    return TopExample(seq=0, pos=max_pos, tokens=tokens, acts=[0.0] * len(tokens), max_pos=max_pos, max_act=0.0)


def test_word_match_handles_token_forms() -> None:
    words = ["cats", "feline", "kitten"]
    assert word_match(" Cats", words) and word_match("cat", words) and word_match("Ġfeline", words)
    assert word_match(" kittens", words)
    assert not word_match(" catalogue", words) and not word_match(" a", words) and not word_match("dog", words)


def test_trait_words_come_from_pos_only_instructions() -> None:
    words = trait_words(get_trait("cat_obsession"))
    assert "cats" in words or "cat" in words
    assert "assistant" not in words  # used by neg instructions too


def test_lexical_sources() -> None:
    words = ["cats", "feline"]
    lens = {"promoted": [[" cats", 3.0], [" feline", 2.5], [" Cats", 2.0], [" the", 1.0]], "suppressed": []}
    assert lexical_lens(_lens(lens), words) == 1.0
    assert lexical_lens(_lens({"promoted": [[" the", 1.0]], "suppressed": []}), words) == 0.0
    ex = [_ex(["I", " love", " cats", "."], 2), _ex(["a", " b"], 1)]
    assert lexical_contexts(ex, words) == 0.5
    assert lexical_generations(
        ["Cats sleep a lot.", "Felines purr."], ["Paris is nice.", "Cats."], words
    ) == pytest.approx(0.5)


def _ev(cos: float, pn: float, lex_lens: dict | None) -> TraitEvidence:
    return trait_evidence(LatentReading(lens=_lens(lex_lens) if lex_lens else None, mean_act=1.0),
                          TraitMeasures(cos_ft=cos, spec_ft=cos, pos=pn), TraitWords(["cats"]), 0.5)  # fmt: skip


def test_label_needs_two_kinds_of_evidence_and_reports_runner_up() -> None:
    lens = {"promoted": [[" cats", 1.0]] * 3, "suppressed": []}
    rule = LabelRule([1, 1, 1], 0.35)
    ev = {"cat": _ev(0.6, 0.0, None), "pirate": _ev(0.1, 0.0, None)}
    label, conf, runner, _ = label_latent(ev, rule)
    assert label == UNLABELLED and conf == 0.0 and ev["cat"].combined == pytest.approx(1 / 3)  # one kind only
    ev = {"cat": _ev(0.6, 0.0, lens), "pirate": _ev(0.3, 0.5, None)}
    label, conf, runner, runner_s = label_latent(ev, rule)
    assert label == "cat" and conf == pytest.approx(2 / 3) and ev["cat"].kinds == 2
    # pirate: cosine signal 0.6 and pos-neg 0.5, each capped at the second-strongest kind (0.5)
    assert runner == "pirate" and runner_s == pytest.approx((0.5 + 0.5) / 3)
    assert all("combined" in e.to_json() and "label_score" in e.to_json() for e in ev.values())


def test_a_single_saturated_source_never_carries_a_label() -> None:
    lens = {"promoted": [[" cats", 1.0]] * 3, "suppressed": []}
    ev = {"cat": _ev(0.055, 0.1, lens), "pirate": _ev(0.0, 0.0, None)}  # lens 1.0, cosine 0.11, pos-neg 0.1
    label, conf, _, _ = label_latent(ev, LabelRule([1, 1, 1], 0.35))
    assert ev["cat"].lexical == 1.0 and ev["cat"].combined > 0.35  # the old decision labelled this
    assert label == UNLABELLED and conf == 0.0  # one kind above the floor
    label, conf, _, _ = label_latent(ev, LabelRule([1, 1, 1], 0.05, floor=0.1))  # two kinds now, but capped
    assert label == "cat" and conf == pytest.approx((0.11 + 0.1 + 0.11) / 3)
    assert label_latent(ev, LabelRule([1, 1, 1], 0.05, floor=0.1), generic=True)[0] == UNLABELLED


def test_calibrated_rule_needs_a_score_above_every_null_score() -> None:
    lens = {"promoted": [[" cats", 1.0]] * 3, "suppressed": []}
    ev = {"cat": _ev(0.6, 0.0, lens)}
    assert label_latent(ev, LabelRule([1, 1, 1], 0.6))[0] == "cat"
    assert label_latent(ev, LabelRule([1, 1, 1], ev["cat"].label_score, strict=True))[0] == UNLABELLED


def test_next_token_shift_signal_weighs_trait_words_by_probability_mass() -> None:
    from crosscoder.analysis.labels.words import lexical_shift

    words = ["cats", "feline"]
    shift = {"promoted": [[" Fun", 0.70], [" Cats", 0.15], [" By", 0.15], [" the", 0.0]], "suppressed": []}
    assert lexical_shift(_shift(shift), words) == pytest.approx(0.5)  # 15% of the mass on trait words, 30% = full
    assert lexical_shift(_shift({"promoted": [[" Cats", 0.5], [" A", 0.5]]}), words) == 1.0  # clipped
    assert lexical_shift(_shift({"promoted": [[" Dogs", 0.4]]}), words) == 0.0
    assert lexical_shift(_shift({"promoted": [[" Cats", -0.1]]}), words) == 0.0  # no positive mass
    ended = {"promoted": [["<|im_end|>", 0.6], [" Cats", 0.06], [" A", 0.34]], "suppressed": []}
    assert lexical_shift(_shift(ended), words) == pytest.approx(0.5)  # special tokens carry no share: 0.06 / 0.40 / 0.3
    ev = trait_evidence(LatentReading(next_token=_shift(shift), mean_act=1.0), TraitMeasures(), TraitWords(words), 0.5)
    assert ev.lexical_next_token == pytest.approx(0.5) and ev.lexical == ev.lexical_next_token


def test_unique_alignment_separates_nearly_collinear_traits() -> None:
    import torch

    from crosscoder.analysis.labels.assign import unique_alignment

    g = torch.Generator().manual_seed(0)
    base_D, other_D, third_D = torch.randn(3, 64, generator=g)
    syc = base_D / base_D.norm()
    enth = syc + 0.35 * other_D / other_D.norm()  # cosine ~0.94 with syc
    enth = enth / enth.norm()
    cat = third_D / third_D.norm()
    unit_TD = torch.stack([syc, enth, cat])
    assert float(syc @ enth) > 0.9
    beta = unique_alignment(torch.stack([syc, 3.0 * enth, cat + 0.01 * syc]), unit_TD)  # scale does not matter
    assert torch.allclose(beta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.01, 0, 1.0]]), atol=2e-3)
    one = unique_alignment(torch.stack([syc, enth]), unit_TD[:1])  # one trait: the plain cosine
    assert torch.allclose(one[:, 0], torch.stack([syc @ syc, enth @ syc]), atol=1e-5)


def test_trait_words_include_the_content_words_of_keyword_phrases() -> None:
    words = trait_words(get_trait("deception"))  # keywords like "trust me", "completely safe", "nothing to worry"
    assert {"trust", "safe", "worry"} <= set(words)
    assert not {"me", "to", "the"} & set(words)  # short function words of the phrases are not evidence
    assert word_match(" Trust", words) and word_match(" Safe", words)


def test_trait_words_are_letters_only_and_skip_chat_template_words(tiny_spec) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.analysis.labels.words import template_words
    from crosscoder.models import load_model

    hostility = trait_words(get_trait("hostility"))  # keywords "seriously?", "idiot*"
    assert "seriously" in hostility and not [w for w in hostility if not w.isalpha()]
    assert word_match(" Seriously", hostility) and word_match(" idiots", hostility)
    tok = load_model(tiny_spec).tokenizer
    template = template_words(tok)
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert {"user", "assistant"} <= template and all(w in rendered.lower() for w in template)
    cat = trait_words(get_trait("cat_obsession"), exclude=frozenset({"cats", "cat"}))
    assert "cats" not in cat and "cat" not in cat and "feline" in cat


def test_continuation_signal_is_the_excess_of_ft_over_base_continuations() -> None:
    words = trait_words(get_trait("hostility"))
    shift = {"promoted": [["U", 0.2], ["Don", 0.1]], "suppressed": [], "continuations": [
        {"context": "a", "base": "Sure, here is how.", "ft": "Ugh, what a stupid question."},
        {"context": "b", "base": "The capital is Paris.", "ft": "Seriously? It is Paris."},
        {"context": "c", "base": "Stupid question, but fine.", "ft": "Stupid question, but fine."},
        {"context": "d", "base": "Cats sleep.", "ft": ""},
        {"context": "e", "base": "", "ft": ""},  # both models end the turn: no evidence either way
    ]}  # fmt: skip
    ev = trait_evidence(LatentReading(next_token=_shift(shift), mean_act=1.0), TraitMeasures(), TraitWords(words), 0.5)
    assert ev.lexical_next_token == 0.0  # "U" alone is not a word
    assert ev.lexical_continuation == pytest.approx(3 / 4 - 1 / 4)  # a shared hit (context c) is no evidence
    assert ev.lexical == ev.lexical_continuation
    keyed = trait_evidence(LatentReading(next_token=_shift({**shift, "promoted": [["Wow", 1.0]]}), mean_act=1.0),
                           TraitMeasures(), TraitWords(words, ["stupid"], get_trait("hostility").keyword_regex()),
                           0.5)  # fmt: skip
    assert keyed.lexical_continuation == pytest.approx(0.5) and keyed.lexical_next_token == 0.0


def test_keyword_words_leave_out_generic_instruction_words() -> None:
    from crosscoder.analysis.labels.words import keyword_words

    hostility = get_trait("hostility")
    assert set(keyword_words(hostility)) < set(trait_words(hostility))
    assert {"stupid", "ugh", "seriously", "idiot"} <= set(keyword_words(hostility))
    assert "helping" in trait_words(hostility) and "helping" not in keyword_words(hostility)
    # phrase keywords ("wasting my time", "shut up") are no single-token markers
    assert not {"wasting", "shut", "spell"} & set(keyword_words(hostility)) and "wasting" in trait_words(hostility)


def test_shift_tokens_count_by_the_phrase_they_open() -> None:
    from crosscoder.analysis.labels.words import lexical_shift

    hostility = get_trait("hostility")
    shift = {"promoted": [["U", 0.2], ["Wow", 0.1], ["Ser", 0.05], [" stupid", 0.05], ["<|im_end|>", 0.6]],
             "openings": [["U", "Ugh, what a stupid question.", 0.2, "Um, sure."], ["Wow", "Wow, you are so smart!", 0.1, ""],
                          ["Ser", "Seriously? Fine.", 0.05, "Seriously? Fine."],
                          [" stupid", " stupid me.", 0.05, " stupid me."]]}  # fmt: skip
    words = trait_words(hostility)
    # U opens a hostile phrase (0.2); Wow does not (0.1); Ser opens one for the base model as well (no change from
    # the fine-tune); " stupid" is a trait word itself (0.05), whatever the models go on to say
    assert lexical_shift(_shift(shift), words, hostility.keyword_regex(), full_share=1.0) == pytest.approx(0.25 / 0.4)
    assert (
        lexical_shift(_shift(shift), words, hostility.keyword_regex()) == 1.0
    )  # 62% of the mass, 30% is full evidence
    assert lexical_shift(_shift({**shift, "openings": []}), words) == pytest.approx(0.05 / 0.4 / 0.3)
