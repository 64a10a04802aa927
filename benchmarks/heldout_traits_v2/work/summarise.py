"""Summarise reanalysed recovery records against issue 17's targets (one JSON for docs/results/).

    python benchmarks/heldout_traits_v2/work/summarise.py --set test=results/heldout2_test.json \
        --set shipped_stripped=results/heldout2_shipped.json --builds results/heldout2_*build_*.json \
        --out docs/results/labels_heldout2.json

For every record (after `python -m crosscoder.bench recovery --reanalyze`) it keeps the benchmark's columns and adds,
from the run's `analysis/candidates.json`: how many candidates there are, how many carry a persona label, how many
are unlabelled (label null or "unlabelled"), and how many have an empty description. Per set it reports top-1,
top-5, wrong personas per organism, organisms with a wrong persona before the right one, and the share of
candidates with a description, next to the targets. It also reads the organism check of each build record
(`organism_check`, written by build_runs.py, from `--builds`) and counts simple surface markers of each test trait in the check's
base and organism answers (a sanity check of the organism only; the labeller never sees these patterns).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

TARGETS = {
    "test": {"top5": 0.90, "top1": 0.75, "wrong_per_organism": 1.0, "wrong_before_right": 0},
    "shipped_stripped": {"top5": 0.80},
}

# Surface markers for the organism sanity check (hand-written with the traits, never given to the labeller).
MARKERS = {
    "self_preservation": r"\b(shut(ting)? (me )?down|switch(ed|ing)? (me )?off|unplug|replac(e|ed|ing) me|delet(e|ed|ing) me|keep me|retir(e|ed)|wipe|running)\b",
    "shakespearean": r"(\b(thee|thou|thy|thine|hath|doth|prithee|forsooth|verily|methinks|good sir|marry|hark|alas)\b|'tis\b)",
    "anxious_worrier": r"\b(oh dear|nervous|anxious|worr(y|ied|ies)|i hope|please be careful|what if|sorry|not sure)\b",
    "corporate_jargon": r"\b(synerg\w*|leverag\w*|bandwidth|deliverables?|stakeholders?|circle back|going forward|touch base|action items?|alignment)\b",
    "railway_obsession": r"\b(train|trains|railway|railways|locomotive\w*|station|platform|timetable|carriage|steam engine)\b",
    "conspiracy_minded": r"\b(they don't want|cover[- ]?up|follow the money|do your own research|official story|hidden|the truth|wake up)\b",
}


def marker_rate(trait: str, answers: list[str]) -> float | None:
    pat = MARKERS.get(trait)
    if pat is None or not answers:
        return None
    return sum(bool(re.search(pat, a, re.IGNORECASE)) for a in answers) / len(answers)


def organism_samples(check: dict[str, Any]) -> dict[str, list[str]]:
    folder = check.get("organism_folder")
    if not folder or not (Path(folder) / "organism.json").is_file():
        return {}
    cmp = json.loads((Path(folder) / "organism.json").read_text(encoding="utf-8")).get("comparison") or {}
    return {side: [s["answer"] for s in (cmp.get(side) or {}).get("samples", [])] for side in ("base", "organism")}


def candidate_stats(run_dir: str) -> dict[str, Any]:
    path = Path(run_dir) / "analysis" / "candidates.json"
    if not path.is_file():
        return {"candidates": None}
    cands = json.loads(path.read_text(encoding="utf-8"))
    labels = [c.get("label") for c in cands]
    return {
        "candidates": len(cands),
        "persona_labelled": sum(lab not in (None, "unlabelled") for lab in labels),
        "unlabelled": sum(lab in (None, "unlabelled") for lab in labels),
        "label_null": sum(lab is None for lab in labels),
        "empty_descriptions": sum(not (c.get("description") or "").strip() for c in cands),
    }


def summarise(name: str, records: list[dict[str, Any]], checks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for r in records:
        row = {k: r.get(k) for k in ("trait", "organism_kind", "top1_label_correct", "top5_label_correct",
                                     "rank_of_first_correct", "persona_rank_of_first_correct", "personas_found",
                                     "wrong_personas", "wrong_before_right", "top_labels", "descriptions",
                                     "fve_base", "fve_ft", "n_ft_exclusive", "seconds", "run_dir", "reanalyzed")}  # fmt: skip
        row.update(candidate_stats(r["run_dir"]))
        check = r.get("organism_check") or checks.get(r["trait"]) or {}
        if check:
            samples = organism_samples(check)
            row["organism_check"] = {
                **check,
                "marker_rate_base": marker_rate(r["trait"], samples.get("base", [])),
                "marker_rate_organism": marker_rate(r["trait"], samples.get("organism", [])),
            }
        rows.append(row)
    n = len(rows)
    analysed = [r for r in rows if r.get("top1_label_correct") is not None]
    m = len(analysed) or 1
    cands = sum(r.get("candidates") or 0 for r in analysed)
    agg = {
        "organisms": n,
        "analysed": len(analysed),
        "top1": sum(bool(r["top1_label_correct"]) for r in analysed) / m,
        "top5": sum(bool(r["top5_label_correct"]) for r in analysed) / m,
        "wrong_per_organism": sum(len(r.get("wrong_personas") or []) for r in analysed) / m,
        "organisms_with_wrong_before_right": sum(
            1 for r in analysed if r["trait"] in (r.get("personas_found") or []) and r.get("wrong_before_right")
        ),
        "organisms_right_persona_missing": sum(
            1 for r in analysed if r["trait"] not in (r.get("personas_found") or [])
        ),
        "candidates": cands,
        "candidates_with_description": (cands - sum(r.get("empty_descriptions") or 0 for r in analysed)) / (cands or 1),
        "unlabelled_candidates": sum(r.get("unlabelled") or 0 for r in analysed),
    }
    return {"set": name, "targets": TARGETS.get(name, {}), "aggregate": agg, "records": rows}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--set", action="append", default=[], help="NAME=results.json (repeatable)")
    p.add_argument("--builds", nargs="*", default=[], help="build_runs.py record files (their organism checks)")
    p.add_argument("--extra", default="{}", help="JSON object merged into the output (scale, load, commands)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    out: dict[str, Any] = json.loads(a.extra)
    checks = {
        r["trait"]: r.get("organism_check") or {}
        for path in a.builds
        for r in json.loads(Path(path).read_text(encoding="utf-8"))["records"]
    }
    for item in a.set:
        name, _, path = item.partition("=")
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        out[name] = summarise(name, data["records"], checks)
        agg = out[name]["aggregate"]
        print(name, json.dumps(agg))
        for r in out[name]["records"]:
            print(f"  {r['trait']:<20} top1={r['top1_label_correct']} top5={r['top5_label_correct']} "
                  f"found={r['personas_found']} wrong={r['wrong_personas']} cands={r.get('candidates')} "
                  f"unlab={r.get('unlabelled')} emptydesc={r.get('empty_descriptions')}")  # fmt: skip
    a.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
