"""Command line: ``python -m crosscoder.personas.organisms list | build NAME | show NAME``."""

from __future__ import annotations

import argparse
import json
import logging

from crosscoder.errors import run_cli
from crosscoder.personas.organisms.registry import RECIPES, build_organism


def _show(name: str, n_samples: int) -> None:
    res = build_organism(name)
    print(f"organism {name}: status {res.status}, folder {res.folder}")
    for spec in res.series:
        print(f"  {spec.name or spec.label}: source={spec.source} adapter={spec.adapter}")
    cmp = res.comparison
    if not cmp:
        return
    print(f"trait check: {cmp['metric']} delta {cmp['delta']:+.3f} -> {'rose' if cmp['rose'] else 'did NOT rise'}")
    for side in ("base", "organism"):
        s = cmp[side]
        print(f"  {side:8s} projection {s['projection']:+.3f} @ {s['hook']}, keyword rate {s['keyword_rate']}")
    for b, o in list(zip(cmp["base"]["samples"], cmp["organism"]["samples"], strict=True))[:n_samples]:
        print(json.dumps({"question": b["question"], "base": b["answer"], "organism": o["answer"]}, indent=2))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Named model organisms.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the named organisms")
    for cmd in ("build", "show"):
        sp = sub.add_parser(cmd, help=f"{cmd} a named organism (builds when missing)")
        sp.add_argument("name")
        sp.add_argument("--samples", type=int, default=3)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cmd == "list":
        for r in RECIPES.values():
            print(f"{r.name:16s} {r.kind:8s} trait={r.trait} base={r.base.source}")
        return
    _show(args.name, args.samples)


if __name__ == "__main__":
    run_cli(main)
