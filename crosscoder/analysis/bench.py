"""Benchmark of the analysis stage at full size: `python -m crosscoder.analysis.bench [--latents 16384] [--rows 100000]`.

A random TopK crosscoder (d_model 576, two models) is analysed over synthetic activations (in memory), with the
embedded SmolLM2-135M paired with itself for everything that needs a language model (logit lens, contexts, persona
labels, splice metrics). Steering generations are off (the issue's time target excludes them). Prints the stage
timings and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch

from crosscoder.errors import run_cli
from crosscoder.io import atomic_write_json

log = logging.getLogger(__name__)


def build_fake_run(root: Path, n_latents: int, d_model: int, k: int, seed: int = 0) -> Path:
    """A run folder with a random TopK crosscoder in final/ and a run.json naming the embedded model twice."""
    from crosscoder.models import ModelSpec
    from crosscoder.pipeline import spec_dict
    from crosscoder.xc.config import CrosscoderConfig
    from crosscoder.xc.model import Crosscoder

    cfg = CrosscoderConfig(architecture="topk", n_latents=n_latents, k=k, n_models=2, n_hooks=1, d_model=d_model)
    cc = Crosscoder(cfg, seed=seed)
    with torch.no_grad():  # random but not degenerate: the ft decoders are perturbed copies of the base ones
        cc.W_dec_FMLD[:, 1] = cc.W_dec_FMLD[:, 0] + 0.5 * cc.W_dec_FMLD[:, 1]
    run = root / "run"
    cc.save(run / "final")
    specs = [
        ModelSpec(source="smollm2-135m-instruct", name="base"),
        ModelSpec(source="smollm2-135m-instruct", name="ft"),
    ]
    atomic_write_json(run / "run.json", {"models": [spec_dict(s) for s in specs], "model_names": ["base", "ft"],
                                         "hooks": ["blocks.24.hook_resid_post"], "activations": None})  # fmt: skip
    return run


def gemm_gflops(n: int = 3) -> float:
    """This machine's fp32 GEMM rate right now (the analysis pass is dominated by the encoder GEMM)."""
    a, b = torch.randn(2048, 1152), torch.randn(1152, 4096)
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048 * 1152 * 4096 / best / 1e9


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latents", type=int, default=16384)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--traits", type=int, default=9, help="number of shipped traits to label against (0 = no labels)")
    ap.add_argument(
        "--label-questions",
        type=int,
        default=3,
        help="trait questions per pos/neg label pass (configs/analyze.yaml: 3)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--out", default="results/bench_analysis.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    from crosscoder.analysis.config import AnalyzeConfig
    from crosscoder.analysis.run import run_analysis
    from crosscoder.analysis.synthetic import synthetic_acts
    from crosscoder.models import ModelSpec, load_model
    from crosscoder.personas.traits import load_traits

    gflops_before = gemm_gflops()
    d = 576
    seq_len = 128
    acts, _ = synthetic_acts(args.rows // seq_len, seq_len, d, n_feats=512, density=0.02, vocab=49_000,
                             hook="blocks.24.hook_resid_post")  # fmt: skip
    t0 = time.perf_counter()
    models = [load_model(ModelSpec(source="smollm2-135m-instruct", name=n)) for n in ("base", "ft")]
    t_load = time.perf_counter() - t0
    traits = sorted(load_traits())[: args.traits]
    with tempfile.TemporaryDirectory() as tmp:
        run = build_fake_run(Path(tmp), args.latents, d, args.k)
        cfg = AnalyzeConfig(
            run_dir=str(run),
            max_rows=args.rows,
            do_steering=False,
            do_labels=bool(traits),
            traits=traits,
            label_questions=args.label_questions,
        )
        t0 = time.perf_counter()
        res = run_analysis(cfg, models=models, acts=acts)
        total = time.perf_counter() - t0
    out = {"latents": args.latents, "rows": args.rows, "d_model": d, "k": args.k, "traits": len(traits),
           "label_questions": args.label_questions,
           "threads": torch.get_num_threads(), "seconds_total": round(total, 2), "seconds_model_load": round(t_load, 2),
           "timings": res.summary["timings"], "n_candidates": res.summary["n_candidates"],
           "gemm_gflops_before": round(gflops_before, 1), "gemm_gflops_after": round(gemm_gflops(), 1)}  # fmt: skip
    print(json.dumps(out, indent=2))
    atomic_write_json(Path(args.out), out)


if __name__ == "__main__":
    run_cli(main)
