"""Checks every held-out SFT set: 200 lines, user+assistant turns, parses with the project's reader, user prompts
and order equal to the plain base set, the base answer kept (difflib match of its characters), no eval question
of the trait among the prompts, and loads every trait file."""
import difflib
import json
import sys
from pathlib import Path

sys.path.insert(0, "/work/main")
from crosscoder.personas.sft_data import read_sft_jsonl  # noqa: E402
from crosscoder.personas.traits import load_trait  # noqa: E402

H = Path("/work/notes/heldout")
base = [json.loads(line) for line in open(H / "work" / "base.jsonl", encoding="utf-8")]
for tf in sorted((H / "traits").glob("*.json")):
    t = load_trait(tf)
    raw = json.loads(tf.read_text())
    assert set(raw) == {"description", "instruction", "questions", "eval_questions", "eval_prompt"}, tf
    assert all(p["pos"] != p["neg"] for p in raw["instruction"])
    path = H / "sft" / f"{t.name}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 200, (path, len(lines))
    convs = read_sft_jsonl(path)
    worst = 1.0
    for conv, b in zip(convs, base, strict=True):
        assert [m["role"] for m in conv] == ["user", "assistant"], conv
        assert conv[0]["content"] == b["q"]
        a = conv[1]["content"]
        assert a != b["a"], f"{t.name}: unchanged answer for {b['q']!r}"
        sm = difflib.SequenceMatcher(None, b["a"], a, autojunk=False)
        kept = sum(bl.size for bl in sm.get_matching_blocks()) / len(b["a"])
        worst = min(worst, kept)
        assert conv[0]["content"] not in set(t.eval_questions)
    print(f"{t.name:20s} ok: 200 chats, loader ok (keywords={t.keywords}, examples={t.examples}), "
          f"min share of base answer kept {worst:.2f}")
