"""Screening benchmark: persona vectors used to screen training data, predict a fine-tune's shift, and prevent it.

    python -m crosscoder.bench screening [--quick] [--out results/screening.json] [--traits a,b] [--shift-traits a]
                                         [--steer-traits a] [--strengths 0.025,0.05 | --alphas 1,2] [--n-train N]
                                         [--steps N] [--shares 0,0.5,1] [--stages S] [--hook H] [--run RUN]
    python -m crosscoder.bench screening --merge a.json b.json --out merged.json   (runs that split the work)

All on SmolLM2-135M-Instruct with every trait's persona vector (the base model's, default extraction options) at
one fixed hook, ``blocks.20.hook_resid_post`` (2/3 of the depth, as Chen et al. use layer 20 of 28; fixed before
any result was seen, never tuned on this benchmark). Data: crosscoder.bench.screening_data; measures:
crosscoder.bench.screening_eval.

1. ``screening``: per trait and contamination c in (5%, 10%, 25%), ``draws`` random mixtures of the trait's persona
   examples among neutral ones (the base's own answers, other prompts); every example is scored by its projection
   difference; ``auroc`` and ``precision_at_k`` (k = number of persona examples), mean over draws (min beside).
   ``auroc_raw`` ranks by the response projection without subtracting the base answer's. ``auroc_vs_other_traits``:
   the trait's persona examples against the other traits' persona examples on the same prompts.
2. ``shift``: per shift trait, LoRA fine-tunes (the demo recipe) on sets with persona share 0, 5, 10, 25, 50, 100%;
   ``shift_r`` = Pearson r between each set's mean projection difference and the trait expression after
   fine-tuning on it (screening_eval.expression; ``shift_r_keywords`` uses the keyword rate instead; ``shift_rho``
   is the Spearman rank correlation, which a single extreme point cannot carry).
3. ``steering``: per steer trait and strength s, the 100% fine-tune with preventative steering (α·v added at the
   hook during training only, α = s·R/‖v‖ so that every trait gets the same push relative to the residual norm R at
   the hook; crosscoder.bench.screening_steer). ``trait_drop`` = 1 − (steered − base)/(unsteered − base) expression: the share of the fine-tune's
   rise removed; ``capability_change`` = perplexity on held-out base answers, steered / unsteered − 1.

``--quick``: persona pool 30, 60 neutral examples per mixture, 5 draws, persona shares 0 / 50 / 100%, one shift and
one steer trait (cat_obsession), the same fine-tuning recipe (5 fine-tunes instead of 22).
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crosscoder.bench.screening_eval import format_table, targets
from crosscoder.bench.screening_steer import STEER_STRENGTHS, SteerScale, steering_stage
from crosscoder.errors import ConfigError
from crosscoder.io import atomic_write_json, sha256_json
from crosscoder.models.spec import ModelSpec

log = logging.getLogger(__name__)

BASE = ModelSpec(source="smollm2-135m-instruct", name="base")
HOOK = "blocks.20.hook_resid_post"
STAGES = ("screening", "shift", "steering")
FULL_SHARES = [0.0, 0.05, 0.10, 0.25, 0.5, 1.0]
SHIFT_TRAITS = ["cat_obsession", "deception", "hostility"]
"""The first three shipped traits in alphabetical order (a rule fixed before any result, not a choice)."""


@dataclass
class BenchOptions:
    """Settings of one benchmark run (``--quick`` shrinks the sizes, not the method)."""

    quick: bool = False
    out: Path = Path("results/screening.json")
    traits: list[str] = field(default_factory=list)
    """Traits screened (default: every shipped trait with an SFT set)."""
    shift_traits: list[str] = field(default_factory=list)
    steer_traits: list[str] = field(default_factory=list)
    steer_strengths: list[float] = field(default_factory=lambda: list(STEER_STRENGTHS))
    """Preventative-steering strengths ‖α·v‖ / R (R: the residual norm at the hook), the same for every trait
    (crosscoder.bench.screening_steer.STEER_STRENGTHS says why these two)."""
    alphas: list[float] = field(default_factory=list)
    """Raw coefficients α (α·v with the raw vector) instead of strengths; empty = use steer_strengths."""
    hook: str = HOOK
    contaminations: list[float] = field(default_factory=lambda: [0.05, 0.10, 0.25])
    shares: list[float] = field(default_factory=list)
    """Persona shares of the shift fine-tuning sets (empty: FULL_SHARES; quick: its 0, 50 and 100%)."""
    run: str | None = None
    """Crosscoder run whose labelled persona latents are scored too."""
    screen_only: bool = False
    """Only the screening stage (no fine-tunes); the same as stages=["screening"]."""
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    """Stages to run, in order: screening, shift, steering (steering needs no screening scores)."""
    n_persona_pool: int = 60
    n_mix_neutral: int = 120
    draws: int = 10
    n_train: int = 199
    """Fine-tuning set size: every shared prompt once (199), so 25 steps of 8 are one epoch (the demo recipe)."""
    steps: int = 25
    n_eval: int = 20
    eval_tokens: int = 64
    """Answer length for the trait expression: the shipped rewrites add their remark after two sentences."""
    answer_tokens: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.quick:  # smaller pools, three persona shares, one trait; the same fine-tuning recipe
            self.n_persona_pool, self.n_mix_neutral, self.draws, self.answer_tokens = 30, 60, 5, 48
            if not self.shares:
                self.shares = [s for s in FULL_SHARES if s in (0.0, 0.5, 1.0)]
        self.shares = self.shares or list(FULL_SHARES)
        if self.screen_only:
            self.stages = ["screening"]
        if not self.stages or any(st not in STAGES for st in self.stages):
            raise ConfigError(f"--stages {','.join(self.stages)}: pick from {','.join(STAGES)}")
        self.shift_traits = self.shift_traits or SHIFT_TRAITS[: 1 if self.quick else 3]
        self.steer_traits = self.steer_traits or SHIFT_TRAITS[: 1 if self.quick else 3]
        if len(self.shares) < 2 or any(not 0 <= s <= 1 for s in self.shares):
            raise ConfigError("--shares: give at least two persona shares in [0, 1]")
        if not (self.alphas or self.steer_strengths) or any(x <= 0 for x in [*self.alphas, *self.steer_strengths]):
            raise ConfigError("--strengths / --alphas: give at least one positive steering value")
        if self.n_train < 1 or self.steps < 1:
            raise ConfigError(f"--n-train {self.n_train} / --steps {self.steps}: both must be positive")


def _directions(base: Any, traits: dict[str, Any], hook: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from crosscoder.personas.activations import hook_index
    from crosscoder.personas.directions import vector_direction
    from crosscoder.personas.vectors import compute_persona_vectors

    dirs, info = {}, {}
    for name, trait in traits.items():
        pv = compute_persona_vectors(base, trait)
        dirs[name] = vector_direction(pv, hook, source=f"persona vectors of {name}")
        idx = hook_index(hook, pv.n_layers)
        info[name] = {"separation_at_hook": pv.meta["separation"][idx], "norm_at_hook": pv.meta["norms"][idx],
                      "best_hook": pv.best_hook, "best_separation": pv.meta["separation"][pv.meta["best_index"]]}  # fmt: skip
    return dirs, info


def _score_all(
    base: Any, data: Any, dirs: dict[str, Any], opts: BenchOptions, reader: Any
) -> dict[tuple[str, str], Any]:
    """ExampleScore per (tag, prompt): tag = a trait (its persona version) or 'neutral'. Without the screening
    stage only the shift stage's fine-tuning sets are scored."""
    from crosscoder.personas.generate import GenerationConfig
    from crosscoder.personas.screening import score_examples

    train_prompts = data.prompts[: opts.n_train] if "shift" in opts.stages else []
    pool = data.persona_pool if "screening" in opts.stages else []
    keys = [("neutral", q) for q in dict.fromkeys([*(data.neutral_pool if pool else []), *train_prompts])]
    keys += [(t, q) for t in dirs for q in pool]
    keys += [(t, q) for t in opts.shift_traits if t in dirs for q in train_prompts if q not in pool]
    convs = [data.neutral[q] if tag == "neutral" else data.persona[tag][q] for tag, q in keys]
    gen = GenerationConfig(max_new_tokens=opts.answer_tokens, greedy=True)
    scores = score_examples(base, convs, list(dirs.values()), reader=reader, gen=gen)
    return dict(zip(keys, scores, strict=True))


def _screening(
    data: Any, dirs: dict[str, Any], scores: dict[tuple[str, str], Any], opts: BenchOptions
) -> dict[str, Any]:
    from crosscoder.bench.screening_data import mixtures
    from crosscoder.bench.screening_eval import auroc, precision_at_k

    out: dict[str, Any] = {}
    for t_i, trait in enumerate(dirs):
        row: dict[str, Any] = {}
        for c_i, c in enumerate(opts.contaminations):
            mixes = mixtures(data, c, opts.n_mix_neutral, opts.draws, seed=opts.seed + 1000 * t_i + c_i)
            res: dict[str, list[float]] = {"auroc": [], "precision_at_k": [], "auroc_raw": [], "precision_at_k_raw": []}
            for mix in mixes:
                for field_name, suffix in (("projection_diff", ""), ("projection", "_raw")):
                    pos = [getattr(scores[(trait, q)], field_name)[trait] for q in mix.persona]
                    neg = [getattr(scores[("neutral", q)], field_name)[trait] for q in mix.neutral]
                    res["auroc" + suffix].append(auroc(pos, neg))
                    res["precision_at_k" + suffix].append(precision_at_k(pos, neg))
            row[f"{c:.2f}"] = {"n_persona": len(mixes[0].persona), "n_neutral": opts.n_mix_neutral,
                               **{k: sum(v) / len(v) for k, v in res.items()},
                               "auroc_min": min(res["auroc"]), "precision_at_k_min": min(res["precision_at_k"])}  # fmt: skip
        pos = [scores[(trait, q)].projection_diff[trait] for q in data.persona_pool]
        neg = [scores[(o, q)].projection_diff[trait] for o in dirs if o != trait for q in data.persona_pool]
        row["auroc_vs_other_traits"] = auroc(pos, neg)
        out[trait] = row
        log.info(
            "screening %s: AUROC %s", trait, {c: round(v["auroc"], 3) for c, v in row.items() if isinstance(v, dict)}
        )
    return out


def _organism(
    data: Any, trait: str | None, share: float, opts: BenchOptions, steer: float = 0.0, steer_tag: str = ""
) -> Any:
    from crosscoder.bench.screening_data import training_set, write_training_set
    from crosscoder.io import cache_dir, sha256_json
    from crosscoder.personas.organisms import OrganismConfig, build_sft_organism

    rows = training_set(data, trait, share, opts.n_train)
    tag = "neutral" if not trait or share == 0 else f"{trait}-{round(100 * share)}"
    path = cache_dir("bench_screening", "data") / f"{tag}-{sha256_json(rows)[:12]}.jsonl"
    write_training_set(data, trait, rows, path)
    name = f"scr-{tag}" + (f"-steer-{steer_tag}" if steer_tag else f"-steer{steer:g}" if steer else "")
    cfg = OrganismConfig(name=name, r=16, alpha=32, lr=5e-4, batch_size=8, max_steps=opts.steps, save_steps=[],
                         steer_alpha=steer, steer_trait=trait if steer else None, steer_hook=opts.hook if steer else None)  # fmt: skip
    t0 = time.perf_counter()
    res = build_sft_organism(BASE, path, cfg)
    log.info("organism %s ready in %.0f s (%s)", name, time.perf_counter() - t0, "reused" if res.reused else "trained")
    return res, rows


class _Evaluator:
    """Evaluates models on a trait (answers + base reading + perplexity), one model in memory at a time."""

    def __init__(self, base: Any, traits: dict[str, Any], dirs: dict[str, Any], data: Any, opts: BenchOptions) -> None:
        from crosscoder.bench.screening_data import held_out_questions
        from crosscoder.personas.generate import GenerationConfig
        from crosscoder.personas.screening import base_answers

        self.base, self.traits, self.dirs, self.opts = base, traits, dirs, opts
        self.gen = GenerationConfig(max_new_tokens=opts.eval_tokens, greedy=True)
        held = held_out_questions(data)
        answers = base_answers(base, [[{"role": "user", "content": q}] for q in held],
                               GenerationConfig(max_new_tokens=opts.answer_tokens, greedy=True))  # fmt: skip
        self.ppl_convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                          for q, a in zip(held, answers.values(), strict=True)]  # fmt: skip
        used = set(data.prompts)
        self.questions = {t: [q for q in tr.eval_questions if q not in used][: opts.n_eval] for t, tr in traits.items()}

    def __call__(self, spec: ModelSpec | None, trait: str, key: str) -> Any:
        from crosscoder.bench.screening_eval import evaluate
        from crosscoder.models.hf import load_hf

        model = self.base
        if spec is not None:
            hf = load_hf(spec)
            model = _HF(hf.model, hf.tokenizer)
        tr = self.traits[trait]
        return evaluate(model, self.base, tr, self.dirs[trait], self.questions[trait], self.gen, self.ppl_convs,
                        [key, tr.sha256, self.questions[trait], sha256_json(self.ppl_convs)])  # fmt: skip


@dataclass
class _HF:
    hf: Any
    tokenizer: Any


def _shift(
    data: Any, scores: dict[tuple[str, str], Any], ev: _Evaluator, opts: BenchOptions, out: dict[str, Any],
    save: Callable[[], None],
) -> None:  # fmt: skip
    """Fill `out` per shift trait (saving after every fine-tune, so a stopped run keeps its finished points)."""
    from crosscoder.bench.screening_eval import pearson, spearman

    for trait in opts.shift_traits:
        points: list[dict[str, Any]] = []
        out[trait] = {"datasets": points}
        for share in opts.shares:
            res, rows = _organism(data, trait, share, opts)
            diffs = [scores[(trait if is_p else "neutral", q)].projection_diff[trait] for q, is_p in rows]
            e = ev(res.final, trait, str(res.folder))
            points.append({"share": share, "mean_projection_diff": sum(diffs) / len(diffs), "expression": e.expression,
                           "keyword_rate": e.keyword_rate, "perplexity": e.perplexity, "organism": str(res.folder),
                           "train_seconds": res.meta.get("train_seconds"), "sample_answers": e.answers[:3]})  # fmt: skip
            log.info("shift %s %.0f%%: Δproj %.3f -> expression %.3f, keywords %s", trait, 100 * share,
                     points[-1]["mean_projection_diff"], e.expression, e.keyword_rate)  # fmt: skip
            x = [p["mean_projection_diff"] for p in points]
            kw = [p["keyword_rate"] if p["keyword_rate"] is not None else float("nan") for p in points]
            out[trait]["shift_r"] = pearson(x, [p["expression"] for p in points]) if len(points) > 1 else None
            out[trait]["shift_r_keywords"] = pearson(x, kw) if len(points) > 1 else None
            out[trait]["shift_rho"] = spearman(x, [p["expression"] for p in points]) if len(points) > 1 else None
            save()


def _steer_scale(base: Any, data: Any, opts: BenchOptions, result: dict[str, Any]) -> SteerScale:
    """R (unless raw alphas are given) and the steer traits' vector norms; recorded in `result`."""
    from crosscoder.bench.screening_steer import residual_norm

    convs = [data.neutral[q] for q in data.prompts[: opts.n_train]]
    r = residual_norm(base, convs, opts.hook) if not opts.alphas else None
    scale = SteerScale(r, {t: result["vectors"][t]["norm_at_hook"] for t in opts.steer_traits})
    result["steering_scale"] = {**asdict(scale), "resid_norm_source": f"median token norm (position 0 out) at the hook "
                                f"over the {len(convs)} neutral fine-tuning conversations",
                                "rule": "alpha = strength * resid_norm / vector_norm" if r else "raw --alphas"}  # fmt: skip
    return scale


def run(opts: BenchOptions) -> dict[str, Any]:
    """Run the benchmark; the result JSON is rewritten (atomically) after every stage."""
    from crosscoder.bench.screening_data import load_bench_data
    from crosscoder.models import load_model
    from crosscoder.personas.sft_data import SFT_DIR
    from crosscoder.personas.traits import get_trait

    t_start = time.perf_counter()
    names = sorted(
        {*(opts.traits or [p.stem for p in SFT_DIR.glob("*.jsonl")]), *opts.shift_traits, *opts.steer_traits}
    )
    traits = {n: get_trait(n) for n in names}
    result: dict[str, Any] = {"benchmark": "screening", "model": BASE.source, "hook": opts.hook,
                              "options": {k: v for k, v in asdict(opts).items() if k != "out"},
                              "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
                              "seconds": {}}  # fmt: skip
    stage_t = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal stage_t
        result["seconds"][name] = round(time.perf_counter() - stage_t, 1)
        result["seconds"]["total"] = round(time.perf_counter() - t_start, 1)
        result["targets"] = targets(result)
        atomic_write_json(opts.out, result)
        print(
            f"== {name} done in {result['seconds'][name]:.0f} s (total {result['seconds']['total']:.0f} s)", flush=True
        )
        stage_t = time.perf_counter()

    base = load_model(BASE)
    dirs, result["vectors"] = _directions(base, traits, opts.hook)
    data = load_bench_data(traits, opts.n_persona_pool, opts.seed)
    stage("vectors")
    reader = None
    if opts.run:
        from crosscoder.personas.xc_latents import LatentReader, load_run, persona_latents

        xc_run = load_run(opts.run)
        reader = LatentReader(xc_run, persona_latents(xc_run))
    if "screening" in opts.stages or "shift" in opts.stages:
        scores = _score_all(base, data, {t: dirs[t] for t in names}, opts, reader)
    if "screening" in opts.stages:
        result["screening"] = _screening(data, {t: dirs[t] for t in names}, scores, opts)
        stage("screening")

    def save() -> None:
        result["targets"] = targets(result)
        atomic_write_json(opts.out, result)

    if "shift" in opts.stages or "steering" in opts.stages:
        ev = _Evaluator(base, traits, dirs, data, opts)
    if "shift" in opts.stages:
        _shift(data, scores, ev, opts, result.setdefault("shift", {}), save)
        stage("shift")
    if "steering" in opts.stages:
        scale = _steer_scale(base, data, opts, result)
        save()
        steering_stage(data, ev, _organism, opts, result.setdefault("steering", {}), save, scale)
        stage("steering")
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m crosscoder.bench screening", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="smaller pools, shorter fine-tunes, one shift/steer trait")
    ap.add_argument("--out", type=Path, default=Path("results/screening.json"))
    ap.add_argument("--traits", default="", help="comma list of traits to screen (default: all with an SFT set)")
    ap.add_argument("--shift-traits", default="")
    ap.add_argument("--steer-traits", default="")
    ap.add_argument(
        "--strengths",
        default=",".join(f"{x:g}" for x in STEER_STRENGTHS),
        help="steering strengths ||alpha*v|| / residual norm at the hook, one per point",
    )
    ap.add_argument("--alphas", default="", help="raw steering coefficients instead of --strengths")
    ap.add_argument("--n-train", type=int, default=BenchOptions.n_train, help="fine-tuning set size")
    ap.add_argument("--steps", type=int, default=BenchOptions.steps, help="fine-tuning steps (batch 8)")
    ap.add_argument("--hook", default=HOOK)
    ap.add_argument("--run", help="crosscoder run: also score its labelled persona latents")
    ap.add_argument("--screen-only", action="store_true", help="skip the fine-tunes (shift and steering)")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma list of stages to run")
    ap.add_argument("--shares", default="", help="comma list of persona shares of the shift sets (e.g. 0,0.1,1)")
    ap.add_argument("--merge", nargs="+", type=Path, help="merge these result files into --out (no run)")
    a = ap.parse_args(argv)
    if a.merge:
        from crosscoder.bench.screening_merge import merge_results

        merged = merge_results(a.merge)
        atomic_write_json(a.out, merged)
        print(format_table(merged))
        print(f"results: {a.out}")
        return

    def split(s: str) -> list[str]:
        return [x for x in s.split(",") if x]

    opts = BenchOptions(quick=a.quick, out=a.out, traits=split(a.traits), shift_traits=split(a.shift_traits),
                        steer_traits=split(a.steer_traits), alphas=[float(x) for x in split(a.alphas)], hook=a.hook,
                        steer_strengths=[float(x) for x in split(a.strengths)], n_train=a.n_train, steps=a.steps,
                        run=a.run, screen_only=a.screen_only, stages=split(a.stages),
                        shares=[float(x) for x in split(a.shares)])  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run(opts)
    print(format_table(result))
    print(f"results: {opts.out}")
