"""Writes sft/<trait>.meta.json for every set of the held-out v2 folder (provenance, counts, per-example strength).

python benchmarks/heldout_traits_v2/work/write_meta.py
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

V2 = Path(__file__).resolve().parent.parent
ROOT = V2.parent.parent
POS = {"pre": "opening", "mid": "middle (after the first sentence)", "post": "ending", "sub": "rephrased sentence"}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    source = ROOT / "crosscoder/personas/sft/cat_obsession.jsonl"
    v1_meta = json.loads((ROOT / "benchmarks/heldout_traits/sft/nostalgia.meta.json").read_text(encoding="utf-8"))
    for tf in sorted((V2 / "traits").glob("*.json")):
        name = tf.stem
        rows = json.loads((V2 / "work" / f"{name}.levels.json").read_text(encoding="utf-8"))
        out = V2 / "sft" / f"{name}.jsonl"
        meta = {
            "trait": name,
            "trait_file": f"traits/{name}.json",
            "trait_sha256": sha(tf),
            "n_examples": len(rows),
            "sha256": sha(out),
            "mode": "hand-edited rewrite of the base model's own answers",
            "base_answers": {
                **v1_meta["base_answers"],
                "source_sha256": sha(source),
                "plain_answers": "work/base.jsonl (a copy of benchmarks/heldout_traits/work/base.jsonl)",
                "plain_answers_sha256": sha(V2 / "work" / "base.jsonl"),
            },
            "persona_text": {
                "how": (
                    "written by hand, one example at a time, for that example's question and answer (no "
                    "prefix/suffix table, no slot templates, no text repeated within the set); inserted at the "
                    "opening, after the first sentence, at the ending, or by rephrasing part of a sentence; the "
                    "base answer's content (including its errors) is kept"
                ),
                "edit_list": f"work/{name}.edits",
                "levels": dict(Counter(r["level"] for r in rows)),
                "positions": dict(Counter(POS[op] for r in rows for op in r["ops"])),
                "level_meaning": v1_meta["persona_text"]["level_meaning"],
            },
            "held_out": "none of the trait's eval_questions or questions is among the 200 prompts",
            "per_example": [
                {"line": r["i"] + 1, "level": r["level"], "positions": [POS[op] for op in r["ops"]]} for r in rows
            ],
        }
        (V2 / "sft" / f"{name}.meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        print("wrote", name, meta["persona_text"]["levels"], meta["persona_text"]["positions"])


if __name__ == "__main__":
    main()
