"""The recovery benchmark's command line (`python -m crosscoder.bench recovery --help`): `RecoveryOptions`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from crosscoder.bench.recovery_metrics import KINDS
from crosscoder.errors import ConfigError, DataError
from crosscoder.personas.sft_data import read_sft_jsonl
from crosscoder.runs import check_output_file

_DOC = "Recovery benchmark: does the pipeline find personas whose ground truth is known? (crosscoder.bench.recovery)"


@dataclass
class RecoveryOptions:
    """Command-line options of the recovery benchmark."""

    kinds: list[str] = field(default_factory=lambda: ["planted", "sft"])
    traits: list[str] = field(default_factory=list)
    trait_dirs: list[str] = field(default_factory=list)
    sft: list[tuple[str, str]] = field(default_factory=list)
    out: Path = Path("results/recovery.json")
    config_dir: Path = Path("configs")
    overrides: list[str] = field(default_factory=list)
    analyze_overrides: list[str] = field(default_factory=list)
    quick: bool = False
    rescore: bool = False
    reanalyze: bool = False
    """Re-run the analysis of every run recorded in `out` (training kept) and recompute the records."""
    resume: bool = False
    """Keep the records already in `out` and skip their organisms (same trait and kind)."""
    control: bool = False
    """Analyse SFT organisms with a control fine-tune (`crosscoder.bench.recovery_control`)."""
    sft_max_steps: int | None = None
    """Stop each SFT organism's LoRA training after this many steps (None: one epoch of its set)."""
    check_questions: int = 10
    """Evaluation questions of each SFT organism's trait check (base against organism answers)."""

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ConfigError(f"--kinds: unknown kind {bad[0]!r}; use a comma list of {', '.join(KINDS)}")
        if self.rescore and self.reanalyze:
            raise ConfigError("--rescore and --reanalyze: pick one (--reanalyze re-runs the analysis, then rescores)")
        if not (self.config_dir / "config.yaml").is_file():
            raise ConfigError(f"--config-dir: {self.config_dir}/config.yaml not found; run from the repository root")


def parse_args(argv: list[str] | None) -> RecoveryOptions:
    p = argparse.ArgumentParser(prog="python -m crosscoder.bench recovery", description=_DOC)
    p.add_argument("--kinds", default="planted,sft", help="comma list of planted, sft, distilled")
    p.add_argument(
        "--traits", default="", help="comma list of traits to plant/distil (default: all, incl. --trait-dir)"
    )
    p.add_argument("--trait-dir", action="append", default=[], help="folder of extra trait JSON files (repeatable)")
    p.add_argument(
        "--sft", action="append", default=[], help="FILE:TRAIT, an SFT chat JSONL and its trait (repeatable)"
    )
    p.add_argument("--out", type=Path, default=Path("results/recovery.json"))
    p.add_argument("--config-dir", type=Path, default=Path("configs"))
    p.add_argument(
        "--rescore",
        action="store_true",
        help="recompute the records of --out from its runs' saved analysis (no new analysis)",
    )
    p.add_argument(
        "--reanalyze", action="store_true", help="re-run the analysis of every run in --out (no training) and re-score"
    )
    p.add_argument(
        "--resume", action="store_true", help="keep the records in --out and run only the organisms it lacks"
    )
    p.add_argument("--quick", action="store_true", help="smaller harvest and training (a smoke run, not the benchmark)")
    p.add_argument(
        "--control",
        action="store_true",
        help="analyse SFT organisms with a control fine-tune (same answers, no persona) set aside in the ranking",
    )
    p.add_argument(
        "--analyze",
        action="append",
        default=[],
        help="Hydra override for the analysis (repeatable), e.g. labels.questions=5",
    )
    p.add_argument("--sft-max-steps", type=int, default=None,
                   help="LoRA steps per SFT organism (default: one epoch); a smaller scale for a busy machine")  # fmt: skip
    p.add_argument("--check-questions", type=int, default=10, help="questions of each SFT organism's trait check")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for the training runs, e.g. trainer.steps=800")
    a = p.parse_args(argv)
    sft: list[tuple[str, str]] = []
    for item in a.sft:
        path, sep, trait = item.rpartition(":")
        if not sep or not path or not trait:
            raise ConfigError(f"--sft: {item!r} is not FILE:TRAIT; e.g. --sft data/my_set.jsonl:sycophancy")
        if not Path(path).is_file():
            raise DataError(f"--sft: file {path} not found; check the path")
        read_sft_jsonl(path)  # an empty or wrong-schema file is refused now, before any model is converted
        sft.append((path, trait))
    check_output_file(a.out, "--out")
    return RecoveryOptions(
        kinds=[k for k in a.kinds.split(",") if k],
        traits=[t for t in a.traits.split(",") if t],
        trait_dirs=list(a.trait_dir),
        sft=sft,
        out=a.out,
        config_dir=a.config_dir,
        overrides=list(a.overrides),
        analyze_overrides=list(a.analyze),
        quick=a.quick,
        rescore=a.rescore,
        reanalyze=a.reanalyze,
        resume=a.resume,
        control=a.control,
        sft_max_steps=a.sft_max_steps,
        check_questions=a.check_questions,
    )
