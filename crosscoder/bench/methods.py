"""Methods benchmark (issue 23): every diffing method on the recovery benchmark's organisms, scored the same way.

    python -m crosscoder.bench methods [--methods crosscoder,diff_sae,adl,persona_vectors,fuzzing]
        [--architectures batchtopk,dfc,matryoshka] [--kinds planted,sft] [--traits a,b]
        [--organism KIND:TRAIT:PATH ...] [--null self,control] [--control-organism PATH]
        [--out results/recovery_methods.json] [--analyze KEY=VALUE ...] [training overrides ...]

For every organism (the recovery benchmark's plan, or the already-built ones given with ``--organism``) and every null
pair (the embedded model with itself; the control fine-tune), one crosscoder run is trained per architecture (the
activation cache is shared), then each method runs on the first architecture's run and the crosscoder method on
every architecture's. Each (method, organism) gives one record (`crosscoder.bench.methods_score.score`): ``method``,
``architecture``, top-1 / top-5, rank of the first correct label, ``false_labels`` on null pairs, seconds, and
``skipped`` with the reason where a method cannot apply. The file is rewritten after every run; an HTML summary
(table and charts) is written next to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crosscoder.bench.methods_score import Target, format_table, html_summary, score
from crosscoder.bench.recovery import BASE, Organism, RecoveryOptions
from crosscoder.errors import ConfigError, DataError
from crosscoder.io import atomic_write_json, atomic_write_text, read_json
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
    """The null pairs: the embedded model against itself, and the control fine-tune (built or given)."""
    out = []
    if "self" in opts.nulls:
        out.append(Organism("none", "null-self", dataclasses.replace(BASE, name="ft")))
    if "control" in opts.nulls:
        if opts.control_organism:
            spec = parse_organism(f"null-control:none:{opts.control_organism}").spec
        else:
            from crosscoder.bench.recovery_control import control_organism

            spec = control_organism(BASE, traits)
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


def run_organism(opts: MethodsOptions, org: Organism, traits: dict[str, Any]) -> list[dict[str, Any]]:
    """Train one run per architecture and score the methods on it; returns the records."""
    from crosscoder.analysis.methods import MethodsConfig, open_method_run, run_methods
    from crosscoder.analysis.methods.config import DiffSAEConfig
    from crosscoder.bench.recovery import _compose, _compose_analysis
    from crosscoder.pipeline import run_train

    target = Target(None if org.kind.startswith("null") else org.trait, org.kind)
    records = []
    for i, arch in enumerate(opts.architectures):
        ropts = dataclasses.replace(opts.recovery, overrides=[f"crosscoder={arch}", *opts.recovery.overrides])
        cfg = _compose(ropts, org)
        run_dir = Path("runs") / f"methods-{org.kind}-{org.trait}-{arch}" / time.strftime("%Y%m%d-%H%M%S")
        t0 = time.perf_counter()
        run_train(cfg, run_dir)
        train_s = time.perf_counter() - t0
        acfg = _compose_analysis(ropts, run_dir, "planted", traits)  # no control override: methods compare alike
        names = opts.methods if i == 0 else [m for m in opts.methods if m == "crosscoder"]
        sae = DiffSAEConfig(steps=cfg.trainer.steps, batch_size=cfg.trainer.batch_size, lr=cfg.trainer.lr)
        mrun = open_method_run(acfg, MethodsConfig(methods=names, diff_sae=sae))
        for res in run_methods(mrun):
            rec = score(res, target)
            if res.method == "crosscoder":
                rec["train_seconds"] = round(train_s, 1)
                rec["seconds"] = round(res.seconds + train_s, 1)
            records.append(rec)
    return records


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; writes the JSON records after every organism and an HTML summary at the end."""
    from crosscoder.data.config import DataConfig
    from crosscoder.personas.traits import load_traits

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    opts = parse_args(argv)
    out = opts.recovery.out
    traits = load_traits(opts.recovery.trait_dirs or None, include_shipped=True)
    hook = DataConfig().hooks[0]
    scale = {"overrides": " ".join(opts.recovery.overrides) or "(configs defaults)", "quick": opts.recovery.quick,
             "architectures": ",".join(opts.architectures)}  # fmt: skip
    records: list[dict[str, Any]] = []
    done: set[tuple[str, str]] = set()
    if opts.recovery.resume and out.is_file():
        records = list(read_json(out)["records"])
        done = {(r["organism_kind"], str(r["trait"] or "none")) for r in records}
    start = time.perf_counter()
    orgs = [o for o in organisms(opts, traits, hook) if (o.kind, o.trait) not in done]
    for n, org in enumerate(orgs):
        log.info("methods on %s organism %s (%d of %d)", org.kind, org.trait, n + 1, len(orgs))
        records += run_organism(opts, org, traits)
        atomic_write_json(out, {"records": records, "hook": hook, "scale": scale, "complete": False})
    atomic_write_json(out, {"records": records, "hook": hook, "scale": scale, "complete": True,
                            "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
    atomic_write_text(out.with_suffix(".html"), html_summary(records, scale))
    print(format_table(records))
    print(f"results: {out} and {out.with_suffix('.html')}")
    return records
