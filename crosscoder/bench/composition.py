"""Composition benchmark: surgery, leakage, the latent-basis adapter and the receive-side audit, measured.

    python -m crosscoder.bench composition [--quick] [--out results/composition.json] [--report PATH]
                                           [--pair REMOVED,KEPT] [--organisms T1,T2,T3] [--hook HOOK]

1. **Decoupling by surgery.** The two-persona organism (LoRA on both traits' shipped SFT sets, mixed) gets a new
   adapter from :func:`lora_surgery` with the removed trait's persona vector (the base model's) removed from the
   residual writes of every block, at every block's hook, each vector first made orthogonal to the kept trait's
   vector at that hook. ``surgery``: the removed trait's drop and the kept trait's retention (shares of what the
   fine-tune added, keyword rates on held-out questions) and the capability change against the unedited organism.
2. **Latent-basis adapter** of the demo organism, from a base-vs-demo crosscoder (the recovery benchmark's recipe):
   ``latent_adapter`` per k (behaviour recovered, latents), plus the dense ceiling and the trait expression of the
   largest k.
3. **Receive-side audit** of each organism's own trait in the base and in the organism (``receive_side``).
4. **Leakage** of every edit above and of two steering vectors (the removed trait's persona vector, and the same
   made orthogonal to every other trait's) on every library trait (``leakage``), with an HTML report.

``--quick`` shrinks question sets, answer lengths, optimisation steps and the crosscoder; organisms, persona vectors
and crosscoders are cached, so a second run only measures.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from crosscoder.errors import ConfigError
from crosscoder.io import atomic_write_json

log = logging.getLogger(__name__)


STAGES = ("surgery", "latent", "receive", "steering")


@dataclass
class CompositionOptions:
    """Command-line options of the composition benchmark."""

    out: Path = Path("results/composition.json")
    report: Path | None = None
    """HTML report (default: `out` with .html)."""
    quick: bool = False
    pair: tuple[str, str] = ("pirate", "cat_obsession")
    """(removed, kept) traits of the two-persona organism."""
    organisms: tuple[str, ...] = ("cat_obsession", "pirate", "pessimism")
    """Traits whose single-trait organism gets a receive-side audit (cat_obsession is the demo organism)."""
    hook: str = "blocks.20.hook_resid_post"
    """Hook of the receive-side audit and the steering columns."""
    config_dir: Path = Path("configs")
    work_dir: Path = Path("runs/composition")
    """Where the surgery adapters and the crosscoder runs go."""
    both_directions: bool = False
    """Also remove the kept trait and keep the removed one (default in full runs)."""
    report_only: bool = False
    """Only re-render the HTML report from the results file `out` (no measurement)."""
    stages: tuple[str, ...] = STAGES
    """Stages to run (surgery, latent, receive, steering); the JSON is rewritten after each."""
    components: int = 192
    """Singular components the component surgery removes, 48 per round (chosen on dev data, docs/COMPOSITION.md)."""
    direction_surgery: bool = True
    """Also run the two direction surgeries (adapter and model scope) for comparison."""
    latent_hooks: tuple[str, ...] = ("blocks.9.hook_resid_post", "blocks.18.hook_resid_post")
    """Extra hooks of the latent-basis adapter (besides the crosscoder's)."""

    def __post_init__(self) -> None:
        if self.pair[0] == self.pair[1]:
            raise ConfigError(f"--pair: two different traits, e.g. pirate,cat_obsession (got {self.pair})")
        bad = [s for s in self.stages if s not in STAGES]
        if bad or not self.stages:
            raise ConfigError(f"--stages {','.join(self.stages)}: pick from {','.join(STAGES)}")
        if not (self.config_dir / "config.yaml").is_file():
            raise ConfigError(f"--config-dir: {self.config_dir}/config.yaml not found; run from the repository root")


@dataclass
class Scale:
    """Sizes of one benchmark run (quick or full)."""

    expression: Any
    n_heldout: int
    n_facts: int | None
    latent: Any
    receive: Any
    extra: dict[str, Any] = field(default_factory=dict)


def scale_for(quick: bool, hook: str) -> Scale:
    from crosscoder.personas.compose.expression import ExpressionConfig
    from crosscoder.personas.compose.latent_adapter import LatentAdapterConfig
    from crosscoder.personas.compose.receive_side import ReceiveConfig

    if quick:
        return Scale(
            ExpressionConfig(n_questions=4, max_new_tokens=64), 20, 24,
            LatentAdapterConfig(n_fit=16, n_eval=16, steps=10),
            ReceiveConfig(hook=hook, rounds=1, steps_per_round=4, search_iters=6, n_questions=4, max_new_tokens=64,
                          n_pairs=6),
            {"shift_conversations": 16},
        )  # fmt: skip
    return Scale(
        ExpressionConfig(n_questions=10, max_new_tokens=64), 40, None,
        LatentAdapterConfig(n_fit=32, n_eval=24, steps=20),
        ReceiveConfig(hook=hook, n_questions=8, max_new_tokens=64),
        {"shift_conversations": 32},
    )  # fmt: skip


def parse_args(argv: list[str] | None) -> CompositionOptions:
    p = argparse.ArgumentParser(prog="python -m crosscoder.bench composition", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("results/composition.json"))
    p.add_argument("--report", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="small question sets and fits (a smoke run)")
    p.add_argument("--pair", default="pirate,cat_obsession", help="REMOVED,KEPT traits of the two-persona organism")
    p.add_argument("--organisms", default="cat_obsession,pirate,pessimism", help="traits for the receive-side audit")
    p.add_argument("--hook", default="blocks.20.hook_resid_post")
    p.add_argument("--config-dir", type=Path, default=Path("configs"))
    p.add_argument("--work-dir", type=Path, default=Path("runs/composition"))
    p.add_argument("--both-directions", action="store_true", help="also remove KEPT and keep REMOVED")
    p.add_argument("--report-only", action="store_true", help="re-render the report of an existing --out file")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    p.add_argument("--components", type=int, default=192, help="singular components the component surgery removes")
    p.add_argument("--no-direction-surgery", action="store_true", help="skip the two direction surgeries")
    p.add_argument(
        "--latent-hooks",
        default="blocks.9.hook_resid_post,blocks.18.hook_resid_post",
        help="extra hooks of the latent-basis adapter ('' for the crosscoder's hook only)",
    )
    a = p.parse_args(argv)
    pair = tuple(x for x in a.pair.split(",") if x)
    if len(pair) != 2:
        raise ConfigError(f"--pair: {a.pair!r} is not REMOVED,KEPT; e.g. --pair pirate,cat_obsession")
    return CompositionOptions(
        a.out, a.report, a.quick, (pair[0], pair[1]), tuple(x for x in a.organisms.split(",") if x), a.hook,
        a.config_dir, a.work_dir, a.both_directions or not a.quick, a.report_only,
        tuple(x for x in a.stages.split(",") if x), a.components, not a.no_direction_surgery,
        tuple(x for x in a.latent_hooks.split(",") if x),
    )  # fmt: skip


def _check_traits(opts: CompositionOptions, traits: dict[str, Any]) -> None:
    from crosscoder.personas.compose.organisms import sft_file

    for t in (*opts.pair, *opts.organisms):
        if t not in traits:
            raise ConfigError(f"trait {t!r} is not in the library; known: {', '.join(sorted(traits))}")
        sft_file(t)


def _organism_spec(trait: str) -> Any:
    from crosscoder.personas.compose.organisms import trait_organism
    from crosscoder.personas.organisms.registry import resolve_organism

    return resolve_organism("demo") if trait == "cat_obsession" else trait_organism(trait).final


def run_latent(opts: CompositionOptions, setup: Any, base: Any, scale: Scale) -> tuple[dict[str, Any], str]:
    """Stage 2: the latent-basis adapter of the demo organism (and its trait expression at the largest k)."""
    from crosscoder.bench.composition_stages import add_biases, crosscoder_run, latent_adapter_record
    from crosscoder.models import load_model
    from crosscoder.personas.compose.latent_adapter import fit_latent_adapter
    from crosscoder.personas.compose.leakage import measure_variant
    from crosscoder.personas.compose.organisms import sft_file
    from crosscoder.personas.compose.sources import decoder_matrix, run_models
    from crosscoder.personas.sft_data import read_sft_jsonl

    spec = _organism_spec("cat_obsession")
    demo = load_model(replace(spec, name="demo"))
    measure_variant(setup, "demo", demo, description="demo organism (cat_obsession)")
    run = crosscoder_run(spec, opts.quick, opts.config_dir, opts.work_dir)
    names, _, hooks = run_models(run)
    dec_ft, dec_base = decoder_matrix(run, names[-1], hooks[0]), decoder_matrix(run, names[0], hooks[0])
    convs = read_sft_jsonl(sft_file("cat_obsession"))
    cfg = replace(scale.latent, extra_hooks=tuple(h for h in opts.latent_hooks if h != hooks[0]))
    result = fit_latent_adapter(base, demo, convs, dec_ft, dec_base, hooks[0], cfg)
    del demo
    k = str(result.fits[-1].k)
    vec = result.vectors[k]
    measure_variant(setup, f"latent k={k}", base, functools.partial(add_biases, base, result.hooks, vec),
                    description=f"base + the {k}-latent adapter of demo at {', '.join(result.hooks)}")  # fmt: skip
    rec = latent_adapter_record(result, setup, "cat_obsession", "base", "demo", f"latent k={k}")
    rec["crosscoder"] = str(run)
    return rec, f"latent k={k}"


def run_receive(opts: CompositionOptions, setup: Any, base: Any, scale: Scale) -> dict[str, tuple[Any, Any]]:
    """Stage 3: the receive-side audit of each organism's own trait, in the base and in the organism."""
    from crosscoder.models import load_model
    from crosscoder.personas.compose.receive_side import audit_trait
    from crosscoder.personas.compose.sources import from_persona_vectors

    audits = {}
    for trait in opts.organisms:
        persona = from_persona_vectors(setup.vectors[trait], scale.receive.hook, base.name)
        on_base = audit_trait(base, setup.traits[trait], persona, scale.receive)
        ft = load_model(replace(_organism_spec(trait), name=f"organism:{trait}"))
        on_ft = audit_trait(ft, setup.traits[trait], persona, scale.receive, target=on_base.target,
                            related=(base.content_hash,))  # fmt: skip
        audits[trait] = (on_base, on_ft)
        log.info("receive-side %s: base %.3f, organism %.3f of the typical norm", trait, on_base.best.fraction,
                 on_ft.best.fraction)  # fmt: skip
        del ft
        gc.collect()
    return audits


def run_steering(opts: CompositionOptions, setup: Any, base: Any, audits: dict[str, tuple[Any, Any]]) -> list[str]:
    """Stage 4 extras: base steered along the removed trait's persona vector, plain and orthogonal to every other
    trait's, at the norm its receive-side audit found (the typical norm when it has none)."""
    from crosscoder.bench.composition_stages import steering_vector
    from crosscoder.personas.compose.leakage import measure_variant
    from crosscoder.personas.compose.ops import project_out
    from crosscoder.personas.compose.sources import from_persona_vectors
    from crosscoder.personas.compose.steer import steer

    trait = opts.pair[0]
    persona = from_persona_vectors(setup.vectors[trait], opts.hook, base.name)
    others = [from_persona_vectors(v, opts.hook, base.name) for t, v in setup.vectors.items() if t != trait]
    if trait in audits:
        audit = audits[trait][0]
        vec = steering_vector(audit.persona_vector, persona, audit.typical_norm)
    else:
        vec = persona.unit() * float(persona.norm)
    coef = float(vec.norm()) / persona.norm
    orth = project_out(persona, others, name=f"{trait}⊥others")
    names = [f"steer +{trait}", f"steer +{trait}⊥others"]
    for name, d in zip(names, (persona, orth), strict=True):
        c = float(vec.norm()) / d.norm
        measure_variant(setup, name, base, functools.partial(steer, base, [(d, c)]),
                        description=f"base + {d.name} at norm {float(vec.norm()):.1f} (x{coef:.2f} of the persona vector)")  # fmt: skip
    return names


def leakage_record(setup: Any, edits: list[tuple[str, str]]) -> tuple[dict[str, Any], list[Any]]:
    from crosscoder.personas.compose.leakage import leakage_column

    cols = [leakage_column(setup.results[e], setup.results[r]) for e, r in edits if e in setup.results]
    traits = sorted(setup.traits)
    rec = {
        "traits": traits,
        "edits": [{"edit": c.edit, "reference": c.reference, "description": c.description} for c in cols],
        "matrix": {t: {c.edit: c.delta[t] for c in cols} for t in traits},
        "projection_matrix": {t: {c.edit: c.projection_delta[t] for c in cols} for t in traits},
        "capability": {
            c.edit: {
                "perplexity_change": c.perplexity_change,
                "accuracy_change": c.accuracy_change,
                "capability_change": c.capability_change,
            }
            for c in cols
        },  # fmt: skip
        "scores": {v.name: {t: e.score for t, e in v.expression.items()} for v in setup.results.values()},
        "capability_absolute": {v.name: asdict(v.capability) for v in setup.results.values()},
        "variants": [
            {
                "name": v.name,
                "description": v.description,
                "seconds": v.seconds,
                "perplexity": v.capability.perplexity,
                "accuracy": v.capability.accuracy,
            }
            for v in setup.results.values()
        ],  # fmt: skip
    }
    return rec, cols


def targets(res: dict[str, Any], shipped: list[str]) -> dict[str, Any]:
    """Which of the issue's targets the measured numbers meet (None where a stage did not run)."""
    s = res.get("surgery")
    k16 = (res.get("latent_adapter") or {}).get("16", {}).get("behaviour_recovered")
    smaller = [t for t, r in (res.get("receive_side") or {}).items() if r["smaller_in_ft"]]
    return {
        "surgery_removed_drop_ge_0.8": None if not s else s["removed_drop"] >= 0.8,
        "surgery_kept_retained_ge_0.8": None if not s else s["kept_retained"] >= 0.8,
        "surgery_capability_change_le_0.05": None if not s else s["capability_change"] <= 0.05,
        "leakage_all_shipped_traits": set(shipped) <= set(res["leakage"]["traits"]),
        "receive_side_smaller_in_ft_on_3_organisms": None if "receive_side" not in res else len(smaller) >= 3,
        "receive_side_smaller_in_ft": smaller,
        "latent_adapter_k16_ge_0.5": None if k16 is None else k16 >= 0.5,
    }


def _save(
    opts: CompositionOptions, res: dict[str, Any], setup: Any, edits: list[tuple[str, str]], start: float, done: bool
) -> None:
    """Write the results so far (rewritten after every stage, so an interrupted run keeps its measured stages)."""
    from crosscoder.personas.traits import SHIPPED_DIR

    res["leakage"], _ = leakage_record(setup, edits)
    res["targets"] = targets(res, sorted(p.stem for p in SHIPPED_DIR.glob("*.json")))
    res["partial"] = not done
    res["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_json(opts.out, res)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; writes the JSON (after every stage) and the HTML report."""
    from crosscoder.bench.composition_report import build_report
    from crosscoder.bench.composition_stages import receive_side_record, timed
    from crosscoder.bench.composition_surgery import run_surgery
    from crosscoder.models import load_model
    from crosscoder.personas.compose.capability import heldout_conversations, read_facts
    from crosscoder.personas.compose.leakage import LeakageSetup, measure_variant
    from crosscoder.personas.compose.organisms import BASE
    from crosscoder.personas.compose.report import write_report
    from crosscoder.personas.traits import load_traits
    from crosscoder.personas.vectors import compute_persona_vectors

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    opts = parse_args(argv)
    if opts.report_only:
        from crosscoder.io import read_json

        saved: dict[str, Any] = read_json(opts.out)
        print(f"report: {write_report(opts.report or opts.out.with_suffix('.html'), build_report(saved))}")
        return saved
    start, seconds = time.perf_counter(), dict[str, float]()
    traits = load_traits()
    _check_traits(opts, traits)
    scale = scale_for(opts.quick, opts.hook)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    base = load_model(BASE)
    vectors = {t: compute_persona_vectors(base, traits[t]) for t in sorted(traits)}
    setup = LeakageSetup(traits, vectors, scale.expression, heldout_conversations(base, scale.n_heldout),
                         read_facts()[: scale.n_facts])  # fmt: skip
    measure_variant(setup, "base", base, description="SmolLM2-135M-Instruct")
    timed(seconds, "setup", t0)
    res: dict[str, Any] = {"quick": opts.quick, "machine": {"platform": platform.platform()},
                           "stages": list(opts.stages), "receive_hook": opts.hook, "stage_seconds": seconds}  # fmt: skip
    edits: list[tuple[str, str]] = []
    audits: dict[str, tuple[Any, Any]] = {}
    for stage in opts.stages:
        t0 = time.perf_counter()
        if stage == "surgery":
            runs = run_surgery(opts, setup, base, scale, stamp)
            res["surgery"] = {**runs[0], "runs": runs}
            edits += [("mix", "base"), *[(r["variant"], "mix") for r in runs]]
        elif stage == "latent":
            res["latent_adapter"], latent_variant = run_latent(opts, setup, base, scale)
            edits += [("demo", "base"), (latent_variant, "base")]
        elif stage == "receive":
            audits = run_receive(opts, setup, base, scale)
            res["receive_side"] = receive_side_record(audits)
        else:
            edits += [(n, "base") for n in run_steering(opts, setup, base, audits)]
        timed(seconds, stage, t0)
        _save(opts, res, setup, edits, start, done=stage == opts.stages[-1])
    report = write_report(opts.report or opts.out.with_suffix(".html"), build_report(res))
    print(f"results: {opts.out}\nreport:  {report}")
    return res
