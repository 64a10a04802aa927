"""summary.json of a finished analysis (see `crosscoder.analysis.records.summary`)."""

from __future__ import annotations

import dataclasses

import torch

from crosscoder.analysis.rank.table import class_counts
from crosscoder.analysis.records.summary import AnalysisSummary, LabelOutcome, personas_of, top_candidate
from crosscoder.analysis.run.context import AnalysisContext


def make_summary(ctx: AnalysisContext) -> AnalysisSummary:
    """What was analysed, the headline numbers, the personas the labels found and the top 10 candidates."""
    st, df, cc, cands = ctx.stats, ctx.df, ctx.cc, ctx.candidates
    fve = st.fve_M()
    artifacts = df["ls_artifact"].value_counts().to_dict()
    return AnalysisSummary(
        run_dir=str(ctx.run),
        out_dir=str(ctx.out_dir),
        models=ctx.names,
        hooks=ctx.hooks,
        lens_hook=ctx.hooks[ctx.lens_idx],
        architecture=cc.cfg.architecture,
        n_latents=int(cc.cfg.n_latents),
        n_tokens=int(st.count_S[0]),
        control_activations=ctx.cfg.control_activations,
        fve={n: float(fve[m]) for m, n in enumerate(ctx.names)},
        fve_run=ctx.info.get("fve"),
        class_counts=class_counts(df),
        artifacts={str(k): int(v) for k, v in artifacts.items() if k},
        n_eligible=int((df["rank"] > 0).sum()),
        n_candidates=len(cands) if cands else int(df["is_candidate"].sum()),
        timings={k: round(v, 2) for k, v in ctx.timings.items()},
        personas=personas_of(LabelOutcome.of(c) for c in cands),
        top_candidates=[top_candidate(c) for c in cands[:10]],
        config=dataclasses.asdict(ctx.cfg),
        torch_threads=torch.get_num_threads(),
        label_warnings=list(ctx.label_warnings),
        trait_profiles=list(ctx.trait_profiles),
        label_threshold=ctx.label_threshold,
    )
