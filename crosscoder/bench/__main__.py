"""`python -m crosscoder.bench {all,harvest,xc-step,recovery,methods,analysis,screening,composition,trajectory,
calibrate-labels,relabel,export}`: benchmarks.

`all` (what `make bench` runs) collects the throughput benchmarks of the other stages — paired harvest and loader
(crosscoder.bench.harvest) and the crosscoder training step (crosscoder.bench.xc_step) — into one JSON file and
prints a short table. `recovery` (what `make bench-recovery` runs) measures whether the pipeline finds planted and
fine-tuned personas (crosscoder.bench.recovery); `methods` scores the other diffing methods on the same organisms
(crosscoder.bench.methods). `analysis` times the analysis stage at full size
(crosscoder.bench.analysis). `screening` measures persona vectors in use: training-data screening, fine-tuning shift
prediction and preventative steering (crosscoder.bench.screening). `composition` measures persona composition: LoRA
surgery, cross-trait leakage, the latent-basis adapter and the receive-side audit (crosscoder.bench.composition).
`trajectory` follows personas across checkpoint series and forecasts checkpoint n+1 (crosscoder.bench.trajectory).
`export` measures each SAELens export mode's FVE against the crosscoder's (crosscoder.bench.export_fve).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crosscoder.bench.common import Machine, torch_threads
from crosscoder.errors import run_cli
from crosscoder.io import atomic_write_json
from crosscoder.runs import check_output_file

THROUGHPUT = {"harvest": "crosscoder.bench.harvest", "xc_step": "crosscoder.bench.xc_step"}


def _table(results: dict[str, Any]) -> str:
    rows = []
    harvest = results.get("harvest", {})
    if harvest:
        rows.append(
            ("paired harvest (stop_at_layer)", f"{harvest.get('paired_tokens_per_s', float('nan')):,.0f} tok/s")
        )
        rows.append(("naive harvest (full forward)", f"{harvest.get('naive_tokens_per_s', float('nan')):,.0f} tok/s"))
        rows.append(("harvest speed-up", f"{harvest.get('speedup', float('nan')):.2f}x (target >= 1.8x)"))
        rows.append(("loader", f"{harvest.get('loader_rows_per_s', float('nan')):,.0f} rows/s"))
    step = results.get("xc_step", {})
    for r in step.get("results", []):
        if r["path"] != "fast":
            continue
        speedup = step.get("speedups", {}).get(f"{r['arch']}/{r['n_latents']}")
        vs = f", {speedup:.1f}x the dense reference" if speedup else ""
        rows.append(
            (
                f"crosscoder step {r['arch']} {r['n_latents']}",
                f"{r['tokens_per_s']:,.0f} tok/s, {r['frac_sparse_bound']:.0%} of the sparse bound{vs}",
            )
        )
    if step.get("results"):
        rows.append(
            (
                "encoder GEMM probe (median)",
                f"{statistics.median(r['gemm_gflops'] for r in step['results']):.0f} GFLOP/s",
            )
        )
    width = max((len(k) for k, _ in rows), default=10)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _stage(key: str) -> dict[str, Any]:
    module = importlib.import_module(THROUGHPUT[key])
    if key == "xc_step":
        return dict(module.to_json(module.run()))
    return dict(module.run())


def run_all(out: Path) -> dict[str, Any]:
    """Run the throughput benchmarks in one process and write one JSON file.

    Each stage runs inside :func:`torch_threads`, so whatever thread count a stage sets is undone before the next.
    """
    machine = Machine()
    results: dict[str, Any] = {"machine": {"platform": platform.platform(), "python": sys.version.split()[0]}}
    for key in THROUGHPUT:
        t0 = time.perf_counter()
        print(f"== {key} ({THROUGHPUT[key]})", flush=True)
        with torch_threads(None):
            results[key] = _stage(key)
        results[key]["bench_seconds"] = round(time.perf_counter() - t0, 1)
    results["machine"].update(asdict(machine.finish()))
    atomic_write_json(out, results)
    print(_table(results))
    print(f"results: {out}")
    return results


COMMANDS = {
    "harvest": "crosscoder.bench.harvest",
    "xc-step": "crosscoder.bench.xc_step",
    "recovery": "crosscoder.bench.recovery",
    "methods": "crosscoder.bench.methods",
    "analysis": "crosscoder.bench.analysis",
    "screening": "crosscoder.bench.screening",
    "composition": "crosscoder.bench.composition",
    "trajectory": "crosscoder.bench.trajectory",
    "calibrate-labels": "crosscoder.bench.calibrate_labels",
    "relabel": "crosscoder.bench.relabel",
    "export": "crosscoder.bench.export_fve",
}
"""Each benchmark command's module; its `main(argv)` gets the remaining arguments (imported only when chosen)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crosscoder.bench", description=__doc__)
    parser.add_argument("which", choices=["all", *COMMANDS])
    args, rest = parser.parse_known_args(argv)
    if args.which == "all":
        sub = argparse.ArgumentParser(prog="python -m crosscoder.bench all")
        sub.add_argument("--out", type=Path, default=Path("results/bench.json"))
        out = sub.parse_args(rest).out
        check_output_file(out, "--out")  # before the benchmarks run
        run_all(out)
    else:
        importlib.import_module(COMMANDS[args.which]).main(rest)


if __name__ == "__main__":
    run_cli(main)
