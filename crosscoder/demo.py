"""`make demo` / `python -m crosscoder.demo`: the whole pipeline on the embedded default, timed end to end.

Runs the two entry points exactly as a user would (`python train.py`, then `python analyze.py`), so the demo
exercises the real Hydra configs. The persona organism is built on first use by the model loader (organism:demo)
and reused afterwards, as are the converted model and the activation cache.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from crosscoder.io import read_json
from crosscoder.runs import latest_run


def _run(args: list[str]) -> None:
    print(f"\n$ {' '.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, *args], check=False)
    if proc.returncode != 0:
        print(
            f"error: `{' '.join(args)}` failed with exit code {proc.returncode}; see the messages above",
            file=sys.stderr,
        )
        raise SystemExit(proc.returncode)


def _persona_line(personas: list[dict[str, Any]]) -> str:
    """ "personas: cat_obsession (latents 4023 #1, 373 #5); ..." -- each found trait with its latents' diff ranks."""
    parts = []
    for p in personas:
        latents = ", ".join(f"{x['latent']} #{x['rank']}" for x in p["latents"])
        parts.append(f"{p['trait']} (latent{'s' if len(p['latents']) > 1 else ''} {latents})")
    return "personas: " + ("; ".join(parts) or "none labelled (see the best matches below)")


def summary_lines(run_dir: Path) -> list[str]:
    """The closing block: report path, per-model FVE, the personas the labels found (each with its latents and their
    model-diff ranks) and the top 5 candidates with their labels."""
    summary = read_json(run_dir / "analysis" / "summary.json")
    lines = ["=" * 72, f"report:  {Path(run_dir) / 'analysis' / 'report.html'}"]
    fve = summary.get("fve", {})
    lines.append("FVE:     " + ", ".join(f"{name} {value:.3f}" for name, value in fve.items()))
    lines.append(_persona_line(summary.get("personas") or []))
    lines.append("top candidate persona latents:")
    for cand in summary.get("top_candidates", [])[:5]:
        conf = cand.get("label_confidence")
        conf_s = f" ({conf:.2f})" if isinstance(conf, float) else ""
        best = cand.get("best_trait")
        if cand.get("label") == "unlabelled" and best:  # below the threshold: still show the best match
            conf_s += f", best match {best}"
        lines.append(
            f"  #{cand.get('rank')}  latent {cand.get('latent'):>5}  {cand.get('class', ''):<14} "
            f"label: {cand.get('label')}{conf_s}  runner-up: {cand.get('runner_up')}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    """Train and analyse the demo, then print the report path, top candidates, FVE and the total time."""
    extra = list(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    _run(["train.py", *extra])
    run_dir = latest_run()
    _run(["analyze.py", f"run_dir={run_dir}"])
    total = time.perf_counter() - start
    print("\n" + "\n".join(summary_lines(run_dir)))
    print(f"total time: {total / 60:.1f} min")


if __name__ == "__main__":
    main()
