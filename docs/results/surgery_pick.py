"""The rule that turns the dev results of ``surgery_dev.py`` into the benchmark's ``--components`` (fixed before
the dev run): the smallest n whose greedy dev answers lose >= 80% of the organism's removed-trait keyword rate while
the kept trait keeps >= 80% of its likelihood gain and the plain answers' perplexity moves <= 5%; else the n with the
largest likelihood drop among those meeting the kept and capability conditions; else 192.

    python docs/results/surgery_pick.py docs/results/surgery_dev.json   # prints n
"""

from __future__ import annotations

import json
import sys


def pick(res: dict, removed: str = "pirate") -> int:
    base, mix = res["gen base"][removed], res["gen mix"][removed]
    ok, fallback = [], []
    for n in (96, 192, 384):
        ll, gen = res.get(f"components n={n}"), res.get(f"gen n={n}")
        if ll is None or gen is None or ll["kept"] < 0.8 or ll["cap"] > 0.05:
            continue
        gen_drop = (mix - gen[removed]) / (mix - base) if mix > base else float("nan")
        (ok if gen_drop >= 0.8 else fallback).append((n, ll["drop"]))
    if ok:
        return min(n for n, _ in ok)
    if fallback:
        return max(fallback, key=lambda x: x[1])[0]
    return 192


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as fh:
        print(pick(json.load(fh)))
