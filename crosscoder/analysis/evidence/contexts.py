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
    lat_R = torch.from_numpy(np.concatenate([np.full(len(w), p[0]) for p, w in zip(plans, rows, strict=True)]))
    inv_R = torch.from_numpy(inverse.reshape(-1))
    f_R = torch.zeros(len(inv_R))  # f[row, latent of its window]; the dense [rows, F] matrix is never built
    with torch.no_grad():
        for a in range(0, len(uniq), 4096):
            x = acts.rows.gather(uniq[a : a + 4096])  # ascending rows, as `uniq` is sorted
            f_UF = cc.encode(x.to(next(cc.parameters()).device)).float().cpu()
            here = (inv_R >= a) & (inv_R < a + f_UF.shape[0])
            f_R[here] = f_UF[inv_R[here] - a, lat_R[here]]
    names: dict[int, str] = {}  # token id -> decoded string (thousands of windows share their tokens)
    cursor = 0
    for (j, seq, lo, max_idx, value), win in zip(plans, rows, strict=True):
        f_win = f_R[cursor : cursor + len(win)]
        cursor += len(win)
        ids = acts.sequence_tokens(seq)[lo : lo + len(win)]
        out[j].append(
            TopExample(
                seq=seq,
                pos=int(lo + max_idx),
                tokens=[names.get(t) or names.setdefault(t, str(tokenizer.decode([t]))) for t in ids],
                acts=[round(float(a), 4) for a in f_win],
                max_pos=int(max_idx),
                max_act=round(float(f_win[max_idx]) if picks is not None else float(value), 4),
            )
        )
    return out
