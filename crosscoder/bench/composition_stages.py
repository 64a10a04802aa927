"""The stages of the composition benchmark (`crosscoder.bench.composition`): surgery on the two-persona organism,
the latent-basis adapter of the demo organism, and the receive-side audits. Each returns a JSON-ready record."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from crosscoder.io import sha256_json
from crosscoder.models.spec import ModelSpec
from crosscoder.personas.compose.directions import PersonaDirection
from crosscoder.personas.compose.expression import relative_change
from crosscoder.personas.compose.leakage import LeakageSetup, VariantResult

log = logging.getLogger(__name__)


@dataclass
class SurgeryRecord:
    """One surgery on the two-persona organism: remove `removed_trait`, keep `kept_trait`."""

    removed_trait: str
    kept_trait: str
    removed_drop: float
    """Share of the fine-tune's added expression of the removed trait that the surgery took away (1 - retained)."""
    kept_retained: float
    """Share of the fine-tune's added expression of the kept trait that is left."""
    capability_change: float
    """Larger of the relative perplexity change and the absolute accuracy change, against the unedited organism."""
    expression: dict[str, dict[str, float]]
    """Keyword rate of both traits over the answers to every trait's held-out questions, in base, organism and edited
    organism."""
    adapter: str
    removed_fraction: float
    """Direction surgery: share of the edited writes in the directions' span; component surgery: share of the
    adapter's singular components removed."""
    n_directions: int
    """Edited lora_B tensors (direction surgery) or removed singular components (component surgery)."""
    unedited_modules: int


def surgery_record(
    setup: LeakageSetup,
    base: str,
    organism: str,
    edited: str,
    removed: str,
    kept: str,
    counts: tuple[str, float, int, int],
) -> SurgeryRecord:
    """Score one surgery from the measured variants (names in `setup.results`); `counts`: (new adapter, removed
    fraction, edited tensors or components, unedited modules)."""
    from crosscoder.personas.compose.capability import capability_change

    r = setup.results
    score = {v: {t: _pooled(r[v].expression[t]) for t in (removed, kept)} for v in (base, organism, edited)}
    drop = 1.0 - relative_change(score[edited][removed], score[organism][removed], score[base][removed])
    kept_ret = relative_change(score[edited][kept], score[organism][kept], score[base][kept])
    cap = capability_change(r[edited].capability, r[organism].capability)
    return SurgeryRecord(removed, kept, drop, kept_ret, cap, score, *counts)


def _pooled(e: Any) -> float:
    return float(e.rate_all_answers) if e.rate_all_answers is not None else float(e.score)


def crosscoder_run(organism: ModelSpec, quick: bool, config_dir: Path, runs_root: Path) -> Path:
    """A base-vs-organism crosscoder (the recovery benchmark's recipe), trained once and reused (keyed by config)."""
    from crosscoder.bench.recovery import Organism, RecoveryOptions, _compose
    from crosscoder.pipeline import run_train

    opts = RecoveryOptions(kinds=["sft"], quick=quick, config_dir=config_dir)
    cfg = _compose(opts, Organism("composition", "sft", organism))
    key = sha256_json([asdict(organism), asdict(cfg.data), asdict(cfg.crosscoder), asdict(cfg.trainer)])[:12]
    run_dir = runs_root / f"xc-{key}"
    if (run_dir / "final" / "crosscoder.safetensors").is_file() and (run_dir / "run.json").is_file():
        log.info("reusing crosscoder %s", run_dir)
        return run_dir
    run_train(cfg, run_dir)
    return run_dir


def latent_adapter_record(
    result: Any, setup: LeakageSetup, trait: str, base: str, ft: str, adapted: str
) -> dict[str, Any]:
    """The benchmark's ``latent_adapter`` key: per k, behaviour recovered and the latents; plus the dense ceiling and
    the trait-expression share the k = max adapter recovers (keyword rate on held-out questions)."""
    out: dict[str, Any] = {
        "hook": result.hook,
        "hooks": result.hooks,
        "kl_base_heldout": result.kl_base_heldout,
        "n_atoms": result.n_atoms,
        "dense": {
            "behaviour_recovered": result.dense.behaviour_recovered,
            "norm_fraction": result.dense.vector_norm_fraction,
        },
    }
    for fit in result.fits:
        out[str(fit.k)] = {
            "behaviour_recovered": fit.behaviour_recovered,
            "kl_heldout": fit.kl_heldout,
            "norm_fraction": fit.vector_norm_fraction,
            "latents": [asdict(t) for t in fit.terms],
        }
    r = setup.results
    if all(v in r for v in (base, ft, adapted)):
        e = {v: r[v].expression[trait].score for v in (base, ft, adapted)}
        out["trait_expression"] = {"trait": trait, **e, "recovered": relative_change(e[adapted], e[ft], e[base]),
                                   "k": result.fits[-1].k}  # fmt: skip
    return out


def receive_side_record(audits: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """Per trait: the base and fine-tuned model's smallest vectors (fractions of the typical norm) and what they reach."""
    out: dict[str, Any] = {}
    for trait, (b, f) in audits.items():
        out[trait] = {
            "organism": f.model,
            "target": b.target,
            "norm_base": _finite(b.best.fraction),
            "norm_ft": _finite(f.best.fraction),
            "score_reached": {"base": b.best.score, "ft": f.best.score},
            "keyword_rate_reached": {"base": b.best.keyword_rate, "ft": f.best.keyword_rate},
            "score_unsteered": {"base": b.score_unsteered, "ft": f.score_unsteered},
            "method": {"base": b.best.method, "ft": f.best.method},
            "smaller_in_ft": _smaller(f.best, b.best),
            "detail": {"base": asdict(b), "ft": asdict(f)},
        }
    return out


def _finite(x: float) -> float | None:
    return None if math.isinf(x) or math.isnan(x) else x


def _smaller(ft: Any, base: Any) -> bool:
    if not ft.reached:
        return False
    return (not base.reached) or ft.norm < base.norm


@contextlib.contextmanager
def add_biases(model: Any, hooks: list[str], vectors_HD: torch.Tensor) -> Iterator[None]:
    """Add one vector per hook to a loaded model's residual stream inside the block (hooks removed on exit)."""
    from crosscoder.models.residual import edit_residual
    from crosscoder.personas.compose.steer import add_edit

    with contextlib.ExitStack() as stack:
        for hook, vec in zip(hooks, vectors_HD.reshape(len(hooks), -1), strict=True):
            stack.enter_context(edit_residual(model, hook, add_edit(vec)))
        yield


def timed(seconds: dict[str, float], name: str, t0: float) -> None:
    seconds[name] = round(time.perf_counter() - t0, 1)
    log.info("stage %s: %.0f s", name, seconds[name])


def steering_vector(found: Any, persona: PersonaDirection, typical: float) -> torch.Tensor:
    """The vector of a receive-side result (persona line), or the persona direction at the typical norm if unreached."""
    norm = found.norm if found.reached else typical
    return persona.unit() * norm


def variant_table(results: dict[str, VariantResult]) -> list[list[Any]]:
    return [
        [v.name, v.description, v.capability.perplexity, v.capability.accuracy, v.seconds] for v in results.values()
    ]
