"""Benchmark of the analysis stage at full size: `python -m crosscoder.bench analysis [--latents 16384] [--rows 100000]`.

The analysis runs with what `python analyze.py` uses on this CPU: `configs/analyze.yaml` (plus `--analyze KEY=VALUE`
overrides with the grouped keys, e.g. `--analyze labels.questions=5`). A random TopK crosscoder (d_model 576, two models) is analysed over synthetic activations (in memory) that carry one
planted ft-only direction; `--planted` of its latents read and write that direction in the ft model only, so the
candidate list is full (`rank.n_candidates`, 50) and every per-candidate stage (evidence, logit lens, persona labels,
next-token shift) is timed. The language models are the embedded SmolLM2-135M (base) and `--ft` (default the demo
organism, built on first use and cached; its build is not part of the timing). Steering generations are off (the
issue's time target excludes them). Caches the analysis would reuse (trait-prompt activations, persona vectors) are
cold unless `--warm`. Prints the stage timings and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from unittest import mock

import torch

from crosscoder.bench.common import Machine
from crosscoder.config import compose_analyze
from crosscoder.io import CACHE_ENV, atomic_write_json

log = logging.getLogger(__name__)


def build_fake_run(
    root: Path,
    n_latents: int,
    d_model: int,
    k: int,
    seed: int = 0,
    planted_D: torch.Tensor | None = None,
    n_planted: int = 0,
    ft_source: str = "smollm2-135m-instruct",
) -> Path:
    """A run folder with a random TopK crosscoder in final/ and a run.json naming the embedded model and `ft_source`.

    The first `n_planted` latents are ft-exclusive copies of `planted_D` (base decoder and encoder zero, small
    per-latent noise so they are distinct), so they fire where the synthetic ft activations carry that direction.
    """
    from crosscoder.models import ModelSpec
    from crosscoder.pipeline import spec_dict
    from crosscoder.xc.config import CrosscoderConfig
    from crosscoder.xc.model import Crosscoder

    cfg = CrosscoderConfig(architecture="topk", n_latents=n_latents, k=k, n_models=2, n_hooks=1, d_model=d_model)
    cc = Crosscoder(cfg, seed=seed)
    with torch.no_grad():  # random but not degenerate: the ft decoders are perturbed copies of the base ones
        cc.W_dec_FMLD[:, 1] = cc.W_dec_FMLD[:, 0] + 0.5 * cc.W_dec_FMLD[:, 1]
        if planted_D is not None and n_planted:
            g = torch.Generator().manual_seed(seed + 1)
            v_PD = planted_D[None] + 0.05 * torch.randn(n_planted, d_model, generator=g)
            v_PD /= v_PD.norm(dim=-1, keepdim=True)
            cc.W_dec_FMLD[:n_planted, 0] = 0.0
            cc.W_dec_FMLD[:n_planted, 1, 0] = v_PD * cc.W_dec_FMLD[n_planted:, 1].norm(dim=-1).mean()
            cc.W_enc_FMLD[:n_planted, 0] = 0.0
            cc.W_enc_FMLD[:n_planted, 1, 0] = v_PD
    run = root / "run"
    cc.save(run / "final")
    specs = [
        ModelSpec(source="smollm2-135m-instruct", name="base"),
        ModelSpec(source=ft_source, name="ft"),
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
    ap = argparse.ArgumentParser(prog="python -m crosscoder.bench analysis", description=__doc__)
    ap.add_argument("--latents", type=int, default=16384)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--traits", type=int, default=9, help="number of shipped traits to label against (0 = no labels)")
    ap.add_argument(
        "--analyze", action="append", default=[], help="Hydra override of configs/analyze.yaml (repeatable)"
    )
    ap.add_argument("--config-dir", type=Path, default=Path("configs"))
    ap.add_argument("--ft", default="organism:demo", help="the ft model (base is the embedded SmolLM2-135M)")
    ap.add_argument("--planted", type=int, default=64, help="latents that carry the planted ft-only direction")
    ap.add_argument("--warm", action="store_true", help="reuse cached trait-prompt activations and persona vectors")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--out", default="results/bench_analysis.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    from crosscoder.analysis.run import run_analysis
    from crosscoder.models import ModelSpec
    from crosscoder.personas.traits import load_traits
    from crosscoder.pipeline import load_models
    from crosscoder.testing.synthetic import synthetic_acts

    gflops_before = gemm_gflops()
    machine = Machine(gemm_gflops=gflops_before)  # threads, cores and the load when the run starts
    d = 576
    seq_len = 128
    acts, planted_D = synthetic_acts(args.rows // seq_len, seq_len, d, n_feats=512, density=0.02, vocab=49_000,
                             hook="blocks.24.hook_resid_post")  # fmt: skip
    t0 = time.perf_counter()
    specs = [ModelSpec(source="smollm2-135m-instruct", name="base"), ModelSpec(source=args.ft, name="ft")]
    models = load_models(specs)
    t_load = time.perf_counter() - t0
    traits = sorted(load_traits())[: args.traits]
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ):  # the environment is restored on exit
        if not args.warm:  # a cold analysis: trait-prompt activations and persona vectors are computed, not read
            os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        run = build_fake_run(Path(tmp), args.latents, d, args.k, planted_D=planted_D, n_planted=args.planted,
                             ft_source=args.ft)  # fmt: skip
        cfg = compose_analyze(
            args.config_dir,
            [f"run_dir={run}", f"stats.max_rows={args.rows}", "steering.enabled=false",
             f"labels.enabled={str(bool(traits)).lower()}", f"labels.traits=[{','.join(traits)}]", *args.analyze],
        )  # fmt: skip
        t0 = time.perf_counter()
        res = run_analysis(cfg, models=models, acts=acts)  # the analysis, then plots, report, export and W&B
        total = time.perf_counter() - t0
        timings = {**res.summary.timings, **res.presented.timings}
        timings["total"] = round(total, 2)
    out = {"latents": args.latents, "rows": args.rows, "d_model": d, "k": args.k, "traits": len(traits), "ft": args.ft,
           "planted": args.planted, "warm": args.warm,
           "label_questions": cfg.labels.questions, "splice_tokens": cfg.splice.tokens, "overrides": args.analyze,
           "threads": torch.get_num_threads(), "seconds_total": round(total, 2), "seconds_model_load": round(t_load, 2),
           "timings": timings, "n_candidates": res.summary.n_candidates,
           "gemm_gflops_before": round(gflops_before, 1), "gemm_gflops_after": round(gemm_gflops(), 1),
           "machine": asdict(machine.finish())}  # fmt: skip
    print(json.dumps(out, indent=2))
    atomic_write_json(Path(args.out), out)
