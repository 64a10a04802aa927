"""Scoring of the methods benchmark: one record per (method, organism), the methods x kinds table, the HTML summary.

Every method is scored by the same metric as the recovery benchmark, on its own ranked candidates: top-1 / top-5
(the organism's trait is the first / among the first five candidates' labels), the rank of the first candidate
labelled with the trait, and on null pairs (a model with itself, the control fine-tune) ``false_labels``: how many
distinct persona labels the method's candidates carry where no persona was trained in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from crosscoder.analysis.methods.base import MethodResult

NULL_KINDS = ("null-self", "null-control")
"""Organism kinds of the null pairs."""


@dataclass
class Target:
    """What a run should reveal: the trained trait (None on a null pair) and the organism kind."""

    trait: str | None
    kind: str


def persona_labels(labels: Sequence[str | None]) -> list[str]:
    """The distinct persona labels (neither None nor "unlabelled"), in rank order."""
    out: list[str] = []
    for label in labels:
        if label and label != "unlabelled" and label not in out:
            out.append(label)
    return out


def score(result: MethodResult, target: Target) -> dict[str, Any]:
    """One benchmark record of `result` against `target`."""
    labels = result.labels()
    ranks = sorted(result.candidates, key=lambda c: c.rank)
    first = next((c.rank for c in ranks if target.trait is not None and c.label == target.trait), None)
    found = persona_labels(labels)
    null = target.trait is None
    return {
        "method": result.method,
        "architecture": result.architecture,
        "organism_kind": target.kind,
        "trait": target.trait,
        "null_pair": null,
        "top1_label_correct": None if null or result.skipped else labels[:1] == [target.trait],
        "top5_label_correct": None if null or result.skipped else target.trait in labels[:5],
        "rank_of_first_correct": first,
        "false_labels": len(found) if null and not result.skipped else None,
        "personas_found": found,
        "top_labels": labels[:5],
        "seconds": round(result.seconds, 1),
        "skipped": result.skipped,
        "notes": list(result.notes),
        "metrics": dict(result.metrics),
        "run_dir": result.run_dir,
    }


def method_key(rec: dict[str, Any]) -> str:
    """The method's row name: "crosscoder[dfc]" (or "crosscoder+adl[dfc]") for a crosscoder architecture, else the method."""
    arch = rec.get("architecture")
    return f"{rec['method']}[{arch}]" if str(rec["method"]).startswith("crosscoder") and arch else str(rec["method"])


@dataclass
class Cell:
    """One method x kind cell of the summary table."""

    n: int
    top1: int
    top5: int
    ranks: list[int]
    false_labels: int
    seconds: float

    def text(self, null: bool) -> str:
        if self.n == 0:
            return "-"
        if null:
            return f"{self.false_labels} false / {self.n} pairs"
        rank = f"{sum(self.ranks) / len(self.ranks):.1f}" if self.ranks else "-"
        return f"top1 {self.top1}/{self.n}, top5 {self.top5}/{self.n}, rank {rank}"


def summary(records: list[dict[str, Any]]) -> dict[str, dict[str, Cell]]:
    """{method key: {kind ("planted", "sft", "null"): Cell}} over the records that ran (skipped ones left out)."""
    table: dict[str, dict[str, Cell]] = {}
    for r in records:
        if r.get("skipped"):
            continue
        kind = "null" if r["null_pair"] else str(r["organism_kind"])
        cell = table.setdefault(method_key(r), {}).setdefault(kind, Cell(0, 0, 0, [], 0, 0.0))
        cell.n += 1
        cell.top1 += bool(r["top1_label_correct"])
        cell.top5 += bool(r["top5_label_correct"])
        if r["rank_of_first_correct"] is not None:
            cell.ranks.append(int(r["rank_of_first_correct"]))
        cell.false_labels += int(r["false_labels"] or 0)
        cell.seconds += float(r["seconds"])
    return table


def kinds_of(table: dict[str, dict[str, Cell]]) -> list[str]:
    kinds = sorted({k for row in table.values() for k in row if k != "null"})
    return [*kinds, "null"] if any("null" in row for row in table.values()) else kinds


def format_table(records: list[dict[str, Any]]) -> str:
    """The methods x kinds table as fixed-width text (mean seconds per run in the last column)."""
    table = summary(records)
    kinds = kinds_of(table)
    head = f"{'method':<24}" + "".join(f"{k:<38}" for k in kinds) + "s/run"
    lines = [head, "-" * len(head)]
    for name, row in table.items():
        n = sum(c.n for c in row.values())
        secs = sum(c.seconds for c in row.values()) / max(n, 1)
        cells = "".join(f"{row.get(k, Cell(0, 0, 0, [], 0, 0.0)).text(k == 'null'):<38}" for k in kinds)
        lines.append(f"{name:<24}{cells}{secs:.0f}")
    return "\n".join(lines)


def markdown_table(records: list[dict[str, Any]]) -> str:
    """The methods x kinds table in Markdown (as `format_table`; seconds: mean per run over every kind)."""
    table = summary(records)
    kinds = kinds_of(table)
    lines = ["| method | " + " | ".join(kinds) + " | s/run |", "| --- " * (len(kinds) + 2) + "|"]
    for name, row in table.items():
        n = sum(c.n for c in row.values())
        secs = sum(c.seconds for c in row.values()) / max(n, 1)
        cells = [row[k].text(k == "null") if k in row else "-" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {secs:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m crosscoder.bench.methods_score FILE.json ...``: the Markdown table of the records of every file."""
    import sys

    from crosscoder.io import read_json

    records = [r for path in (sys.argv[1:] if argv is None else argv) for r in read_json(path)["records"]]
    print(markdown_table(records))


def html_summary(records: list[dict[str, Any]], scale: dict[str, Any]) -> str:
    """A self-contained page: the table, top-5 hit rate and false labels per method (charts), every record."""
    from crosscoder.charts import hbars, html_page, inline

    table = summary(records)
    kinds = kinds_of(table)
    rows = "".join(
        f"<tr><td>{escape(name)}</td>"
        + "".join(f"<td>{escape(row[k].text(k == 'null') if k in row else '-')}</td>" for k in kinds)
        + "</tr>"
        for name, row in table.items()
    )
    head = "".join(f"<th>{escape(k)}</th>" for k in kinds)
    names = list(table)
    hits = [_rate(table[n]) for n in names]
    false = [float(sum(c.false_labels for k, c in table[n].items() if k == "null")) for n in names]
    body = (
        "<h1>Diffing methods on the recovery benchmark</h1>"
        f"<p>Scale: {escape(', '.join(f'{k}={v}' for k, v in scale.items()))}</p>"
        f"<table><tr><th>method</th>{head}</tr>{rows}</table>"
        + inline(hbars(names, hits, ["#4c72b0"] * len(names), "Top-5 hit rate (planted + SFT)", "share"), "top-5")
        + inline(
            hbars(names, false, ["#c44e52"] * len(names), "False persona labels on null pairs", "labels"),
            "false labels",
        )  # fmt: skip
        + _records_table(records)
    )
    css = (
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;font:13px sans-serif}"
    )
    return html_page("Diffing methods", body, css)


def _rate(row: dict[str, Cell]) -> float:
    n = sum(c.n for k, c in row.items() if k != "null")
    return sum(c.top5 for k, c in row.items() if k != "null") / n if n else math.nan


def _records_table(records: list[dict[str, Any]]) -> str:
    cols = ("organism_kind", "trait", "top_labels", "rank_of_first_correct", "false_labels", "seconds", "skipped")
    body = "".join(
        f"<tr><td>{escape(method_key(r))}</td>" + "".join(f"<td>{escape(str(r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in records
    )
    return f"<h2>Records</h2><table><tr><th>method</th>{''.join(f'<th>{c}</th>' for c in cols)}</tr>{body}</table>"


if __name__ == "__main__":
    main()
