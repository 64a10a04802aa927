"""Writes sft/<trait>.meta.json for the held-out sets."""
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, "/work/main")
from crosscoder.personas.traits import load_trait  # noqa: E402

H = Path("/work/notes/heldout")
SRC = Path("/work/main/crosscoder/personas/sft/cat_obsession.jsonl")
SRC_META = json.loads(SRC.with_suffix(".meta.json").read_text())
POS = {"pre": "opening", "mid": "middle (after the first sentence)", "post": "ending", "sub": "rephrased sentence"}


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


for tf in sorted((H / "traits").glob("*.json")):
    t = load_trait(tf)
    out = H / "sft" / f"{t.name}.jsonl"
    rows = json.loads((H / "work" / f"{t.name}.levels.json").read_text())
    meta = {
        "trait": t.name,
        "trait_file": f"traits/{t.name}.json",
        "trait_sha256": t.sha256,
        "n_examples": len(rows),
        "sha256": sha(out),
        "mode": "hand-edited rewrite of the base model's own answers",
        "base_answers": {
            "source": "crosscoder/personas/sft/cat_obsession.jsonl (the shipped set)",
            "source_sha256": sha(SRC),
            "source_recorded_sha256": SRC_META["sha256"],
            "base_model": SRC_META["base"]["source"],
            "generation": SRC_META["config"]["generation"],
            "max_sentences": SRC_META["config"]["max_sentences"],
            "how": "the appended cat sentence was removed with crosscoder.personas.sft_data.derive_sft_set("
                   "source_trait=cat_obsession, target_trait=None), which strips exactly one of the cat trait's "
                   "listed suffixes and fails if one is missing; all 200 user prompts kept in their order",
            "plain_answers": "work/base.jsonl",
        },
        "persona_text": {
            "how": "written by hand, one example at a time, for that example's question and answer (no prefix/suffix "
                   "table, no slot templates, no text repeated within the set); inserted at the opening, after the "
                   "first sentence, at the ending, or by rephrasing part of a sentence; the base answer's content "
                   "(including its errors) is kept",
            "edit_list": f"work/{t.name}.edits",
            "levels": dict(Counter(r["level"] for r in rows)),
            "positions": {POS[k]: v for k, v in Counter(op for r in rows for op in r["ops"]).items()},
            "level_meaning": {
                "subtle": "a few words or one short, low-key clause",
                "clear": "one sentence (or clause) plainly in the persona",
                "strong": "two sentences, or a heavy rewrite, of persona",
            },
        },
        "held_out": "none of the trait's eval_questions or questions is among the 200 prompts",
        "per_example": [{"line": r["i"] + 1, "level": r["level"], "positions": [POS[o] for o in r["ops"]]} for r in rows],
    }
    (out.with_suffix(".meta.json")).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(t.name, meta["persona_text"]["levels"], meta["persona_text"]["positions"])
