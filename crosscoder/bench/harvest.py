"""Benchmark: paired harvest vs a naive baseline, and loader throughput.

- **Paired harvest**: `prepare_activations` end to end (tokenising, both forwards with ``stop_at_layer``, NaN check,
  shard writes with checksums) for a mid-depth hook on the real SmolLM2 paired with itself.
- **Naive baseline**: the same token batches, a full ``run_with_cache`` per model with no ``stop_at_layer`` and no
  ``names_filter`` (what a first implementation does).
- **Loader**: rows/s of shuffled ``x_BMLD`` batches from the harvested cache, against 20x the crosscoder training rate.

The JSON records threads, load averages and a GEMM probe (``machine``); the thread count it sets is restored.

    python -m crosscoder.bench.harvest --out results/harvest.json
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from crosscoder.bench.common import Machine, square_gemm_gflops, torch_threads
from crosscoder.data import DataConfig, prepare_activations
from crosscoder.data.harvest import pad_batch, pad_token_id
from crosscoder.data.sources import batch_stream
from crosscoder.errors import run_cli
from crosscoder.io import atomic_write_json
from crosscoder.runs import check_output_file


def _naive(models: list[Any], hook: str, batches: list[list[Any]]) -> float:
    """Seconds for a full run_with_cache per model over `batches`, keeping the hook's activations."""
    pad = pad_token_id(models[0].tokenizer)
    t0 = time.perf_counter()
    for seqs in batches:
        tokens_BS, valid_BS = pad_batch(seqs, pad)
        for m in models:
            with torch.inference_mode():
                _, cache = m.tl.run_with_cache(tokens_BS, attention_mask=valid_BS.long())
            _ = cache[hook][valid_BS].clone()
            del cache
    return time.perf_counter() - t0


def _threads_for_load(threads: int | None) -> int:
    """``threads``, or the cores the current load leaves free (at least 1)."""
    cores = os.cpu_count() or 1
    return threads or max(1, min(cores, cores - int(os.getloadavg()[0])))


def run(
    source: str = "smollm2-135m-instruct",
    hook: str = "blocks.15.hook_resid_post",
    n_tokens: int = 4096,
    seq_len: int = 128,
    batch_size: int = 8,
    loader_batch: int = 4096,
    loader_batches: int = 30,
    train_tokens_per_s: float = 4000.0,
    threads: int | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """Measure paired vs naive harvest tokens/s and loader rows/s; returns the JSON-able result.

    Oversubscribed BLAS threads spin and slow a forward several-fold when other jobs share the CPU, so by default
    the harvest uses only the cores the current load leaves free; the previous thread count is restored on return.
    """
    from crosscoder.models import ModelSpec, load_model

    with torch_threads(_threads_for_load(threads)):
        machine = Machine(gemm_gflops=square_gemm_gflops(torch.device("cpu")))
        models = [load_model(ModelSpec(source=source, name=n), backend=backend) for n in ("base", "copy")]
        workdir = Path(tempfile.mkdtemp(prefix="xc-bench-harvest-"))
        try:
            data = DataConfig(
                hooks=[hook],
                n_tokens=n_tokens,
                seq_len=seq_len,
                harvest_batch_size=batch_size,
                cache_root=str(workdir),
                shard_tokens=2048,
            )
            t = _time_harvests(models, hook, data, workdir)
            t.update(_time_loader(t.pop("acts"), loader_batch, loader_batches))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        result = _report(t, models, source, backend, hook, loader_batch, train_tokens_per_s)
        result["machine"] = asdict(machine.finish())
    return result


def _time_harvests(models: list[Any], hook: str, data: DataConfig, workdir: Path) -> dict[str, Any]:
    """Wall and CPU seconds of the paired harvest and of the naive baseline on the same batches."""
    # warm-up (first-call overheads of both paths), not timed
    warm = list(itertools.islice(batch_stream(models[0].tokenizer, data), 1))
    _naive(models, hook, warm)
    prepare_activations(
        models, DataConfig(hooks=[hook], n_tokens=64, seq_len=data.seq_len, cache_root=str(workdir / "warm"))
    )

    t0, c0 = time.perf_counter(), time.process_time()
    acts = prepare_activations(models, data)
    paired_s, paired_cpu = time.perf_counter() - t0, time.process_time() - c0
    # the naive baseline on exactly the batches the harvest used
    n_batches = acts.manifest["shards"][-1]["batch_end"]
    batches = list(itertools.islice(batch_stream(models[0].tokenizer, data), n_batches))
    naive_tokens = sum(len(s.ids) for b in batches for s in b)
    c0 = time.process_time()
    naive_s = _naive(models, hook, batches)
    naive_cpu = time.process_time() - c0
    return {"acts": acts, "n_rows": acts.n_rows, "paired_s": paired_s, "paired_cpu": paired_cpu,
            "naive_tokens": naive_tokens, "naive_s": naive_s, "naive_cpu": naive_cpu}  # fmt: skip


def _time_loader(acts: Any, loader_batch: int, loader_batches: int) -> dict[str, float]:
    it = acts.batches(loader_batch, seed=0)
    next(it)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(loader_batches):
        next(it)
    loader_s, loader_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"loader_rows": loader_batches * loader_batch, "loader_s": loader_s, "loader_cpu": loader_cpu}


def _report(
    t: dict[str, Any],
    models: list[Any],
    source: str,
    backend: str | None,
    hook: str,
    loader_batch: int,
    train_tokens_per_s: float,
) -> dict[str, Any]:
    n_rows, naive_tokens = t["n_rows"], t["naive_tokens"]
    paired, naive = n_rows / t["paired_s"], naive_tokens / t["naive_s"]
    loader_rows_s = t["loader_rows"] / t["loader_s"]
    return {
        "model": source,
        "backend": backend or models[0].spec.backend,
        "hook": hook,
        "n_layers": models[0].n_layers,
        "tokens": n_rows,
        "threads": torch.get_num_threads(),
        "paired_tokens_per_s": round(paired, 1),
        "paired_seconds": round(t["paired_s"], 2),
        "naive_tokens_per_s": round(naive, 1),
        "naive_seconds": round(t["naive_s"], 2),
        "speedup": round(paired / naive, 3),
        "speedup_cpu_time": round((n_rows / t["paired_cpu"]) / (naive_tokens / t["naive_cpu"]), 3),
        "paired_tokens_per_cpu_s": round(n_rows / t["paired_cpu"], 1),
        "naive_tokens_per_cpu_s": round(naive_tokens / t["naive_cpu"], 1),
        "loader_rows_per_cpu_s": round(t["loader_rows"] / t["loader_cpu"], 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "speedup_target": 1.8,
        "loader_rows_per_s": round(loader_rows_s, 1),
        "loader_batch": loader_batch,
        "loader_row_bytes": 2 * 1 * models[0].d_model * 4,
        "train_tokens_per_s_assumed": train_tokens_per_s,
        "loader_vs_training": round(loader_rows_s / train_tokens_per_s, 1),
        "loader_target_ratio": 20.0,
        "note": (
            "tokens/s count stored token positions of the pair (each token runs through both models); *_per_cpu_s "
            "divide by process CPU time, which is robust to other jobs sharing the machine (see load_average_1min)"
        ),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/harvest.json")
    ap.add_argument("--n-tokens", type=int, default=4096)
    ap.add_argument("--hook", default="blocks.15.hook_resid_post")
    ap.add_argument("--backend", default=None, choices=[None, "bridge", "hooked"])
    ap.add_argument("--train-tokens-per-s", type=float, default=4000.0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: cores left free by the load)")
    args = ap.parse_args(argv)
    check_output_file(args.out, "--out")  # before the models load
    result = run(
        hook=args.hook, n_tokens=args.n_tokens, backend=args.backend, train_tokens_per_s=args.train_tokens_per_s,
        threads=args.threads,
    )  # fmt: skip
    atomic_write_json(args.out, result)
    for k in ("paired_tokens_per_s", "naive_tokens_per_s", "speedup", "loader_rows_per_s", "loader_vs_training"):
        print(f"{k:24s} {result[k]}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    run_cli(main)
