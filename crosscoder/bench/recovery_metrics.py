"""What the recovery benchmark measures beyond the labels: the planted direction's best cosine with any decoder,
and the table printed at the end of a run (one row per organism, then top-1 / top-5 rates per organism kind)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

KINDS = ("planted", "sft", "distilled", "null")
"""Organism kinds: a planted direction, an SFT (LoRA) fine-tune, a context-distilled fine-tune, and the null pairs
(the base with itself, the base with the control fine-tune: no persona, so any persona label is a false one)."""

NULL_PAIRS = ("self", "control")
"""The null organisms of ``--kinds null`` (their records' ``trait``)."""


def planted_cosines(run_dir: Path, direction_D: torch.Tensor, cands: list[dict[str, Any]]) -> dict[str, Any]:
    """Best cosine of any latent with the planted direction: of its ft decoder, and of its decoder change d_ft - d_base.

    A latent whose context exists in both models (the gate's input) but whose ft decoder gained the planted direction
    is shifted, not exclusive: its decoder change is the planted direction. ``best_cosine_to_planted`` is the larger.
    """
    from crosscoder.xc.model import Crosscoder

    cc = Crosscoder.load(run_dir / "final")
    hook_idx = 0
    d_FMD = (cc.W_dec_FMLD.detach()[:, :, hook_idx] / cc.scale_ML[None, :, hook_idx, None]).float()
    v_D = direction_D.float()[None, :]
    out: dict[str, Any] = {}
    for key, dirs_FD in (("ft", d_FMD[:, -1]), ("diff", d_FMD[:, -1] - d_FMD[:, 0])):
        cos_F = torch.nn.functional.cosine_similarity(dirs_FD, v_D, dim=-1)
        best = int(cos_F.argmax())
        out[f"best_cosine_{key}"] = float(cos_F[best])
        out[f"best_cosine_{key}_latent"] = best
        out[f"best_cosine_{key}_rank"] = next((c.get("rank") for c in cands if c.get("latent") == best), None)
    out["best_cosine_to_planted"] = max(out["best_cosine_ft"], out["best_cosine_diff"])
    return out


def format_table(records: list[dict[str, Any]]) -> str:
    """The records as a fixed-width table (``-`` where no candidate carries the right label), then per kind the share
    of organisms whose top-1 / top-5 label is correct."""
    head = f"{'trait':<28} {'kind':<9} {'top1':<5} {'top5':<5} {'rank':>4} {'p-rank':>6} {'cos':>5} {'fve b/ft':>11} {'ft-ex':>5} {'s':>6}"
    lines = [head, "-" * len(head)]
    for r in records:
        cos = "" if r["best_cosine_to_planted"] is None else f"{r['best_cosine_to_planted']:.2f}"
        lines.append(
            f"{r['trait']:<28} {r['organism_kind']:<9} {str(r['top1_label_correct']):<5} {str(r['top5_label_correct']):<5} "
            f"{r['rank_of_first_correct'] or '-':>4} {r.get('persona_rank_of_first_correct') or '-':>6} {cos:>5} {r['fve_base']:.2f}/{r['fve_ft']:.2f} {r['n_ft_exclusive']:>5} {r['seconds']:>6}"
        )
    for kind in KINDS:
        sub = [r for r in records if r["organism_kind"] == kind]
        if sub:
            top1 = sum(r["top1_label_correct"] for r in sub) / len(sub)
            top5 = sum(r["top5_label_correct"] for r in sub) / len(sub)
            wrong = sum(len(r.get("wrong_personas", [])) for r in sub) / len(sub)
            lines.append(f"{kind}: {len(sub)} organisms, top-1 {top1:.0%}, top-5 {top5:.0%}, "
                         f"wrong personas per organism {wrong:.2f}")  # fmt: skip
    return "\n".join(lines)
