"""`crosscoder`: today's pipeline (`crosscoder.analysis.run.run_analysis`) as a diffing method.

The run's crosscoder (any registered architecture: batchtopk, dfc, matryoshka, ...) is analysed with the analysis
config the methods share; its ranked, labelled candidates become `MethodCandidate`s whose direction is the
latent's ft decoder at the lens hook (raw residual space).
"""

from __future__ import annotations

import dataclasses

from crosscoder.analysis.methods.base import DiffingMethod, MethodCandidate, MethodResult, MethodRun, register_method


@register_method("crosscoder")
class CrosscoderMethod(DiffingMethod):
    """The crosscoder analysis of the run, unchanged (its candidates.json, summary.json, report)."""

    def fit(self, run: MethodRun, result: MethodResult) -> None:
        from crosscoder.analysis.run import run_analysis
        from crosscoder.xc.model import Crosscoder

        cfg = dataclasses.replace(run.analysis, run_dir=str(run.run))
        analysis = run_analysis(cfg, models=run.lms, acts=run.acts)
        cc = Crosscoder.load(run.run / "final", device="cpu")
        result.architecture = cc.cfg.architecture
        scale = float(cc.scale_ML[-1, run.lens_idx])
        for c in sorted(analysis.candidates, key=lambda c: c.rank)[: run.n_candidates]:
            result.candidates.append(MethodCandidate(
                rank=c.rank, name=f"latent {c.latent}", kind=c.klass, score=float(c.score or 0.0),
                label=c.label, label_confidence=c.label_confidence, position=c.score_slice,
                direction_D=cc.W_dec_FMLD[c.latent, -1, run.lens_idx].detach().float() / scale, evidence=c,
            ))  # fmt: skip
        result.metrics = {f"fve_{k}": float(v) for k, v in analysis.summary.fve.items()}
        result.notes.append(f"analysis folder: {analysis.out_dir}")
