"""Combined method ``crosscoder+adl``: the crosscoder's candidates, a persona label kept only where ADL confirms it.

Two independent readings of one fine-tune: the crosscoder's latents (a sparse dictionary over both models) and the
activation-difference lens (the mean ft - base difference per position class), both labelled by the same labeller.
A crosscoder latent keeps its persona label only when one of ADL's mean differences carries the same label; the
confirmed candidates move to the front (in the crosscoder's order), the others follow with their persona label
replaced by "unlabelled" (the label it had is listed in the notes). The rule was fixed before the benchmark ran on
the organisms it scores; it has no threshold of its own.
"""

from __future__ import annotations

import dataclasses

from crosscoder.analysis.methods.base import MethodCandidate, MethodResult

COMBINED = "crosscoder+adl"
"""The combined method's name in benchmark records."""
UNLABELLED = "unlabelled"


def _named(result: MethodResult) -> set[str]:
    return {label for label in result.labels() if label and label != UNLABELLED}


def confirm_labels(primary: MethodResult, evidence: MethodResult, method: str = COMBINED) -> MethodResult:
    """`primary`'s candidates re-ranked: those whose persona label `evidence` also names first, the rest unlabelled."""
    out = MethodResult(method=method, run_dir=primary.run_dir, architecture=primary.architecture,
                       seconds=primary.seconds + evidence.seconds, metrics=dict(primary.metrics))  # fmt: skip
    if primary.skipped or evidence.skipped:
        why = "; ".join(f"{r.method} skipped ({r.skipped})" for r in (primary, evidence) if r.skipped)
        out.skipped = f"needs both {primary.method} and {evidence.method}: {why}"
        return out
    named = _named(evidence)
    ordered = sorted(primary.candidates, key=lambda c: c.rank)
    confirmed = [c for c in ordered if c.label in named]
    dropped = sorted({str(c.label) for c in ordered if c.label not in named and c.label not in (None, UNLABELLED)})
    rest = [c for c in ordered if c.label not in named]
    out.candidates = [_reranked(c, rank, c.label in named) for rank, c in enumerate(confirmed + rest, start=1)]
    out.notes.append(
        f"{len(confirmed)} of {len(ordered)} {primary.method} candidates confirmed by {evidence.method} "
        f"(it names: {', '.join(sorted(named)) or 'no persona'}); unconfirmed labels dropped: "
        f"{', '.join(dropped) or 'none'}"
    )
    return out


def _reranked(c: MethodCandidate, rank: int, confirmed: bool) -> MethodCandidate:
    label = c.label if confirmed or c.label is None else UNLABELLED
    details = {**c.details, "primary_rank": float(c.rank), "confirmed": float(confirmed)}
    return dataclasses.replace(c, rank=rank, label=label, details=details)
