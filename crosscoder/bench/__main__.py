"""`python -m crosscoder.bench {all,harvest,xc-step,recovery,analysis,export}`: the project's benchmarks.

`all` (what `make bench` runs) collects the throughput benchmarks of the other stages — paired harvest and loader
(crosscoder.bench.harvest) and the crosscoder training step (crosscoder.bench.xc_step) — into one JSON file and
prints a short table. `recovery` (what `make bench-recovery` runs) measures whether the pipeline finds planted and
fine-tuned personas (crosscoder.bench.recovery). `analysis` times the analysis stage at full size
(crosscoder.bench.analysis). `export` measures each SAELens export mode's FVE against the crosscoder's
(crosscoder.bench.export_fve).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from pathlib import Path
from typing import Any

from crosscoder.errors import run_cli
from crosscoder.io import atomic_write_json

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
    if step:
        fast, dense = step.get("fast", {}), step.get("dense", {})
        rows.append(("crosscoder step, fast path", f"{fast.get('tokens_per_s', float('nan')):,.0f} tok/s"))
        rows.append(("crosscoder step, dense reference", f"{dense.get('tokens_per_s', float('nan')):,.0f} tok/s"))
        rows.append(("fast / dense", f"{step.get('speedup', float('nan')):.2f}x (target >= 3x)"))
        rows.append(("fp32 GEMM", f"{step.get('gemm_gflops', float('nan')):.0f} GFLOP/s"))
    width = max((len(k) for k, _ in rows), default=10)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run_all(out: Path) -> dict[str, Any]:
    """Run the throughput benchmarks in one process and write one JSON file."""
    results: dict[str, Any] = {"machine": {"platform": platform.platform(), "python": sys.version.split()[0]}}
    for key, module in THROUGHPUT.items():
        t0 = time.perf_counter()
        print(f"== {key} ({module})", flush=True)
        results[key] = importlib.import_module(module).run()
        results[key]["bench_seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(out, results)
    print(_table(results))
    print(f"results: {out}")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crosscoder.bench", description=__doc__)
    parser.add_argument("which", choices=["all", "harvest", "xc-step", "recovery", "analysis", "export"])
    args, rest = parser.parse_known_args(argv)
    if args.which == "all":
        sub = argparse.ArgumentParser(prog="python -m crosscoder.bench all")
        sub.add_argument("--out", type=Path, default=Path("results/bench.json"))
        run_all(sub.parse_args(rest).out)
    elif args.which == "recovery":
        from crosscoder.bench.recovery import main as recovery_main

        recovery_main(rest)
    elif args.which == "analysis":
        from crosscoder.bench.analysis import main as analysis_main

        analysis_main(rest)
    elif args.which == "export":
        from crosscoder.bench.export_fve import main as export_main

        export_main(rest)
    else:
        module = importlib.import_module(THROUGHPUT[args.which.replace("-", "_")])
        module.main(rest)


if __name__ == "__main__":
    run_cli(main)
