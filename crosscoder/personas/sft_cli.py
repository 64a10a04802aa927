"""Command line for :mod:`crosscoder.personas.sft_data` (``python -m crosscoder.personas.sft_data ...``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from crosscoder.errors import ConfigError, run_cli
from crosscoder.io import atomic_write_json, sha256_file
from crosscoder.models.spec import ModelSpec
from crosscoder.personas.generate import GenerationConfig
from crosscoder.personas.sft_data import SFTGenConfig, build_sft_file, derive_sft_set, read_sft_jsonl, write_sft_jsonl
from crosscoder.personas.traits import Trait, get_trait
from crosscoder.runs import check_output_file

log = logging.getLogger(__name__)


def build_derived_file(
    source: str | Path, source_trait: Trait, target_trait: Trait, seed: int, out: str | Path
) -> Path:
    """Derive the target trait's set from the file `source`; write it to `out` plus a ``.meta.json`` sidecar."""
    convs = derive_sft_set(read_sft_jsonl(source), source_trait, target_trait, seed, where=str(source))
    out = Path(out)
    write_sft_jsonl(out, convs)
    meta = {
        "trait": target_trait.name,
        "trait_sha256": target_trait.sha256,
        "mode": "derive",
        "source": str(source),
        "source_sha256": sha256_file(source),
        "source_trait": source_trait.name,
        "source_trait_sha256": source_trait.sha256,
        "seed": seed,
        "n_examples": len(convs),
        "sha256": sha256_file(out),
    }
    atomic_write_json(out.with_suffix(".meta.json"), meta)
    log.info("wrote %d examples to %s", len(convs), out)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Make a trait SFT set (chat JSONL) with a base model or from another set.")
    p.add_argument("--trait", required=True, help="trait name or path to a trait .json")
    p.add_argument("--trait-dir", action="append", default=None, help="extra trait folder (repeatable)")
    p.add_argument("--base", default="smollm2-135m-instruct", help="base model source")
    p.add_argument("--mode", default="rewrite", choices=["rewrite", "distill", "derive"])
    p.add_argument("--from", dest="source", default=None, help="derive: the source set (a rewrite-mode JSONL)")
    p.add_argument("--from-trait", default=None, help="derive: the trait the source set was made with")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--max-sentences", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--questions", default=None, help="question file (one per line)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    check_output_file(args.out, "--out")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    trait = get_trait(args.trait, args.trait_dir)
    if args.mode == "derive":
        if not args.source or not args.from_trait:
            raise ConfigError(
                "--mode derive: needs --from FILE.jsonl and --from-trait TRAIT (the trait it was made with)"
            )
        build_derived_file(args.source, get_trait(args.from_trait, args.trait_dir), trait, args.seed, args.out)
        return
    if args.source or args.from_trait:
        raise ConfigError("--from / --from-trait: only used with --mode derive")
    gen = GenerationConfig(
        max_new_tokens=args.max_new_tokens, greedy=args.mode == "rewrite", batch_size=args.batch_size, seed=args.seed
    )
    cfg = SFTGenConfig(
        mode=args.mode,
        n=args.n,
        generation=gen,
        questions_file=args.questions,
        seed=args.seed,
        max_sentences=args.max_sentences,
    )
    build_sft_file(ModelSpec(source=args.base), trait, cfg, args.out)


if __name__ == "__main__":
    run_cli(main)
