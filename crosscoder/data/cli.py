"""The data stage's command line: ``python -m crosscoder.data <command>``.

    python -m crosscoder.data layerscan --base SRC --ft SRC --out DIR   where a fine-tune changes the residual stream
    python -m crosscoder.data cache {verify,repair,info} FOLDER          check or rebuild an activation cache
    python -m crosscoder.data make-corpus [--out DIR]                    regenerate the shipped corpus

Harvesting itself runs inside ``python train.py``. This module is an entry point: it may import every layer (the
layer scan resolves ``organism:<name>`` sources through `crosscoder.pipeline`).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any


def layerscan_main(argv: list[str] | None = None) -> dict[str, Any]:
    """`layerscan`: per-layer mean ft - base difference with its logit lens, to choose crosscoder hooks."""
    from crosscoder.data.config import DataConfig
    from crosscoder.data.layerscan import SUBSETS, layer_scan, write_outputs
    from crosscoder.models import ModelSpec
    from crosscoder.pipeline import load_models
    from crosscoder.runs import check_output_dir

    ap = argparse.ArgumentParser(prog="python -m crosscoder.data layerscan", description=layerscan_main.__doc__)
    ap.add_argument("--base", required=True, help="base model source (embedded name, HF folder/id, .gguf, organism:)")
    ap.add_argument("--base-adapter", default=None)
    ap.add_argument("--ft", required=True, help="fine-tuned model source")
    ap.add_argument("--ft-adapter", default=None, help="PEFT adapter folder applied on top of --ft")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-tokens", type=int, default=20_000)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--sources", nargs="+", default=["shipped:chat"])
    ap.add_argument("--chat-ratio", type=float, default=1.0)
    ap.add_argument("--first-k", type=int, default=5, help="assistant tokens counted as 'first' per turn")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument(
        "--keywords", default="", help="comma-separated words to look for in the logit lens (e.g. cat,cats)"
    )
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    check_output_dir(args.out, "--out")  # before the models load
    specs = [
        ModelSpec(source=args.base, adapter=args.base_adapter, name="base"),
        ModelSpec(source=args.ft, adapter=args.ft_adapter, name="ft"),
    ]
    base, ft = load_models(specs, device=args.device)
    data = DataConfig(
        sources=args.sources,
        chat_ratio=args.chat_ratio,
        n_tokens=args.n_tokens,
        seq_len=args.seq_len,
        harvest_batch_size=args.batch_size,
        device=args.device,
    )
    result = layer_scan(base, ft, data, args.first_k, args.top_k, args.keywords.split(","))
    paths = write_outputs(result, Path(args.out))
    for subset in SUBSETS:
        rows = [r for r in result["rows"] if r["subset"] == subset]
        if rows:
            top = max(rows, key=lambda r: r["rel_mean_diff"])
            tokens = " ".join(repr(t) for t in top["top_tokens"][:6])
            print(f"{subset:16s} max rel diff {top['rel_mean_diff']:.3f} at layer {top['layer']}: {tokens}")
    print(f"suggested hook: {result['suggested_hook']}")
    print(json.dumps([str(p) for p in paths]))
    return result


def _cache(argv: list[str] | None) -> None:
    from crosscoder.data.cache import main as cache_main

    cache_main(argv)


def _corpus(argv: list[str] | None) -> None:
    from crosscoder.data.make_corpus import main as corpus_main

    corpus_main(argv)


COMMANDS: dict[str, Callable[[list[str] | None], Any]] = {
    "layerscan": layerscan_main,
    "cache": _cache,
    "make-corpus": _corpus,
}
"""Subcommands of ``python -m crosscoder.data``."""


def main(argv: list[str] | None = None) -> Any:
    """Dispatch ``python -m crosscoder.data <command> [args]``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(prog="python -m crosscoder.data", description=__doc__.split("\n")[0])
    p.add_argument("command", choices=sorted(COMMANDS))
    args, rest = p.parse_known_args(argv)
    return COMMANDS[args.command](rest)
