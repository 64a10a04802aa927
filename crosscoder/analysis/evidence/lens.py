"""The logit lens of decoder directions (and of any residual-stream direction) through a model's unembedding.

Logit lens of a direction v (raw residual space) through a model's final norm and unembedding: the norm's
per-channel gain is applied (LayerNorm models also centre v; the data-dependent 1/rms factor is dropped since it
only rescales) and the result is multiplied by the unembedding. Tokens with the largest logits are "promoted",
those with the smallest "suppressed".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxtyping import Float
from torch import Tensor

from crosscoder.analysis.records.candidate import LensTop
from crosscoder.errors import ModelError

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel


def unembed_parts(model: LoadedModel) -> tuple[Tensor | None, bool, Tensor]:
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

    def __init__(self, model: LoadedModel) -> None:
        self.gain_D, self.centre, self.W_U_DV = unembed_parts(model)
        self.tokenizer = model.tokenizer
        self.name = model.name
        self._tok: dict[int, str] = {}

    def token(self, idx: int) -> str:
        if idx not in self._tok:
            self._tok[idx] = str(self.tokenizer.decode([idx]))
        return self._tok[idx]

    def logits(self, v_ND: Float[Tensor, "N D"]) -> Float[Tensor, "N V"]:
        v = v_ND.float()
        if self.centre:
            v = v - v.mean(-1, keepdim=True)
        if self.gain_D is not None:
            v = v * self.gain_D
        return v @ self.W_U_DV

    def top(self, v_ND: Float[Tensor, "N D"], k: int) -> list[LensTop]:
        """Per direction: the k most promoted and the k most suppressed tokens with their logits."""
        logits_NV = self.logits(v_ND)
        k = min(k, logits_NV.shape[1])
        hi_v, hi_i = logits_NV.topk(k, dim=-1)
        lo_v, lo_i = (-logits_NV).topk(k, dim=-1)
        return [
            LensTop(
                [(self.token(int(i)), round(float(x), 4)) for i, x in zip(hi_i[n], hi_v[n], strict=True)],
                [(self.token(int(i)), round(-float(x), 4)) for i, x in zip(lo_i[n], lo_v[n], strict=True)],
            )
            for n in range(logits_NV.shape[0])
        ]
