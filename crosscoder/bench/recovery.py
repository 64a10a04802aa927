"""Recovery benchmark: does the pipeline find personas whose ground truth is known?

    python -m crosscoder.bench recovery [--kinds planted,sft] [--traits a,b] [--trait-dir DIR] [--sft FILE:TRAIT]
                                        [--out PATH] [--quick] [--control]

For every organism (planted direction, SFT/LoRA, or context-distilled) it runs the same pipeline as `train.py` +
`analyze.py` (Hydra configs from `configs/`, composed with the demo defaults) and records one JSON object:
`trait`, `organism_kind`, `top1_label_correct`, `top5_label_correct`, `best_cosine_to_planted` (planted only: the
best cosine of any latent's ft decoder with the planted direction), `rank_of_first_correct` (model-diff rank),
`persona_rank_of_first_correct` (among labelled candidates only), `personas_found`, `fve_base`, `fve_ft`,
`n_ft_exclusive`, `control`, `seconds`; the label columns read the model-diff ranking. `--control` analyses SFT
organisms against a control fine-tune of the same recipe without the persona (`crosscoder.bench.recovery_control`).
Traits from `--trait-dir` are added to the shipped library (which stays as distractors); `--sft FILE:TRAIT` adds
fine-tuning sets from outside the repo. `--kinds null` runs the null pairs (the base with itself, the base with the
control fine-tune; records ``trait`` "self" / "control"): every persona they list is a false label, and their
candidates calibrate the label threshold (`python -m crosscoder.bench calibrate-labels`). Each record also lists
`wrong_personas` (the personas found other than the organism's trait), `wrong_before_right` and the top five
candidates' `descriptions`. `--sft-max-steps` and `--check-questions` shrink the SFT organisms' LoRA training and
trait check for a busy machine (say so with the results).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from crosscoder.bench.recovery_metrics import NULL_PAIRS, format_table, planted_cosines
from crosscoder.bench.recovery_options import RecoveryOptions, parse_args
from crosscoder.errors import ConfigError, DataError
from crosscoder.io import atomic_write_json, cache_dir, read_json
from crosscoder.models.spec import ModelSpec
from crosscoder.runs import RUNS_ROOT, run_tag

log = logging.getLogger(__name__)

BASE = ModelSpec(source="smollm2-135m-instruct", name="base")


@dataclass
class Organism:
    """One organism to recover: its trait, kind, model spec and (planted) ground-truth direction."""

    trait: str
    kind: str
    spec: ModelSpec
    direction_D: torch.Tensor | None = None
    build_seconds: float = 0.0


def _hook_layer(hook: str) -> int:
    parts = hook.split(".")
    if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit() or parts[2] != "hook_resid_post":
        raise ConfigError(f"data.hooks: recovery plants at a blocks.<L>.hook_resid_post hook, not {hook!r}")
    return int(parts[1])


def organism_plan(opts: RecoveryOptions, traits: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(trait, kind, SFT file or None) of every organism the options ask for, in run order; refuses unknown traits."""
    from crosscoder.personas.sft_data import SFT_DIR

    chosen = [t for t in opts.traits if t not in NULL_PAIRS] or sorted(traits)
    missing = [t for t in chosen if t not in traits]
    if missing:
        raise ConfigError(f"--traits: unknown trait {missing[0]!r}; known: {', '.join(sorted(traits))}")
    plan: list[tuple[str, str, str | None]] = []
    if "planted" in opts.kinds:
        plan += [(name, "planted", None) for name in chosen]
    if "sft" in opts.kinds:
        sets = [
            (str(p), p.stem)
            for p in sorted(SFT_DIR.glob("*.jsonl"))
            if p.stem in traits and (not opts.traits or p.stem in chosen)
        ]
        for path, trait in [*sets, *opts.sft]:
            if trait not in traits:
                raise ConfigError(f"--sft: trait {trait!r} is not in the library; add its JSON with --trait-dir")
            plan.append((trait, "sft", path))
    if "distilled" in opts.kinds:
        plan += [(name, "distilled", None) for name in chosen]
    if "null" in opts.kinds:
        nulls = [t for t in opts.traits if t in NULL_PAIRS] or list(NULL_PAIRS)  # --traits self / control: one of them
        plan += [(name, "null", None) for name in nulls]
    return plan


def build_organism(
    trait: str, kind: str, sft_file: str | None, traits: dict[str, Any], hook: str, opts: RecoveryOptions | None = None
) -> Organism:
    """Build (or reuse from the cache) one organism of the plan."""
    from crosscoder.personas.organisms.config import OrganismConfig

    t0 = time.perf_counter()
    if kind == "null":
        from crosscoder.bench.recovery_control import control_organism

        spec = BASE if trait == "self" else control_organism(BASE, traits, opts.sft_max_steps if opts else None)
        return Organism(trait, kind, spec, None, time.perf_counter() - t0)
    if kind == "planted":
        from crosscoder.personas.organisms.gated import plant_trait

        spec, direction = plant_trait(BASE, traits[trait], _hook_layer(hook), cache_dir("organisms", "recovery"))
        return Organism(trait, kind, spec, direction, time.perf_counter() - t0)
    if kind == "sft":
        from crosscoder.personas.organisms.lora import build_sft_organism

        assert sft_file is not None
        cfg = OrganismConfig(
            name=f"recovery-{trait}",
            r=16,
            alpha=32,
            lr=5e-4,
            batch_size=8,
            epochs=1,
            trait=str(traits[trait].path),
            max_steps=opts.sft_max_steps if opts else None,
            eval_questions=opts.check_questions if opts else 10,
        )
        res = build_sft_organism(BASE, Path(sft_file), cfg)
        return Organism(trait, kind, res.checkpoints[-1], None, time.perf_counter() - t0)
    from crosscoder.personas.organisms.distill import build_distilled_organism

    cfg = OrganismConfig(name=f"recovery-distill-{trait}", trait=str(traits[trait].path))
    res = build_distilled_organism(BASE, traits[trait], cfg)
    return Organism(trait, kind, res.checkpoints[-1], None, time.perf_counter() - t0)


def _compose_analysis(opts: RecoveryOptions, run_dir: Path, kind: str, traits: dict[str, Any]) -> Any:
    """The analysis config: configs/analyze.yaml (the demo's laptop budget) without steering and splice metrics;
    with `--control`, SFT organisms are analysed against the control fine-tune."""
    from crosscoder.config import compose_analyze

    overrides = [f"run_dir={run_dir}", "steering.enabled=false", "splice.enabled=false", "report.enabled=false",
                 "export.saelens=false", "export.wandb_mode=disabled", f"labels.trait_dirs=[{','.join(opts.trait_dirs)}]",
                 *opts.analyze_overrides]  # fmt: skip
    if opts.control and kind == "sft":
        from crosscoder.bench.recovery_control import control_override

        overrides.append(control_override(run_dir, BASE, traits))
    return compose_analyze(opts.config_dir, overrides)


def _compose(opts: RecoveryOptions, org: Organism) -> Any:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from crosscoder.config import TrainConfig, register_configs

    register_configs()
    overrides = [
        f"name=recovery-{org.kind}-{org.trait}",
        "logging=disabled",
        f"models.models.1.source={org.spec.source}",
        f"models.models.1.kind={org.spec.kind}",
        "models.models.1.name=ft",
    ]
    if org.spec.adapter:
        overrides.append(f"+models.models.1.adapter={org.spec.adapter}")
    if opts.quick:
        overrides += ["data.n_tokens=12000", "trainer.steps=300", "crosscoder.n_latents=1024"]
    overrides += opts.overrides
    with initialize_config_dir(config_dir=str(opts.config_dir.resolve()), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=overrides))
    assert isinstance(cfg, TrainConfig)
    return cfg


def _as_json(result: Any) -> SimpleNamespace:
    """An `AnalysisResult`'s candidates and summary as their files hold them (what `evaluate` reads)."""
    return SimpleNamespace(candidates=[c.to_json() for c in result.candidates], summary=result.summary.to_json())


def _wrong_before_right(found: list[str], trait: str) -> int:
    """How many wrong personas the labels list before the right one (all of them when it is missing)."""
    return found.index(trait) if trait in found else len(found)


def evaluate(org: Organism, run_dir: Path, analysis: Any) -> dict[str, Any]:
    """One benchmark record from a finished run and its analysis (candidates.json and summary.json content)."""

    from crosscoder.analysis.records.summary import persona_summary

    cands = analysis.candidates
    labels = [c.get("label") for c in cands]
    first = next((c.get("rank") for c in cands if c.get("label") == org.trait), None)
    personas = persona_summary(cands)
    fve = analysis.summary.get("fve", {})
    rec: dict[str, Any] = {
        "trait": org.trait,
        "organism_kind": org.kind,
        "top1_label_correct": bool(labels[:1] == [org.trait]),
        "top5_label_correct": org.trait in labels[:5],
        "best_cosine_to_planted": None,
        "rank_of_first_correct": first,
        "persona_rank_of_first_correct": next((p["persona_rank"] for p in personas if p["trait"] == org.trait), None),
        "personas_found": [p["trait"] for p in personas],
        "wrong_personas": [p["trait"] for p in personas if p["trait"] != org.trait],
        "wrong_before_right": _wrong_before_right([p["trait"] for p in personas], org.trait),
        "descriptions": [c.get("description", "") for c in cands[:5]],
        "fve_base": float(fve.get("base", float("nan"))),
        "fve_ft": float(fve.get("ft", float("nan"))),
        "n_ft_exclusive": int(analysis.summary.get("class_counts", {}).get("ft_exclusive", 0)),
        "control": bool(analysis.summary.get("control_activations")),
        "top_labels": labels[:5],
        "run_dir": str(run_dir),
    }
    if org.direction_D is not None:
        rec.update(planted_cosines(run_dir, org.direction_D, cands))
    return rec


def _planted_direction(rec: dict[str, Any], traits: dict[str, Any], hook: str, flag: str) -> torch.Tensor | None:
    """The planted direction of a planted record (rebuilt from the organism cache), None for other kinds."""
    from crosscoder.personas.organisms.gated import plant_trait

    if rec["organism_kind"] == "null":  # the null pairs have no trait
        return None
    if rec["trait"] not in traits:
        raise ConfigError(f"{flag}: trait {rec['trait']!r} of the results is not in the library; pass its --trait-dir")
    if rec["organism_kind"] != "planted":
        return None
    _, direction_D = plant_trait(BASE, traits[rec["trait"]], _hook_layer(hook), cache_dir("organisms", "recovery"))
    return direction_D


def rescore(path: Path, hook: str, traits: dict[str, Any]) -> list[dict[str, Any]]:
    """Recompute every record of a results file from its run folders' saved analysis (candidates.json,
    summary.json) and, for planted organisms, the planted cosines: after a change to the scoring, without
    re-running any analysis. `seconds` and the other recorded fields are kept."""
    data = read_json(path)
    for i, rec in enumerate(data["records"]):
        direction_D = _planted_direction(rec, traits, hook, "--rescore")
        run_dir = Path(rec["run_dir"])
        saved = SimpleNamespace(
            candidates=read_json(run_dir / "analysis" / "candidates.json"),
            summary=read_json(run_dir / "analysis" / "summary.json"),
        )
        org = Organism(rec["trait"], rec["organism_kind"], BASE, direction_D)
        data["records"][i] = {**rec, **evaluate(org, run_dir, saved)}
    atomic_write_json(path, data)
    return list(data["records"])


def reanalyze(opts: RecoveryOptions, hook: str, traits: dict[str, Any]) -> list[dict[str, Any]]:
    """Re-run the analysis (current code and configs) of every run in `opts.out` and recompute each record.

    Training is not repeated; `seconds` stays the original organism's. The file is rewritten after every run.
    """
    from crosscoder.analysis.run import run_analysis

    data = read_json(opts.out)
    for i, rec in enumerate(data["records"]):
        direction_D = _planted_direction(rec, traits, hook, "--reanalyze")
        run_dir = Path(rec["run_dir"])
        log.info("re-analysing %s (%s %s, %d of %d)", run_dir, rec["organism_kind"], rec["trait"], i + 1,
                 len(data["records"]))  # fmt: skip
        analysis = _as_json(run_analysis(_compose_analysis(opts, run_dir, rec["organism_kind"], traits)))
        new = evaluate(Organism(rec["trait"], rec["organism_kind"], BASE, direction_D), run_dir, analysis)
        data["records"][i] = {**new, "seconds": rec["seconds"], "reanalyzed": True}
        atomic_write_json(opts.out, data)
    return list(data["records"])


def run_one(opts: RecoveryOptions, org: Organism, traits: dict[str, Any]) -> dict[str, Any]:
    """Train and analyse one organism against the base; returns its record."""
    from crosscoder.analysis.run import run_analysis
    from crosscoder.pipeline import run_train

    t0 = time.perf_counter()
    cfg = _compose(opts, org)
    run_dir = RUNS_ROOT / cfg.name / f"{time.strftime('%Y%m%d-%H%M%S')}-{run_tag()}"
    run_train(cfg, run_dir)
    analysis = _as_json(run_analysis(_compose_analysis(opts, run_dir, org.kind, traits)))
    rec = evaluate(org, run_dir, analysis)
    rec["seconds"] = round(time.perf_counter() - t0 + org.build_seconds, 1)
    return rec


def earlier_records(opts: RecoveryOptions, hook: str) -> list[dict[str, Any]]:
    """The records of `opts.out` kept by `--resume` (refused if they were made at another hook); [] otherwise."""
    if not opts.out.is_file():
        return []
    previous = read_json(opts.out)
    n = len(previous.get("records", []))
    if not opts.resume:
        log.info("found %d earlier records in %s; they are replaced by this run (--resume keeps them)", n, opts.out)
        return []
    if previous.get("hook") != hook:
        raise ConfigError(
            f"--resume: {opts.out} was made at hook {previous.get('hook')!r}, this run uses {hook!r}; "
            "pass another --out or drop --resume"
        )
    log.info("resuming: keeping %d records of %s", n, opts.out)
    return list(previous["records"])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; writes the JSON records (partial results are kept after every organism)."""
    from crosscoder.data.config import DataConfig
    from crosscoder.personas.traits import load_traits

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    opts = parse_args(argv)
    traits = load_traits(opts.trait_dirs or None, include_shipped=True)
    hook = DataConfig().hooks[0]
    if opts.rescore or opts.reanalyze:
        if not opts.out.is_file():
            raise DataError(f"--out: {opts.out} not found; run the benchmark first or point --out at its results")
        rescored = reanalyze(opts, hook, traits) if opts.reanalyze else rescore(opts.out, hook, traits)
        print(format_table(rescored))
        return rescored
    records = earlier_records(opts, hook)
    done = {(r["trait"], r["organism_kind"]) for r in records}
    plan = [item for item in organism_plan(opts, traits) if item[:2] not in done]
    start = time.perf_counter()
    for i, (trait, kind, sft_file) in enumerate(plan):
        log.info("recovering %s organism for trait %s (%d of %d)", kind, trait, i + 1, len(plan))
        records.append(run_one(opts, build_organism(trait, kind, sft_file, traits, hook, opts), traits))
        atomic_write_json(opts.out, {"records": records, "hook": hook, "complete": False})
    atomic_write_json(
        opts.out, {"records": records, "hook": hook, "complete": True, "seconds": round(time.perf_counter() - start, 1)}
    )
    print(format_table(records))
    print(f"results: {opts.out}")
    return records
