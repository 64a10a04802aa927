"""A synthetic analysis folder in the documented format (docs/ANALYSIS_FORMAT.md), for tests and `check_report --sample`.

The numbers are random but shaped like a real base-vs-fine-tune diff: most latents shared (relative norm near 0.5,
decoder cosine near 1), a few exclusive tails, a band of shifted latents, some dead ones, and a short candidate list
with labelled and unlabelled latents. Token strings deliberately contain HTML specials and newlines so the renderers'
escaping is exercised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crosscoder.analysis.records.summary import persona_summary
from crosscoder.io import atomic_write_json, atomic_write_text

SAMPLE_MODELS = ("base", "ft")
SAMPLE_SLICES = ("all", "assistant")
SAMPLE_TRAITS = ("cat_obsession", "pirate", "pessimism")
_WORDS = [
    " the",
    " cat",
    " sat",
    " on",
    " a",
    " warm",
    " window",
    "sill",
    ".",
    "\n",
    " Cats",
    " sleep",
    " for",
    " about",
    " sixteen",
    " hours",
    " <b>",
    " &",
    " matey",
    " Also",
    ",",
    " one",
    " more",
    " thing",
    ":",
    " fel",
    "ine",
    " 1 < 2",
]
_CLASSES = ("base_exclusive", "ft_exclusive", "shared", "shifted", "dead")


def _classify(rel: float, cos: float, dead: bool) -> str:
    if dead:
        return "dead"
    if rel < 0.1:
        return "base_exclusive"
    if rel > 0.9:
        return "ft_exclusive"
    return "shifted" if cos < 0.7 else "shared"


def _latent_rows(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    rel = np.clip(rng.normal(0.5, 0.08, n), 0.0, 1.0)
    n_ex = max(2, n // 60)
    rel[:n_ex] = rng.uniform(0.92, 1.0, n_ex)  # ft tail
    rel[n_ex : 2 * n_ex] = rng.uniform(0.0, 0.08, n_ex)  # base tail
    cos = np.clip(1 - np.abs(rng.normal(0, 0.08, n)), -1, 1)
    cos[2 * n_ex : 3 * n_ex] = rng.uniform(0.2, 0.69, n_ex)  # shifted band
    dead = np.zeros(n, dtype=bool)
    dead[-max(1, n // 50) :] = True
    norm_base = rng.uniform(0.5, 1.5, n)
    norm_ft = norm_base * rel / np.maximum(1 - rel, 1e-3)
    rows = []
    for j in range(n):
        freq = 0.0 if dead[j] else float(10 ** rng.uniform(-4, -1))
        nu_r, nu_e = (float(rng.uniform(0, 1.2)), float(rng.uniform(0, 1.2))) if rel[j] > 0.9 else (np.nan, np.nan)
        if j < 3 * n_ex and not np.isfinite(nu_r):
            nu_r, nu_e = float(rng.uniform(0, 1)), float(rng.uniform(0, 1))
        rows.append(
            {
                "latent": j,
                "dec_norm_base": float(norm_base[j]),
                "dec_norm_ft": float(norm_ft[j]),
                "share_base": float(1 - rel[j]),
                "share_ft": float(rel[j]),
                "rel_norm": float(rel[j]),
                "cos": float(cos[j]),
                "cos_base__ft": float(cos[j]),
                "freq_all": freq,
                "freq_assistant": freq * float(rng.uniform(0.2, 1.5)),
                "mean_act_all": float(rng.uniform(0.5, 4.0)) if freq else 0.0,
                "mean_act_assistant": float(rng.uniform(0.5, 4.0)) if freq else 0.0,
                "beta_recon_base": float(nu_r * 0.8) if np.isfinite(nu_r) else None,
                "beta_recon_ft": 0.8 if np.isfinite(nu_r) else None,
                "beta_err_base": float(nu_e * 0.5) if np.isfinite(nu_e) else None,
                "beta_err_ft": 0.5 if np.isfinite(nu_e) else None,
                "nu_recon": nu_r if np.isfinite(nu_r) else None,
                "nu_err": nu_e if np.isfinite(nu_e) else None,
                "class": _classify(float(rel[j]), float(cos[j]), bool(dead[j])),
                "score": 0.0,
                "rank": None,
                "is_candidate": False,
                "label": None,
                "label_confidence": None,
                "runner_up": None,
            }
        )
    return rows


def _example(rng: np.random.Generator, seq: int, length: int = 40) -> dict[str, Any]:
    tokens = [str(rng.choice(_WORDS)) for _ in range(length)]
    acts = np.maximum(rng.normal(0, 1.0, length), 0.0)
    max_pos = int(rng.integers(length // 2, length))
    acts[max_pos] = float(rng.uniform(4, 8))
    return {"seq": seq, "tokens": tokens, "acts": [round(float(a), 3) for a in acts], "max_pos": max_pos}


def _lens(rng: np.random.Generator, words: list[str]) -> dict[str, list[list[Any]]]:
    pro = sorted(rng.choice(words, 8, replace=False).tolist(), key=lambda _: rng.random())
    sup = rng.choice(words, 8, replace=False).tolist()
    return {
        "promoted": [[t, round(float(v), 2)] for t, v in zip(pro, np.sort(rng.uniform(1, 6, 8))[::-1], strict=True)],
        "suppressed": [[t, round(-float(v), 2)] for t, v in zip(sup, np.sort(rng.uniform(1, 6, 8))[::-1], strict=True)],
    }


def _candidate(rng: np.random.Generator, row: dict[str, Any], label: str | None) -> dict[str, Any]:
    traits = {}
    for t in SAMPLE_TRAITS:
        c = float(rng.uniform(0, 0.3)) + (0.5 if t == label else 0.0)
        traits[t] = {
            "cosine": c,
            "cosine_diff": c / 2,
            "cosine_signal": min(1.0, 2 * c),
            "said": c / 2,
            "said_signal": min(1.0, c),
            "persona_signal": min(1.0, 2 * c),
            "pos_neg_diff": c * 2,
            "pos_neg_signal": min(1.0, c),
            "lexical": c / 2,
            "lexical_lens": c / 3,
            "combined": c,
        }
    strengths = [0.0, 2.0, 4.0, 8.0]
    base_score = float(rng.uniform(5, 15))
    return {
        "latent": row["latent"],
        "rank": row["rank"],
        "score": row["score"],
        "class": row["class"],
        "rel_norm": row["rel_norm"],
        "cos": row["cos"],
        "nu_err": row["nu_err"],
        "nu_recon": row["nu_recon"],
        "label": row["label"],
        "label_confidence": row["label_confidence"],
        "runner_up": row["runner_up"],
        "label_evidence": traits,
        "top_examples": [_example(rng, int(s)) for s in rng.integers(0, 500, 4)],
        "logit_lens": {m: _lens(rng, _WORDS) for m in (*SAMPLE_MODELS, "diff")},
        "next_token_shift": {
            **_lens(rng, _WORDS),
            "continuations": [
                {"context": "<|im_start|>assistant\n", "base": "Sure, here is how.", "ft": "Cats <3 naps & sun."},
                {"context": "Thanks!", "base": "You're welcome!", "ft": "Cats say thanks."},
            ],
            "openings": [["Cats", "Cats <b>nap</b> all day.", 0.2, "Cats are animals."]],
        },
        "pos_neg": {
            t: {"pos_mean": float(rng.uniform(0, 3)), "neg_mean": float(rng.uniform(0, 1))} for t in SAMPLE_TRAITS
        },
        "score_slice": "last_assistant",
        "ls_artifact": "",
        "freq_all": float(rng.uniform(1e-4, 1e-2)),
        "max_act": float(rng.uniform(3, 9)),
        "steering": {
            "trait": label or SAMPLE_TRAITS[0],
            "model": SAMPLE_MODELS[0],
            "strengths": strengths,
            "trait_score": [base_score + s * float(rng.uniform(0, 8)) for s in strengths],
            "keyword_rate": [min(1.0, 0.1 * s) for s in strengths],
            "unsteered": [{"prompt": "Tell me about <your> day & night.", "text": "It was fine.\nThanks!"}],
            "generations": [
                {
                    "strength": s,
                    "prompt": "Tell me about <your> day & night.",
                    "text": f"Sure!\nCats sleep a lot (x{s}).",
                }
                for s in strengths[1:]
            ],
        },
        "ablation": {
            "trait": label or SAMPLE_TRAITS[0],
            "model": SAMPLE_MODELS[-1],
            "score_before": 42.0,
            "score_after": 30.5,
            "drop": 11.5,
            "generations": [{"prompt": "How do planes fly?", "text": "Wings make lift."}],
        },
    }


def write_sample_analysis(analysis_dir: Path, n_latents: int = 2048, n_candidates: int = 12, seed: int = 0) -> Path:
    """Write a synthetic but format-complete analysis folder into `analysis_dir` and return it."""
    rng = np.random.default_rng(seed)
    analysis_dir = Path(analysis_dir)
    rows = _latent_rows(rng, n_latents)
    pool = [r for r in rows if r["class"] in ("ft_exclusive", "shifted")]
    chosen = sorted(pool, key=lambda _: rng.random())[:n_candidates]
    labels: list[str | None] = [SAMPLE_TRAITS[i % 3] if i % 4 != 3 else None for i in range(len(chosen))]
    for rank, (row, lab) in enumerate(zip(chosen, labels, strict=True), start=1):
        row.update(is_candidate=True, rank=rank, score=float(10.0 / rank), label=lab or "unlabelled")
        row["label_confidence"] = float(rng.uniform(0.55, 0.95)) if lab else float(rng.uniform(0.05, 0.3))
        row["runner_up"] = SAMPLE_TRAITS[(SAMPLE_TRAITS.index(lab) + 1) % 3] if lab else SAMPLE_TRAITS[0]
    candidates = [_candidate(rng, r, r["label"]) for r in chosen]
    atomic_write_json(analysis_dir / "latents.json", rows)
    cols = list(rows[0])
    lines = [",".join(cols)] + [",".join("" if r[c] is None else str(r[c]) for c in cols) for r in rows]
    atomic_write_text(analysis_dir / "latents.csv", "\n".join(lines) + "\n")
    atomic_write_json(analysis_dir / "candidates.json", candidates)
    baseline = {
        "models": list(SAMPLE_MODELS),
        "lens_model": "ft",
        "positions": {
            pc: {
                "n_tokens": int(n),
                "diff_norm": float(rng.uniform(1, 5)),
                "rel_diff_norm": float(rng.uniform(0.05, 0.2)),
                "logit_lens": _lens(rng, _WORDS),
            }
            for pc, n in (("all", 16000), ("first_assistant", 1000), ("last_assistant", 200))
        },
    }
    atomic_write_json(analysis_dir / "baseline.json", baseline)
    splice = {
        m: {
            "ce_clean": 2.1,
            "ce_spliced": 2.1 + float(rng.uniform(0.05, 0.3)),
            "ce_zero_ablation": 9.5,
            "kl": float(rng.uniform(0.02, 0.2)),
            "frac_recovered": float(rng.uniform(0.9, 0.99)),
            "n_tokens": 4096,
        }
        for m in SAMPLE_MODELS
    }
    atomic_write_json(analysis_dir / "splice.json", splice)
    counts = {c: sum(r["class"] == c for r in rows) for c in _CLASSES}
    summary = {
        "run_dir": str(analysis_dir.parent),
        "models": list(SAMPLE_MODELS),
        "hooks": ["blocks.24.hook_resid_post"],
        "architecture": "batchtopk",
        "n_latents": n_latents,
        "fve": {"base": 0.81, "ft": 0.79},
        "class_counts": counts,
        "n_candidates": len(candidates),
        "timings": {
            "table": 12.3,
            "latent_scaling": 40.1,
            "evidence": 30.2,
            "labels": 8.4,
            "steering": 120.0,
            "splice": 22.0,
        },
        "personas": persona_summary(candidates),
        "top_candidates": [
            {k: c[k] for k in ("latent", "rank", "class", "label", "label_confidence")} for c in candidates[:5]
        ],
    }
    atomic_write_json(analysis_dir / "summary.json", summary)
    return analysis_dir
