"""Evidence per candidate latent: top-activating contexts from the cache, and the logit lens of decoder directions.

Logit lens of a direction v (raw residual space) through a model's final norm and unembedding: the norm's
per-channel gain is applied (LayerNorm models also centre v; the data-dependent 1/rms factor is dropped since it
only rescales) and the result is multiplied by the unembedding. Tokens with the largest logits are "promoted",
those with the smallest "suppressed".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.analysis.stats import LatentStats
from crosscoder.errors import ModelError


def unembed_parts(model: Any) -> tuple[Tensor | None, bool, Tensor]:
    """(final-norm gain or None, centre first?, W_U [D, V]) of a `LoadedModel` (HF weights when present, else TL)."""
    hf = getattr(model, "hf", None)
    if hf is not None and hasattr(hf, "get_output_embeddings") and hf.get_output_embeddings() is not None:
        W_U = hf.get_output_embeddings().weight.detach().float().T
        base = getattr(hf, "base_model", hf)
        norm = getattr(base, "norm", None) or getattr(base, "final_layernorm", None) or getattr(base, "ln_f", None)
        gain = getattr(norm, "weight", None) if norm is not None else None
        centre = norm is not None and "rms" not in type(norm).__name__.lower()
        return (gain.detach().float() if gain is not None else None), centre, W_U
    tl = model.tl
    if not hasattr(tl, "W_U"):
        raise ModelError(f"model {model.name} exposes no unembedding (W_U); the logit lens needs an LM head")
    ln = getattr(tl, "ln_final", None)
    gain = getattr(ln, "w", None) if ln is not None else None
    centre = ln is not None and "rms" not in type(ln).__name__.lower()
    return (gain.detach().float() if gain is not None else None), centre, tl.W_U.detach().float()


class LogitLens:
    """Logit lens of many directions through one model, with decoded token strings cached."""

    def __init__(self, model: Any) -> None:
        self.gain_D, self.centre, self.W_U_DV = unembed_parts(model)
        self.tokenizer = model.tokenizer
        self.name = model.name
        self._tok: dict[int, str] = {}

    def token(self, idx: int) -> str:
        if idx not in self._tok:
            self._tok[idx] = self.tokenizer.decode([idx])
        return self._tok[idx]

    def logits(self, v_ND: Float[Tensor, "N D"]) -> Float[Tensor, "N V"]:
        v = v_ND.float()
        if self.centre:
            v = v - v.mean(-1, keepdim=True)
        if self.gain_D is not None:
            v = v * self.gain_D
        return v @ self.W_U_DV

    def top(self, v_ND: Float[Tensor, "N D"], k: int) -> list[dict[str, list[list[Any]]]]:
        """Per direction: {"promoted": [[token, logit], ...], "suppressed": [...]} (k each)."""
        logits_NV = self.logits(v_ND)
        k = min(k, logits_NV.shape[1])
        hi_v, hi_i = logits_NV.topk(k, dim=-1)
        lo_v, lo_i = (-logits_NV).topk(k, dim=-1)
        out = []
        for n in range(logits_NV.shape[0]):
            out.append(
                {
                    "promoted": [
                        [self.token(int(i)), round(float(x), 4)] for i, x in zip(hi_i[n], hi_v[n], strict=True)
                    ],
                    "suppressed": [
                        [self.token(int(i)), round(-float(x), 4)] for i, x in zip(lo_i[n], lo_v[n], strict=True)
                    ],
                }
            )
        return out


def top_contexts(
    cc: Any,
    acts: Any,
    st: LatentStats,
    latents: list[int],
    tokenizer: Any,
    *,
    n_examples: int,
    before: int,
    after: int = 4,
) -> dict[int, list[dict[str, Any]]]:
    """Top-activating contexts (one per sequence) of each latent, re-encoded token by token for highlighting.

    Returns {latent: [{seq, pos, tokens: [str], acts: [float], max_pos, max_act}]}: `pos` is the peak's position in
    its sequence and `max_pos` indexes into `tokens`.
    """
    seq_R, pos_R = st.row_seq_pos()
    plans: list[tuple[int, int, int, int, float]] = []  # latent, seq, first position, max index in window, value
    rows: list[np.ndarray] = []
    for j in latents:
        values, grows = st.top.for_latent(j)
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
    out: dict[int, list[dict[str, Any]]] = {j: [] for j in latents}
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
            {
                "seq": seq,
                "pos": int(lo + max_idx),
                "tokens": [tokenizer.decode([t]) for t in ids],
                "acts": [round(float(a), 4) for a in f_win],
                "max_pos": int(max_idx),
                "max_act": round(float(value), 4),
            }
        )
    return out
