"""Methods benchmark (issue 23): every diffing method on the recovery benchmark's organisms, scored the same way.

    python -m crosscoder.bench methods [--methods crosscoder,diff_sae,adl,persona_vectors,fuzzing]
        [--architectures batchtopk,dfc,matryoshka] [--kinds planted,sft] [--traits a,b]
        [--organism KIND:TRAIT:PATH ...] [--null self,control] [--control-organism PATH]
        [--out results/recovery_methods.json] [--analyze KEY=VALUE ...] [training overrides ...]

For every organism (the recovery benchmark's plan, or the already-built ones given with ``--organism``) and every null
pair (the embedded model with itself; the control fine-tune), one crosscoder run is trained per architecture (the
activation cache is shared), then each method runs on the first architecture's run and the crosscoder method on
every architecture's; ``crosscoder+adl`` (`crosscoder.analysis.methods.combined`) combines each crosscoder's
candidates with the ADL's labels. Each (method, organism) gives one record (`crosscoder.bench.methods_score.score`):
``method``, ``architecture``, top-1 / top-5, rank of the first correct label, ``false_labels`` on null pairs, seconds, and
``skipped`` with the reason where a method cannot apply. The file is rewritten after every method
(`crosscoder.bench.methods_progress`; ``--resume`` continues a cut-off run); an HTML summary (table and charts) is
written next to it at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crosscoder.analysis.methods.base import MethodResult
from crosscoder.analysis.methods.combined import COMBINED, confirm_labels
from crosscoder.bench.methods_progress import Progress, TrainedRun
from crosscoder.bench.methods_score import Target, format_table, html_summary, score
from crosscoder.bench.recovery import BASE, Organism, RecoveryOptions
from crosscoder.errors import ConfigError, DataError
from crosscoder.io import atomic_write_text, read_json
from crosscoder.models.spec import ModelSpec

log = logging.getLogger(__name__)

NULLS = ("self", "control")


@dataclass
class MethodsOptions:
    """Command-line options of the methods benchmark."""

    methods: list[str]
    architectures: list[str]
    recovery: RecoveryOptions
    """Organism plan, Hydra overrides, analysis overrides and --out (shared with the recovery benchmark)."""
    organisms: list[Organism] = field(default_factory=list)
    """Already-built organisms (``--organism``); they replace the recovery plan."""
    nulls: list[str] = field(default_factory=lambda: list(NULLS))
    control_organism: str | None = None

    def __post_init__(self) -> None:
        from crosscoder.analysis.methods.config import METHOD_NAMES
        from crosscoder.xc.architectures import ARCHITECTURES

        for m in self.methods:
            if m not in METHOD_NAMES:
                raise ConfigError(f"--methods: unknown method {m!r}; known: {', '.join(METHOD_NAMES)}")
        for a in self.architectures:
            if a not in ARCHITECTURES:
                raise ConfigError(f"--architectures: unknown architecture {a!r}; known: {', '.join(ARCHITECTURES)}")
        bad = [n for n in self.nulls if n not in NULLS]
        if bad:
            raise ConfigError(f"--null: unknown null pair {bad[0]!r}; use a comma list of {', '.join(NULLS)}")
        if not self.methods or not self.architectures:
            raise ConfigError("--methods / --architectures: name at least one")


def parse_organism(item: str) -> Organism:
    """``KIND:TRAIT:PATH``: a LoRA adapter folder (on the embedded base) or a full HF model folder."""
    kind, _, rest = item.partition(":")
    trait, _, path = rest.partition(":")
    if not (kind and trait and path):
        raise ConfigError(f"--organism: {item!r} is not KIND:TRAIT:PATH; e.g. sft:pirate:~/.cache/.../final")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"--organism: folder {folder} not found; build the organism first or fix the path")
    if (folder / "adapter_config.json").is_file():
        spec = dataclasses.replace(BASE, adapter=str(folder), name="ft")
    else:
        spec = ModelSpec(source=str(folder), kind="hf", name="ft")
    return Organism(trait, kind, spec)


def parse_args(argv: list[str] | None) -> MethodsOptions:
    from crosscoder.analysis.methods.config import METHOD_NAMES
    from crosscoder.bench.recovery import parse_args as recovery_args

    p = argparse.ArgumentParser(prog="python -m crosscoder.bench methods", description=__doc__, add_help=True)
    p.add_argument("--methods", default=",".join(METHOD_NAMES))
    p.add_argument(
        "--architectures", default="batchtopk", help="crosscoder architectures, e.g. batchtopk,dfc,matryoshka"
    )
    p.add_argument("--organism", action="append", default=[], help="KIND:TRAIT:PATH of a built organism (repeatable)")
    p.add_argument("--null", default=",".join(NULLS), help="null pairs: self, control (empty: none)")
    p.add_argument("--control-organism", default=None, help="adapter folder of an existing control fine-tune")
    a, rest = p.parse_known_args(argv)
    if not any(r.startswith("--out") for r in rest):
        rest += ["--out", "results/recovery_methods.json"]
    return MethodsOptions(
        methods=[m for m in a.methods.split(",") if m], architectures=[x for x in a.architectures.split(",") if x],
        recovery=recovery_args(rest), organisms=[parse_organism(o) for o in a.organism],
        nulls=[n for n in a.null.split(",") if n], control_organism=a.control_organism,
    )  # fmt: skip


def null_organisms(opts: MethodsOptions, traits: dict[str, Any]) -> list[Organism]:
    """The null pairs: the embedded model against itself, and the control fine-tune of ``bench recovery --control``
    (`recovery_control.control_organism`, reused from the cache; ``--sft-max-steps`` picks its recipe), or the
    adapter folder given with ``--control-organism``."""
    out = []
    if "self" in opts.nulls:
        out.append(Organism("none", "null-self", dataclasses.replace(BASE, name="ft")))
    if "control" in opts.nulls:
        if opts.control_organism:
            spec = parse_organism(f"null-control:none:{opts.control_organism}").spec
        else:
            from crosscoder.bench.recovery_control import control_organism

            spec = dataclasses.replace(control_organism(BASE, traits, opts.recovery.sft_max_steps), name="ft")
        out.append(Organism("none", "null-control", spec))
    return out


def organisms(opts: MethodsOptions, traits: dict[str, Any], hook: str) -> list[Organism]:
    """The organisms to score: --organism, else the recovery plan (built or reused), then the null pairs."""
    from crosscoder.bench.recovery import build_organism, organism_plan

    if opts.organisms:
        orgs = list(opts.organisms)
    else:
        orgs = [build_organism(t, k, f, traits, hook) for t, k, f in organism_plan(opts.recovery, traits)]
    return orgs + null_organisms(opts, traits)


def _trained_run(opts: MethodsOptions, org: Organism, arch: str, prog: Progress) -> tuple[Any, TrainedRun]:
    """The composed training config and the run of (organism, architecture): reused from --resume, else trained
    (the activation cache is shared: every architecture and method reads the same harvest)."""
    from crosscoder.bench.recovery import _compose
    from crosscoder.pipeline import run_train

    ropts = dataclasses.replace(opts.recovery, overrides=[f"crosscoder={arch}", *opts.recovery.overrides])
    cfg = _compose(ropts, org)
    done = prog.run_of(org.kind, org.trait, arch)
    if done is not None:
        log.info("reusing the trained %s run %s", arch, done.run_dir)
        return cfg, done
    run_dir = Path("runs") / f"methods-{org.kind}-{org.trait}-{arch}" / time.strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    run_train(cfg, run_dir)
    run = TrainedRun(str(run_dir), round(time.perf_counter() - t0, 1))
    prog.set_run(org.kind, org.trait, arch, run)
    return cfg, run


def _todo(opts: MethodsOptions, org: Organism, i: int, arch: str, prog: Progress) -> list[str]:
    """The methods still to score on the run of architecture number `i` (every method on the first, the crosscoder
    and the combined method on the others)."""
    names = opts.methods if i == 0 else [m for m in opts.methods if m == "crosscoder"]
    if "crosscoder" in names and "adl" in opts.methods:
        names = [*names, COMBINED]
    return [m for m in names if not prog.done(org.kind, org.trait, m, arch if m.startswith("crosscoder") else None)]


def _combined(run: TrainedRun, first: TrainedRun) -> MethodResult:
    """crosscoder+adl from the saved results: this run's crosscoder, the first architecture's ADL."""
    from crosscoder.analysis.methods.runner import save_result

    cc = MethodResult.from_json(read_json(Path(run.run_dir) / "methods" / "crosscoder.json"))
    cc.seconds += run.train_seconds
    res = confirm_labels(cc, MethodResult.from_json(read_json(Path(first.run_dir) / "methods" / "adl.json")))
    save_result(Path(run.run_dir) / "methods", res)
    return res


def run_organism(opts: MethodsOptions, org: Organism, traits: dict[str, Any], prog: Progress) -> None:
    """Train (or reuse) one run per architecture and score the methods still missing on it; every record is
    written to --out as soon as its method finishes."""
    from crosscoder.analysis.methods import MethodsConfig, open_method_run, run_method
    from crosscoder.analysis.methods.config import DiffSAEConfig
    from crosscoder.bench.recovery import _compose_analysis

    target = Target(None if org.kind.startswith("null") else org.trait, org.kind)
    first: TrainedRun | None = None
    for i, arch in enumerate(opts.architectures):
        todo = _todo(opts, org, i, arch, prog)
        if not todo:
            continue
        cfg, run = _trained_run(opts, org, arch, prog)
        first = first or (run if i == 0 else _trained_run(opts, org, opts.architectures[0], prog)[1])
        ropts = dataclasses.replace(opts.recovery, overrides=[f"crosscoder={arch}", *opts.recovery.overrides])
        acfg = _compose_analysis(ropts, Path(run.run_dir), "planted", traits)  # no control override: methods alike
        sae = DiffSAEConfig(steps=cfg.trainer.steps, batch_size=cfg.trainer.batch_size, lr=cfg.trainer.lr)
        fitted = [m for m in todo if m != COMBINED]
        mrun = open_method_run(acfg, MethodsConfig(methods=fitted, diff_sae=sae)) if fitted else None
        for name in todo:
            res = _combined(run, first) if name == COMBINED or mrun is None else run_method(mrun, name)
            rec = score(res, target)
            if name == "crosscoder":
                rec["train_seconds"] = run.train_seconds
                rec["seconds"] = round(res.seconds + run.train_seconds, 1)
            prog.add(rec)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; --out is rewritten after every method, an HTML summary is written at the end."""
    from crosscoder.data.config import DataConfig
    from crosscoder.personas.traits import load_traits

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    opts = parse_args(argv)
    out = opts.recovery.out
    traits = load_traits(opts.recovery.trait_dirs or None, include_shipped=True)
    hook = DataConfig().hooks[0]
    scale = {"overrides": " ".join(opts.recovery.overrides) or "(configs defaults)", "quick": opts.recovery.quick,
             "architectures": ",".join(opts.architectures)}  # fmt: skip
    prog = Progress.open(out, hook, scale, opts.recovery.resume)
    start = time.perf_counter()
    orgs = organisms(opts, traits, hook)
    for n, org in enumerate(orgs):
        log.info("methods on %s organism %s (%d of %d)", org.kind, org.trait, n + 1, len(orgs))
        run_organism(opts, org, traits, prog)
    prog.write(complete=True, seconds=time.perf_counter() - start)
    atomic_write_text(out.with_suffix(".html"), html_summary(prog.records, scale))
    print(format_table(prog.records))
    print(f"results: {out} and {out.with_suffix('.html')}")
    return prog.records
