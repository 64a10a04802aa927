"""Top-activating contexts of candidate latents from the activation cache, re-encoded token by token."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from crosscoder.analysis.records.candidate import TopExample
from crosscoder.analysis.stats.collect import LatentStats

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from crosscoder.data.protocols import Activations
    from crosscoder.xc.model import Crosscoder


def top_contexts(
    cc: Crosscoder,
    acts: Activations,
    st: LatentStats,
    latents: list[int],
    tokenizer: Tokenizer,
    *,
    n_examples: int,
    before: int,
    after: int = 4,
    picks: dict[int, tuple[list[float], list[int]]] | None = None,
) -> dict[int, list[TopExample]]:
    """Top-activating contexts (one per sequence) of each latent, re-encoded token by token for highlighting:
    {latent: [TopExample]}, best first. `picks` ({latent: (values, global rows)}) replaces the stats' top examples
    with other rows (the dashboards' quantile-band samples)."""
    seq_R, pos_R = st.row_seq_pos()
    plans: list[tuple[int, int, int, int, float]] = []  # latent, seq, first position, max index in window, value
    rows: list[np.ndarray] = []
    for j in latents:
        values, grows = picks[j] if picks is not None else st.top.for_latent(j)
        seen: set[int] = set()
        for v, r in zip(values, grows, strict=True):
            seq, pos = int(seq_R[r]), int(pos_R[r])
            if seq in seen:
                continue
            seen.add(seq)
            n_tok = len(acts.sequence_tokens(seq))
            lo, hi = max(0, pos - before), min(n_tok, pos + after + 1)
            first_row = r - (pos - lo)  # rows of a sequence are stored contiguously, in position order
            plans.append((j, seq, lo, pos - lo, v))
            rows.append(np.arange(first_row, first_row + (hi - lo)))
            if len(seen) >= n_examples:
                break
    out: dict[int, list[TopExample]] = {j: [] for j in latents}
    if not plans:
        return out
    uniq, inverse = np.unique(np.concatenate(rows), return_inverse=True)
    with torch.no_grad():
        f_parts = []
        for a in range(0, len(uniq), 4096):
            x = acts.rows.gather(uniq[a : a + 4096])  # ascending rows, as `uniq` is sorted
            f_parts.append(cc.encode(x.to(next(cc.parameters()).device)).float().cpu())
        f_RF = torch.cat(f_parts)[torch.from_numpy(inverse)]
    cursor = 0
    for (j, seq, lo, max_idx, value), win in zip(plans, rows, strict=True):
        f_win = f_RF[cursor : cursor + len(win), j]
        cursor += len(win)
        ids = acts.sequence_tokens(seq)[lo : lo + len(win)]
        out[j].append(
            TopExample(
                seq=seq,
                pos=int(lo + max_idx),
                tokens=[str(tokenizer.decode([t])) for t in ids],
                acts=[round(float(a), 4) for a in f_win],
                max_pos=int(max_idx),
                max_act=round(float(f_win[max_idx]) if picks is not None else float(value), 4),
            )
        )
    return out
