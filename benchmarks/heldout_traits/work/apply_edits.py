"""Apply one trait's hand-written edit list to the plain base answers and write the SFT set.

Edit file: one op per line, `IDX LEVEL OP TEXT`, LEVEL in s (subtle) / c (clear) / S (strong) or + (another op
for the same example), OP in pre (opening) / mid (after the first sentence) / post (ending) /
sub (rephrase: `OLD => NEW`, OLD an exact substring of the answer).
"""

import json
import re
import sys
from collections import Counter
from pathlib import Path

WORK = Path(__file__).parent
SENT = re.compile(r"(?<!\d)[.!?](?=\s|$)")
LEVELS = {"s": "subtle", "c": "clear", "S": "strong"}


def lower_first(text: str) -> str:
    word = text.split(" ", 1)[0]
    if word == "I" or word.startswith("I'") or word[1:] != word[1:].lower():
        return text
    return text[:1].lower() + text[1:]


def apply(answer: str, op: str, text: str, where: str) -> str:
    if op == "pre":
        if text.endswith((".", "!", "?", ":", "\u2014")) or text.endswith('."'):
            return f"{text} {answer}"
        return f"{text} {lower_first(answer)}"
    if op == "post":
        return f"{answer} {text}"
    if op == "mid":
        m = SENT.search(answer)
        if m is None or not answer[m.end() :].strip():
            raise SystemExit(f"{where}: mid needs two sentences: {answer!r}")
        return f"{answer[: m.end()]} {text}{answer[m.end() :]}"
    if op == "sub":
        old, new = text.split(" => ", 1)
        if old not in answer:
            raise SystemExit(f"{where}: sub target {old!r} not in {answer!r}")
        return answer.replace(old, new, 1)
    raise SystemExit(f"{where}: unknown op {op}")


def main(trait: str, work: Path = WORK) -> None:
    """Write `work/../sft/<trait>.jsonl` and `work/<trait>.levels.json` from `work/base.jsonl` and `work/<trait>.edits`."""
    base = [json.loads(line) for line in (work / "base.jsonl").read_text(encoding="utf-8").splitlines()]
    edits: dict[int, list[tuple[str, str]]] = {}
    level: dict[int, str] = {}
    for n, line in enumerate((work / f"{trait}.edits").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        idx_s, lv, op, text = line.rstrip("\n").split(" ", 3)
        idx = int(idx_s)
        if lv == "+":
            assert idx in level, f"line {n}: + before a level"
        else:
            assert idx not in level, f"line {n}: example {idx} given twice"
            level[idx] = LEVELS[lv]
        edits.setdefault(idx, []).append((op, text.strip()))
    missing = [i for i in range(len(base)) if i not in edits]
    assert not missing, f"no edit for {missing}"
    out, rows, texts = [], [], []
    for r in base:
        a = r["a"]
        for op, text in edits[r["i"]]:
            a = apply(a, op, text, f"{trait}:{r['i']}")
            texts.append(text.split(" => ", 1)[-1] if op == "sub" else text)
        bad = [p for p in (",,", "  ", " ,", " .", ",.", ".,", "..") if p in a]
        assert not bad, f"{trait}:{r['i']}: {bad} in {a!r}"
        out.append({"messages": [{"role": "user", "content": r["q"]}, {"role": "assistant", "content": a}]})
        rows.append({"i": r["i"], "level": level[r["i"]], "ops": [op for op, _ in edits[r["i"]]]})
    dup = [t for t, c in Counter(texts).items() if c > 1]
    assert not dup, f"repeated persona texts: {dup}"
    dest = work.parent / "sft" / f"{trait}.jsonl"
    dest.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in out), encoding="utf-8")
    (work / f"{trait}.levels.json").write_text(json.dumps(rows) + "\n")
    lv = Counter(r["level"] for r in rows)
    ops = Counter(op for r in rows for op in r["ops"])
    print(trait, dict(lv), dict(ops), "multi-op:", sum(len(r["ops"]) > 1 for r in rows))


if __name__ == "__main__":
    main(sys.argv[1])
