"""Splice metrics: each model's next-token loss with its hook activations replaced by the crosscoder reconstruction.

On sequences from the activation cache, every model is run on the same tokens; the crosscoder encodes the paired
activations and, for model m, ``xhat_m`` replaces the activation at every hook (positions >= 1: the attention-sink
position 0 is left alone, as the crosscoder never trained on it). Reported per model: the clean CE, the spliced CE,
the CE with the hook activations zeroed (same positions), the KL(clean || spliced) of next-token distributions, and
the fraction of CE recovered ``(CE_zero - CE_spliced) / (CE_zero - CE_clean)``. Loss positions are those whose
prediction depends on an edited position (predictions from position >= 1). The fraction is not clipped: above 1
means the spliced CE is below the clean CE (seen on SmolLM2 near its last layers, where the reconstruction's shrinkage
softens over-confident predictions); the KL is then the better measure of what the reconstruction changes.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from crosscoder.data.harvest import pad_token_id, recording_hooks, right_pad

if TYPE_CHECKING:
    from crosscoder.data.protocols import Activations
    from crosscoder.models.load import LoadedModel
    from crosscoder.xc.model import Crosscoder

log = logging.getLogger(__name__)


def _batches(acts: Activations, n_tokens: int, batch_size: int) -> list[list[list[int]]]:
    seqs, total = [], 0
    for s in range(acts.n_seqs):
        ids = acts.sequence_tokens(s)
        if len(ids) < 3:
            continue
        seqs.append(ids)
        total += len(ids)
        if total >= n_tokens:
            break
    seqs.sort(key=len)  # similar lengths share a batch: less padding
    return [seqs[a : a + batch_size] for a in range(0, len(seqs), batch_size)]


def _replace_hook(edit_BS: Tensor, new_ND: Tensor | None) -> Any:
    """A TL hook writing `new_ND` (or zeros when None) into the positions of `edit_BS`."""

    def hook(act: Tensor, hook: Any = None) -> Tensor:
        act = act.clone()
        act[edit_BS] = 0.0 if new_ND is None else new_ND.to(act.dtype).to(act.device)
        return act

    return hook


def _clean_logits_and_acts(
    model: LoadedModel, hooks: list[str], tokens_BS: Tensor, valid_BS: Tensor
) -> tuple[Tensor, Tensor]:
    """One unedited forward pass: the logits and the activations ``[B, S, L, D]`` at `hooks`."""
    B, S = tokens_BS.shape
    x_BSLD = torch.empty((B, S, len(hooks), model.d_model), dtype=torch.float32)
    return _logits(model, tokens_BS, valid_BS, recording_hooks(hooks, x_BSLD)), x_BSLD


def _logits(model: LoadedModel, tokens_BS: Tensor, valid_BS: Tensor, fwd_hooks: list[Any]) -> Tensor:
    with torch.no_grad(), model.tl.hooks(fwd_hooks=fwd_hooks):
        return model.tl(tokens_BS, attention_mask=valid_BS.long()).float()


def _ce_kl(logits_BSV: Tensor, ref_BSV: Tensor | None, tokens_BS: Tensor, loss_BS: Tensor) -> tuple[float, float, int]:
    """Summed CE (and KL vs `ref`) over positions where loss_BS is True (predicting token t+1 from t)."""
    lp = F.log_softmax(logits_BSV[:, :-1], dim=-1)
    tgt = tokens_BS[:, 1:]
    m = loss_BS[:, :-1]
    ce = -lp.gather(-1, tgt[..., None])[..., 0][m].sum()
    kl = torch.zeros(())
    if ref_BSV is not None:
        rp = F.log_softmax(ref_BSV[:, :-1], dim=-1)
        kl = (rp.exp() * (rp - lp)).sum(-1)[m].sum()
    return float(ce), float(kl), int(m.sum())


@torch.no_grad()
def splice_metrics(
    cc: Crosscoder, models: list[LoadedModel], hooks: list[str], acts: Activations, n_tokens: int, batch_size: int
) -> dict[str, dict[str, float | None]]:
    """splice.json content: {model name: {ce_clean, ce_spliced, ce_zero_ablation, kl, frac_recovered, n_tokens}}."""
    pad = pad_token_id(models[0].tokenizer)
    sums = {m.name: {"clean": 0.0, "spliced": 0.0, "zero": 0.0, "kl": 0.0, "n": 0} for m in models}
    t0 = time.perf_counter()
    device = next(cc.parameters()).device
    for chunk in tqdm(_batches(acts, n_tokens, batch_size), desc="splice", unit="batch"):
        tokens_BS, valid_BS = right_pad(chunk, pad)
        edit_BS = valid_BS.clone()
        edit_BS[:, 0] = False
        clean_runs = [_clean_logits_and_acts(m, hooks, tokens_BS, valid_BS) for m in models]  # one pass per model
        x_MBSLD = torch.stack([x for _, x in clean_runs])
        xhat_NMLD = cc.decode(cc.encode(x_MBSLD.permute(1, 2, 0, 3, 4)[edit_BS].to(device))).cpu()
        for mi, model in enumerate(models):
            clean = clean_runs[mi][0]
            spliced = _logits(
                model,
                tokens_BS,
                valid_BS,
                [(h, _replace_hook(edit_BS, xhat_NMLD[:, mi, li])) for li, h in enumerate(hooks)],
            )
            zero = _logits(model, tokens_BS, valid_BS, [(h, _replace_hook(edit_BS, None)) for h in hooks])
            loss_BS = edit_BS & torch.roll(valid_BS, -1, dims=1)
            loss_BS[:, -1] = False
            ce_c, _, n = _ce_kl(clean, None, tokens_BS, loss_BS)
            ce_s, kl, _ = _ce_kl(spliced, clean, tokens_BS, loss_BS)
            ce_z, _, _ = _ce_kl(zero, None, tokens_BS, loss_BS)
            s = sums[model.name]
            s["clean"] += ce_c
            s["spliced"] += ce_s
            s["zero"] += ce_z
            s["kl"] += kl
            s["n"] += n
    out: dict[str, dict[str, float | None]] = {}
    for name, s in sums.items():
        n = max(int(s["n"]), 1)
        c, sp, z = s["clean"] / n, s["spliced"] / n, s["zero"] / n
        out[name] = {
            "ce_clean": c,
            "ce_spliced": sp,
            "ce_zero_ablation": z,
            "kl": s["kl"] / n,
            "frac_recovered": (z - sp) / (z - c) if abs(z - c) > 1e-9 else None,
            "n_tokens": int(s["n"]),
        }
    log.info("splice metrics over %d tokens in %.1f s: %s", max(int(s["n"]) for s in sums.values()), time.perf_counter() - t0,
             {k: round(v["frac_recovered"] or 0, 3) for k, v in out.items()})  # fmt: skip
    return out
