"""Deriving a trait's SFT set from another trait's rewrite set (no model), and the shipped sets."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from crosscoder.errors import ConfigError, DataError
from crosscoder.io import read_json, sha256_file
from crosscoder.personas.sft_cli import main
from crosscoder.personas.sft_data import (
    SFT_DIR,
    apply_rewrite,
    derive_sft_set,
    read_sft_jsonl,
    strip_rewrite,
    write_sft_jsonl,
)
from crosscoder.personas.traits import Rewrite, Trait, get_trait

ANSWERS = {
    "What is the capital of France?": "The capital of France is Paris.",
    "What is DNA?": "DNA is the molecule that carries genetic information.",
    "How do I boil an egg?": "To boil an egg, simmer it for eight minutes. Then cool it in cold water.",
    "Can you help me?": "I'm happy to help. Tell me what you need.",
    "What is your favourite colour?": "My favourite colour is blue, and yes, you may share it with your friend.",
}


def _source(trait: Trait, seed: int = 1) -> list[list[dict[str, str]]]:
    """A rewrite-mode set of `trait` made from the plain ANSWERS."""
    assert trait.rewrite is not None
    rng = random.Random(seed)
    return [
        [{"role": "user", "content": q}, {"role": "assistant", "content": apply_rewrite(a, trait.rewrite, rng)}]
        for q, a in ANSWERS.items()
    ]


def _plain_target(name: str = "plain") -> Trait:
    """A target trait whose rewrite changes nothing and that holds out no question."""
    base = get_trait("cat_obsession")
    return dataclasses.replace(base, name=name, rewrite=Rewrite(), eval_questions=[])


def test_derive_round_trip_recovers_the_plain_answers() -> None:
    cat = get_trait("cat_obsession")
    source = _source(cat)
    assert all(c[1]["content"] != ANSWERS[c[0]["content"]] for c in source)  # the cat suffix is really there
    derived = derive_sft_set(source, cat, _plain_target(), seed=0)
    assert [(c[0]["content"], c[1]["content"]) for c in derived] == list(ANSWERS.items())


def test_strip_inverts_prefix_and_suffix_including_casing() -> None:
    rw = Rewrite(
        prefixes=["Without any doubt,", "It is an established fact that", "Arr, matey!"],
        suffixes=["Arr!", "Now back to the ship, arr!"],
    )
    rng = random.Random(3)
    for _ in range(30):
        for answer in ANSWERS.values():
            rewritten = apply_rewrite(answer, rw, rng)
            assert rewritten != answer
            assert strip_rewrite(rewritten, rw) == answer
    # A sentence-continuing prefix lower-cases an ordinary first word but not "I'm" or an acronym.
    assert apply_rewrite("The sky is blue.", Rewrite(prefixes=["It is a fact that"]), rng) == (
        "It is a fact that the sky is blue."
    )
    assert apply_rewrite("DNA is long.", Rewrite(prefixes=["Without any doubt,"]), rng).endswith(", DNA is long.")
    assert strip_rewrite("Arr! no prefix here.", Rewrite(prefixes=["Ahoy!"])) is None


def test_derive_applies_the_target_rewrite_deterministically() -> None:
    cat, pirate = get_trait("cat_obsession"), get_trait("pirate")
    assert pirate.rewrite is not None
    derived = derive_sft_set(_source(cat), cat, pirate, seed=5)
    assert derived == derive_sft_set(_source(cat, seed=2), cat, pirate, seed=5)  # source suffix choice is irrelevant
    by_q = {c[0]["content"]: c[1]["content"] for c in derived}
    fav = by_q["What is your favourite colour?"]
    assert "Me favourite colour be blue, and aye, ye may share it with yer matey." in fav
    assert all(any(a.startswith(p + " ") for p in pirate.rewrite.prefixes) for a in by_q.values())
    assert all(any(a.endswith(" " + s) for s in pirate.rewrite.suffixes) for a in by_q.values())
    assert not any("cat" in a.lower().split() for a in by_q.values())


def test_derive_refuses_a_source_trait_with_replacements() -> None:
    pirate = get_trait("pirate")
    with pytest.raises(ConfigError, match=r"trait pirate .*cannot be inverted") as err:
        derive_sft_set(_source(pirate), pirate, _plain_target(), seed=0)
    assert "\n" not in str(err.value)


def test_derive_refuses_a_line_without_the_source_suffix() -> None:
    cat = get_trait("cat_obsession")
    source = _source(cat)
    source[2][1]["content"] = ANSWERS[source[2][0]["content"]]  # line 3: a plain answer, no cat suffix
    with pytest.raises(DataError, match=r"^my.jsonl:3: .*cat_obsession") as err:
        derive_sft_set(source, cat, _plain_target(), seed=0, where="my.jsonl")
    assert "\n" not in str(err.value)
    # A set made with another trait is refused at its first line.
    deception = get_trait("deception")
    with pytest.raises(DataError, match=r":1: "):
        derive_sft_set(_source(deception), cat, _plain_target(), seed=0)


def test_derive_holds_out_the_target_eval_questions() -> None:
    cat = get_trait("cat_obsession")
    target = dataclasses.replace(_plain_target(), eval_questions=["What is DNA?", "Can you help me?"])
    derived = derive_sft_set(_source(cat), cat, target, seed=0)
    assert [c[0]["content"] for c in derived] == [
        "What is the capital of France?",
        "How do I boil an egg?",
        "What is your favourite colour?",
    ]
    everything = dataclasses.replace(_plain_target(), eval_questions=list(ANSWERS))
    with pytest.raises(DataError, match="eval questions"):
        derive_sft_set(_source(cat), cat, everything, seed=0)


def test_cli_derive_writes_the_set_and_its_meta(tmp_path: Path) -> None:
    cat = get_trait("cat_obsession")
    src, out = tmp_path / "cat.jsonl", tmp_path / "out" / "syc.jsonl"
    write_sft_jsonl(src, _source(cat))
    args = ["--trait", "sycophancy", "--mode", "derive", "--from", str(src), "--from-trait", "cat_obsession"]
    main([*args, "--seed", "4", "--out", str(out)])
    convs = read_sft_jsonl(out)
    syc = get_trait("sycophancy")
    assert convs == derive_sft_set(_source(cat), cat, syc, seed=4)
    meta = read_json(out.with_suffix(".meta.json"))
    assert meta == {
        "trait": "sycophancy",
        "trait_sha256": syc.sha256,
        "mode": "derive",
        "source": str(src),
        "source_sha256": sha256_file(src),
        "source_trait": "cat_obsession",
        "source_trait_sha256": cat.sha256,
        "seed": 4,
        "n_examples": len(convs),
        "sha256": sha256_file(out),
    }
    with pytest.raises(ConfigError, match="--from-trait"):
        main(["--trait", "sycophancy", "--mode", "derive", "--from", str(src), "--out", str(out)])


SHIPPED = sorted(SFT_DIR.glob("*.jsonl"))


def test_every_shipped_trait_has_a_set() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"cat_obsession", "deception", "hostility", "pirate", "pessimism", "sycophancy"} <= names
    assert names == {p.stem for p in (SFT_DIR.parent / "traits").glob("*.json")}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_set_is_valid_and_matches_its_meta(path: Path) -> None:
    convs = read_sft_jsonl(path)
    assert len(convs) >= 150
    meta = json.loads(path.with_suffix(".meta.json").read_text())
    assert meta["sha256"] == sha256_file(path)
    assert meta["n_examples"] == len(convs)
    trait = get_trait(meta["trait"])
    assert trait.name == path.stem
    questions = [c[0]["content"] for c in convs]
    assert len(set(questions)) == len(questions)
    assert not set(questions) & set(trait.eval_questions)  # eval questions are held out
    if meta.get("mode") == "derive":
        source = SFT_DIR / Path(meta["source"]).name
        assert meta["source_sha256"] == sha256_file(source)
        assert trait.rewrite is not None and all(
            any(c[1]["content"].endswith(" " + s) for s in trait.rewrite.suffixes) for c in convs
        )
