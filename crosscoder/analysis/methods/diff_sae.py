"""`diff_sae`: a sparse autoencoder trained on activation differences x_ft - x_base (the diff-SAE baseline).

The SAE is a one-model crosscoder (`crosscoder.xc`, n_models = n_hooks = 1) trained by the crosscoder's own trainer
on the lens-hook differences of the run's cache, with the run's crosscoder's latent count and k unless the config
says otherwise. Its latents are ranked by their share of the mean difference (mean activation over every valid row
times the raw decoder norm); the top ones are labelled by the shared labeller, their decoder rows as directions.
The weights stay in ``<run>/methods/diff_sae/final``.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crosscoder.analysis.methods.base import (
    DiffingMethod,
    MethodCandidate,
    MethodResult,
    MethodRun,
    register_method,
    two_model_note,
)  # fmt: skip
from crosscoder.analysis.methods.labelling import label_directions
from crosscoder.analysis.methods.scan import CandidateEncoder, scan_cache
from crosscoder.analysis.stats.collect import slice_masks

if TYPE_CHECKING:
    from crosscoder.xc.model import Crosscoder

log = logging.getLogger(__name__)


@torch.no_grad()
def lens_differences(run: MethodRun, batch_size: int = 4096) -> Tensor:
    """x_last - x_first at the lens hook over the cache's valid rows (at most ``analysis.stats.max_rows``)."""
    limit = run.analysis.stats.max_rows
    out, n = [], 0
    for batch in run.acts.iter_rows(batch_size):
        valid_B = slice_masks(batch, 1)["all"]
        x_BMD = batch.x_BMLD[valid_B][:, :, run.lens_idx].float()
        out.append(x_BMD[:, -1] - x_BMD[:, 0])
        n += out[-1].shape[0]
        if 0 < limit <= n:
            break
    diff_ND = torch.cat(out) if out else torch.zeros(0, run.acts.d_model)
    return diff_ND[:limit] if limit > 0 else diff_ND


def _batches(diff_ND: Tensor, batch_size: int, seed: int, step: int) -> Iterator[Tensor]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    while True:
        idx = torch.randint(diff_ND.shape[0], (batch_size,), generator=gen)
        yield diff_ND[idx][:, None, None, :]


@register_method("diff_sae")
class DiffSAE(DiffingMethod):
    """TopK (or BatchTopK) SAE on x_ft - x_base; latents ranked by their share of the mean difference."""

    def cannot_apply(self, run: MethodRun) -> str | None:
        if len(run.names) != 2:
            return f"the diff-SAE reads the difference of two models; this run has {len(run.names)} ({', '.join(run.names)})"
        return None

    def fit(self, run: MethodRun, result: MethodResult) -> None:
        from crosscoder.xc.config import CrosscoderConfig, LoggingConfig, TrainerConfig
        from crosscoder.xc.model import Crosscoder
        from crosscoder.xc.trainer import train

        c = run.cfg.diff_sae
        result.notes += two_model_note(run)
        diff_ND = lens_differences(run)
        mean_norm = float(diff_ND.norm(dim=-1).mean()) if diff_ND.shape[0] else 0.0
        if mean_norm <= 1e-8:
            result.notes.append("x_ft - x_base is zero at the lens hook: nothing to fit, no candidates")
            return
        ref_cc = Crosscoder.load(run.run / "final", device="cpu")
        ref = ref_cc.cfg
        n_latents, k = c.n_latents or ref.n_latents, c.k or ref.k
        if not c.k and not ref_cc.sparsity.uses_k:
            result.notes.append(f"the run's {ref.architecture} crosscoder has no k of its own: k={k} from its config")
        D = run.acts.d_model
        sae = Crosscoder(CrosscoderConfig(architecture=c.architecture, n_latents=n_latents, k=min(k, n_latents),
                                          n_models=1, n_hooks=1, d_model=D), seed=c.seed)  # fmt: skip
        sae.scale_ML.fill_(math.sqrt(D) / mean_norm)
        folder = run.out_dir / "diff_sae"
        shutil.rmtree(folder, ignore_errors=True)  # this method's own previous weights
        tcfg = TrainerConfig(steps=c.steps, batch_size=c.batch_size, lr=c.lr, warmup_steps=min(100, c.steps // 10),
                             aux_k=min(256, n_latents // 2), checkpoint_every=0, log_every=max(1, c.steps // 4),
                             seed=c.seed, device=run.analysis.device)  # fmt: skip
        lcfg = LoggingConfig(wandb_mode="disabled", progress=False, measure_mfu=False)
        trained = train(sae, lambda step: _batches(diff_ND, c.batch_size, c.seed, step), tcfg, lcfg, folder,
                        run_info={"models": ["diff"], "hooks": [run.hooks[run.lens_idx]]})  # fmt: skip
        sae = sae.cpu().eval()
        result.metrics = {"fve": float(trained.fve().get("diff", float("nan"))), "n_latents": float(n_latents),
                          "k": float(k), "rows": float(diff_ND.shape[0])}  # fmt: skip
        self._candidates(run, result, sae)

    @staticmethod
    def _candidates(run: MethodRun, result: MethodResult, sae: Crosscoder) -> None:
        lens = run.lens_idx

        def fn(x_BMLD: Tensor) -> Tensor:
            d_BD = (x_BMLD[:, -1, lens] - x_BMLD[:, 0, lens]).float()
            return sae.encode(d_BD[:, None, None, :])

        enc = CandidateEncoder(sae.cfg.n_latents, fn, [sae])
        ev = run.analysis.evidence
        scan = scan_cache(enc, run.acts, max_rows=run.analysis.stats.max_rows, batch_size=1024,
                          top_k=4 * ev.n_top_examples)  # fmt: skip
        dec_FD = sae.W_dec_FMLD[:, 0, 0].detach().float() / float(sae.scale_ML[0, 0])
        score_F = scan.mean_all_N * dec_FD.norm(dim=-1)
        order = [int(f) for f in torch.argsort(score_F, descending=True)[: run.n_candidates] if score_F[f] > 0]
        cands = [MethodCandidate(rank=r + 1, name=f"diff latent {f}", kind="diff_latent", score=float(score_F[f]),
                                 direction_D=dec_FD[f].clone(),
                                 details={"freq": float(scan.freq_N[f]), "mean_act": float(scan.mean_act_N[f])})
                 for r, f in enumerate(order)]  # fmt: skip
        label_directions(run, cands, order, enc, scan)
        result.candidates = cands
