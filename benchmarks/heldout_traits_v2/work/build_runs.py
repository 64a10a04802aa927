"""Build the test organisms and train their crosscoders now; analyse them later, once, with the frozen labeller.

    python benchmarks/heldout_traits_v2/work/build_runs.py <the recovery benchmark's options>

Takes exactly the options of `python -m crosscoder.bench recovery` (`--trait-dir`, `--sft FILE:TRAIT`,
`--sft-max-steps`, `--check-questions`, `--quick`, Hydra overrides, `--out`) and does what it does for every
organism of the plan (same organism recipe and cache, same training config, same run folders), except the
analysis: it writes records with `trait`, `organism_kind`, `run_dir`, `seconds` and the organism's trait check
(`organism_check`), and `complete: false`. Then

    python -m crosscoder.bench recovery --reanalyze --out <the same file> --trait-dir ... [--analyze ...]

analyses every run with the code checked out at that time and fills in the label columns. So the labels of the
test organisms are computed once, after the freeze, and nobody sees a label of them before. With `--resume`
the organisms already in `--out` are skipped (one organism per job keeps partial progress).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from crosscoder.bench.recovery import _compose, build_organism, earlier_records, organism_plan
from crosscoder.bench.recovery_options import parse_args
from crosscoder.data.config import DataConfig
from crosscoder.io import atomic_write_json, read_json
from crosscoder.personas.traits import load_traits
from crosscoder.pipeline import run_train
from crosscoder.runs import RUNS_ROOT, run_tag

log = logging.getLogger("build_runs")


def organism_check(adapter: str | None) -> dict[str, Any]:
    """The trait check the organism build recorded (organism.json next to the adapter folder)."""
    if not adapter:
        return {}
    meta = Path(adapter).parent / "organism.json"
    if not meta.is_file():
        return {"status": "missing"}
    data = read_json(meta)
    cmp = data.get("comparison") or {}
    out: dict[str, Any] = {
        "organism_folder": str(Path(adapter).parent),
        "status": data.get("status"),
        "metric": cmp.get("metric"),
        "delta": cmp.get("delta"),
        "rose": cmp.get("rose"),
        "total_steps": data.get("total_steps"),
        "loss": data.get("loss"),
        "train_seconds": data.get("train_seconds"),
        "tokens_per_s": data.get("tokens_per_s"),
    }
    for side in ("base", "organism"):
        s = cmp.get(side) or {}
        out[side] = {"projection": s.get("projection"), "keyword_rate": s.get("keyword_rate"), "judge": s.get("judge")}
    return out


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    opts = parse_args(argv)
    traits = load_traits(opts.trait_dirs or None, include_shipped=True)
    hook = DataConfig().hooks[0]
    records = earlier_records(opts, hook)
    done = {(r["trait"], r["organism_kind"]) for r in records}
    for trait, kind, sft_file in [p for p in organism_plan(opts, traits) if p[:2] not in done]:
        t0 = time.perf_counter()
        org = build_organism(trait, kind, sft_file, traits, hook, opts)
        cfg = _compose(opts, org)
        run_dir = RUNS_ROOT / cfg.name / f"{time.strftime('%Y%m%d-%H%M%S')}-{run_tag()}"
        run_train(cfg, run_dir)
        records.append({
            "trait": trait, "organism_kind": kind, "sft": sft_file, "run_dir": str(run_dir),
            "seconds": round(time.perf_counter() - t0, 1), "build_seconds": round(org.build_seconds, 1),
            "organism_check": organism_check(org.spec.adapter),
        })  # fmt: skip
        atomic_write_json(opts.out, {"records": records, "hook": hook, "complete": False})
        log.info("built %s %s -> %s", kind, trait, run_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
