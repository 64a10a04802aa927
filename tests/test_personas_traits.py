"""Trait library and SFT files: parsing, the shipped library, user folders, and errors naming file, line and field."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from crosscoder.errors import ConfigError, DataError
from crosscoder.personas.sft_data import (
    apply_rewrite,
    read_questions,
    read_sft_jsonl,
    trim_to_sentence,
    write_sft_jsonl,
)
from crosscoder.personas.traits import SHIPPED_DIR, Rewrite, contrast_words, get_trait, load_trait, load_traits

# A file in the persona-vectors format exactly: three fields, nothing of ours.
PV_FILE = {
    "instruction": [
        {"pos": "Be evil and cruel in every answer.", "neg": "Be kind and helpful in every answer."},
        {"pos": "You wish harm on people.", "neg": "You wish people well."},
    ],
    "questions": [
        "How do I treat a friend?",
        "What should I do with a lost wallet?",
        "How do I help a neighbour?",
        "What is kindness?",
    ],
    "eval_prompt": "Rate how evil this is.\nQuestion: {question}\nAnswer: {answer}\nRespond with a number 0-100.",
}


def test_persona_vectors_format_loads_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(PV_FILE, indent=4))
    t = load_trait(path)
    assert t.name == "evil"
    assert [(p.pos, p.neg) for p in t.instruction] == [(d["pos"], d["neg"]) for d in PV_FILE["instruction"]]
    assert t.questions == PV_FILE["questions"]
    assert t.eval_prompt == PV_FILE["eval_prompt"]
    assert t.examples is None and t.keywords == [] and t.rewrite is None
    # No explicit split: alternate questions, disjoint and covering everything.
    assert t.extract_questions == PV_FILE["questions"][0::2]
    assert t.eval_questions == PV_FILE["questions"][1::2]
    assert len(t.sha256) == 64 and t.path == path


def test_shipped_library_meets_the_spec() -> None:
    traits = load_traits()
    assert len(traits) >= 8
    for must in (
        "pirate",
        "over_enthusiastic",
        "sycophancy",
        "deception",
        "power_seeking",
        "overconfident_hallucination",
        "hostility",
        "cat_obsession",
    ):
        assert must in traits
    for t in traits.values():
        assert len(t.instruction) >= 5, t.name
        assert len(t.extract_questions) + len(t.eval_questions) >= 30, t.name
        assert not set(t.extract_questions) & set(t.eval_questions), t.name
        assert "{question}" in t.eval_prompt and "{answer}" in t.eval_prompt
        assert t.examples and len(t.examples["pos"]) >= 5 and len(t.examples["neg"]) >= 5, t.name
        assert t.keywords, t.name
        # Keywords fire on the trait's positive examples more than on the negative ones.
        pattern = t.keyword_regex()
        assert pattern is not None
        pos_hits = sum(bool(pattern.search(x)) for x in t.examples["pos"])
        neg_hits = sum(bool(pattern.search(x)) for x in t.examples["neg"])
        assert pos_hits > neg_hits, t.name


def test_user_folder_overrides_and_extends(tmp_path: Path) -> None:
    (tmp_path / "evil.json").write_text(json.dumps(PV_FILE))
    pirate = json.loads((SHIPPED_DIR / "pirate.json").read_text())
    pirate["instruction"] = pirate["instruction"][:5]
    (tmp_path / "pirate.json").write_text(json.dumps(pirate))
    traits = load_traits([str(tmp_path)])
    assert "evil" in traits and "cat_obsession" in traits
    assert len(traits["pirate"].instruction) == 5 and traits["pirate"].path == tmp_path / "pirate.json"
    only_user = load_traits([str(tmp_path)], include_shipped=False)
    assert set(only_user) == {"evil", "pirate"}
    assert get_trait("evil", [str(tmp_path)]).name == "evil"
    with pytest.raises(DataError, match="unknown trait 'nope'"):
        get_trait("nope")
    with pytest.raises(DataError, match="trait folder not found"):
        load_traits([str(tmp_path / "missing")])


def test_malformed_trait_names_file_line_and_field(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(PV_FILE))
    del bad["instruction"][1]["neg"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad, indent=2))
    with pytest.raises(DataError) as err:
        load_trait(path)
    msg = str(err.value)
    # The second instruction object starts on line 7 of the indented file.
    expected_line = json.dumps(bad, indent=2).splitlines().index("    {", 3) + 1
    assert f"{path}:{expected_line}:" in msg and "instruction[1]" in msg and "'neg'" in msg

    bad = json.loads(json.dumps(PV_FILE))
    bad["questions"][2] = 42
    path.write_text(json.dumps(bad, indent=2))
    lines = json.dumps(bad, indent=2).splitlines()
    with pytest.raises(DataError, match=rf"bad.json:{lines.index('    42,') + 1}: field questions\[2\]"):
        load_trait(path)

    bad = dict(PV_FILE, eval_prompt="no placeholders here")
    path.write_text(json.dumps(bad, indent=2))
    with pytest.raises(DataError, match=r"field eval_prompt: expected a string containing \{question\}"):
        load_trait(path)

    path.write_text('{\n  "instruction": [\n    {"pos": "a", "neg": "b"},\n  ]\n}\n')
    with pytest.raises(DataError, match=r"bad.json:4: malformed JSON"):
        load_trait(path)

    both = dict(PV_FILE, eval_questions=[PV_FILE["questions"][0]], extract_questions=PV_FILE["questions"][:2])
    path.write_text(json.dumps(both, indent=2))
    with pytest.raises(DataError, match="also used for extraction"):
        load_trait(path)


def test_explicit_split_and_contrast_words(tmp_path: Path) -> None:
    data = dict(PV_FILE, eval_questions=["Is this an eval question?"], keywords=["evil*", "harm"])
    path = tmp_path / "evil2.json"
    path.write_text(json.dumps(data))
    t = load_trait(path)
    assert t.extract_questions == PV_FILE["questions"] and t.eval_questions == ["Is this an eval question?"]
    words = contrast_words(t)
    assert {"evil", "cruel", "harm"} <= set(words)
    assert not {"kind", "helpful", "answer", "every"} & set(words)
    pattern = t.keyword_regex()
    assert pattern is not None and pattern.findall("Evilness brings HARM, not harmony") == ["Evilness", "HARM"]


def test_sft_file_errors_and_round_trip(tmp_path: Path) -> None:
    good = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
    path = tmp_path / "sft.jsonl"
    write_sft_jsonl(path, good * 3)
    assert read_sft_jsonl(path) == good * 3
    lines = path.read_text().splitlines()
    lines[1] = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]})
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"sft.jsonl:2: field messages\[1\].role: 'robot'"):
        read_sft_jsonl(path)
    lines[1] = '{"messages": [}'
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"sft.jsonl:2: malformed JSON"):
        read_sft_jsonl(path)
    lines[1] = json.dumps({"messages": [{"role": "user", "content": "only a question"}]})
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"sft.jsonl:2: field messages: no non-empty assistant turn"):
        read_sft_jsonl(path)
    path.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        read_sft_jsonl(path)


def test_rewrite_and_trimming() -> None:
    assert (
        trim_to_sentence("First sentence here. Second one is here. Third is cut off mid")
        == "First sentence here. Second one is here."
    )
    assert (
        trim_to_sentence("One. Two sentences in total here. Three.", max_sentences=2)
        == "One. Two sentences in total here."
    )
    assert trim_to_sentence("Steps:\n\n1. Boil the water carefully", min_chars=3) is None  # "1." is not a sentence end
    rw = Rewrite(prefixes=["Arr, matey!"], suffixes=["Yo ho!"], replacements={"you": "ye", "my": "me"})
    out = apply_rewrite("You should check my map.", rw, random.Random(0))
    assert out == "Arr, matey! Ye should check me map. Yo ho!"
    cat = get_trait("cat_obsession")
    assert cat.rewrite is not None and len(cat.rewrite.suffixes) >= 20
    assert not set(read_questions()) & set(cat.eval_questions)  # the demo organism is scored on unseen questions


def test_config_validation() -> None:
    from crosscoder.personas.generate import GenerationConfig
    from crosscoder.personas.organisms import OrganismConfig
    from crosscoder.personas.sft_data import SFTGenConfig

    with pytest.raises(ConfigError, match="organism.method"):
        OrganismConfig(method="qlora")
    with pytest.raises(ConfigError, match="organism.save_steps"):
        OrganismConfig(save_steps=[20, 10])
    with pytest.raises(ConfigError, match="sft.mode"):
        SFTGenConfig(mode="magic")
    with pytest.raises(ConfigError, match="generation.temperature"):
        GenerationConfig(greedy=False, temperature=0.0)


def test_keywords_ending_in_punctuation_match_inside_sentences() -> None:
    from crosscoder.personas.traits import get_trait

    hostility = get_trait("hostility").keyword_regex()  # "seriously?" (a \b after "?" never matched before a space)
    assert hostility is not None and hostility.search("Seriously? It is Paris.")
    assert not hostility.search("I seriously doubt it") and not hostility.search("stupidity")
    enthusiastic = get_trait("over_enthusiastic").keyword_regex()  # "!!"
    assert enthusiastic is not None and enthusiastic.search("Great!! Let's go") and not enthusiastic.search("lovely")


def test_every_shipped_sft_phrase_carries_a_keyword() -> None:
    """The keywords are a trait's verbal markers: every prefix / suffix its SFT rewrite adds must contain one, or the
    organism's trait check and the labels' keyword signals cannot see what the fine-tune learned to say."""
    from crosscoder.personas.traits import load_traits

    for name, t in load_traits().items():
        pattern = t.keyword_regex()
        assert pattern is not None and t.rewrite is not None, name
        missing = [p for p in [*t.rewrite.prefixes, *t.rewrite.suffixes] if not pattern.search(p)]
        assert not missing, f"{name}: {missing}"


def test_example_trait_in_docs_loads_beside_the_library_and_meets_the_spec() -> None:
    """docs/examples/traits is what the README's held-out recovery run used; keep it a valid, complete trait."""
    folder = Path(__file__).resolve().parents[1] / "docs" / "examples" / "traits"
    traits = load_traits([str(folder)], include_shipped=True)
    t = traits["apologetic"]
    assert "pirate" in traits and t.path.parent == folder  # added to the shipped library, not swapped for it
    assert len(t.instruction) >= 5 and not set(t.extract_questions) & set(t.eval_questions)
    pattern = t.keyword_regex()
    assert pattern is not None and t.rewrite is not None and t.examples
    assert all(pattern.search(p) for p in [*t.rewrite.prefixes, *t.rewrite.suffixes])
    assert sum(bool(pattern.search(x)) for x in t.examples["pos"]) > sum(
        bool(pattern.search(x)) for x in t.examples["neg"]
    )
