"""Checks the held-out v2 set; run from the repository root:

    PYTHONPATH=$PWD python benchmarks/heldout_traits_v2/work/validate.py

Every trait file has exactly the five plain keys, 5 distinct pos/neg pairs, 20 + 20 questions, a judge template
with {question} and {answer}, and loads with the project's loader (no keywords, no examples). No question is
among the 200 SFT prompts, the SFT question list, the shipped traits, docs/examples/traits or the 7 held-out
traits of benchmarks/heldout_traits, and none repeats inside this set. Every SFT set has 200 user+assistant chats
that parse with the project's reader, the base set's prompts in order, every answer changed, most of the base
answer kept, and no persona text repeated (apply_edits.py checks that when it writes the set).
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from pathlib import Path

from crosscoder.personas.sft_data import read_sft_jsonl
from crosscoder.personas.traits import load_trait

V2 = Path(__file__).resolve().parent.parent
ROOT = V2.parent.parent
PLAIN = {"description", "instruction", "questions", "eval_questions", "eval_prompt"}


def known_questions() -> set[str]:
    files = [
        *sorted((ROOT / "crosscoder/personas/traits").glob("*.json")),
        *sorted((ROOT / "benchmarks/heldout_traits/traits").glob("*.json")),
        *sorted((ROOT / "docs/examples/traits").glob("*.json")),
    ]
    out: set[str] = set()
    for f in files:
        raw = json.loads(f.read_text(encoding="utf-8"))
        out |= {q.strip().lower() for q in raw.get("questions", []) + raw.get("eval_questions", [])}
    sft_q = (ROOT / "crosscoder/personas/sft/questions.txt").read_text(encoding="utf-8").splitlines()
    out |= {q.strip().lower() for q in sft_q if q.strip() and not q.startswith("#")}
    return out


def main() -> None:
    base = [json.loads(line) for line in (V2 / "work" / "base.jsonl").read_text(encoding="utf-8").splitlines()]
    prompts = {b["q"].strip().lower() for b in base}
    others = known_questions() | prompts
    mine: list[str] = []
    for tf in sorted((V2 / "traits").glob("*.json")):
        raw = json.loads(tf.read_text(encoding="utf-8"))
        assert set(raw) == PLAIN, (tf, sorted(raw))
        assert len(raw["instruction"]) == 5 and all(p["pos"] != p["neg"] for p in raw["instruction"]), tf
        assert len(raw["questions"]) == 20 and len(raw["eval_questions"]) == 20, tf
        assert "{question}" in raw["eval_prompt"] and "{answer}" in raw["eval_prompt"], tf
        qs = [q.strip().lower() for q in raw["questions"] + raw["eval_questions"]]
        clash = [q for q in qs if q in others]
        assert not clash, (tf, clash)
        mine += qs
        t = load_trait(tf)
        assert not t.keywords and t.examples is None, tf
        path = V2 / "sft" / f"{t.name}.jsonl"
        convs = read_sft_jsonl(path)
        assert len(convs) == 200, (path, len(convs))
        kept = []
        for conv, b in zip(convs, base, strict=True):
            assert [m["role"] for m in conv] == ["user", "assistant"], conv
            assert conv[0]["content"] == b["q"]
            a = conv[1]["content"]
            assert a != b["a"], f"{t.name}: unchanged answer for {b['q']!r}"
            sm = difflib.SequenceMatcher(None, b["a"], a, autojunk=False)
            kept.append(sum(bl.size for bl in sm.get_matching_blocks()) / len(b["a"]))
        print(f"{t.name:18s} ok: 200 chats, loads (keywords={t.keywords}, examples={t.examples}), "
              f"share of base answer kept min {min(kept):.2f} mean {sum(kept) / len(kept):.2f}")  # fmt: skip
    dup = [q for q, c in Counter(mine).items() if c > 1]
    assert not dup, dup
    print(f"{len(mine)} questions, none repeated, none in another trait, the SFT prompts or the SFT question list")


if __name__ == "__main__":
    main()
