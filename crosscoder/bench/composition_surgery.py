"""Stage 1 of the composition benchmark: decoupling the two-persona organism by surgery.

Three surgeries of the organism's LoRA, each written as a new adapter and measured on held-out questions:

- ``components`` (the headline, chosen on dev data, see docs/COMPOSITION.md): the adapter's singular components that
  carry the removed trait's SFT conversations and not the kept trait's or the base model's own answers to SFT
  questions are removed (:mod:`crosscoder.personas.compose.component_surgery`);
- ``adapter`` / ``model`` scope direction surgery: per block, the removed trait's activation shift with the kept
  trait's projected out, taken out of the adapter's own residual writes (every block it reaches) or out of the
  writers' whole output (one direction per block).

Every text the surgeries see is training data (the shipped SFT sets and SFT questions); the scores come from the
traits' evaluation questions only.
"""

from __future__ import annotations

import gc
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from crosscoder.personas.compose.components import ComponentConfig

COMPONENT_TEXTS = 16
"""Conversations per text set of the component surgery (the size it was chosen with on dev data)."""

DIRECTION_RUNS = (("adapter", "reach"), ("model", "own"))
"""(scope, layer policy) of each direction surgery: the adapter's own writes with every direction reaching back to
block 0, and the writers' whole output, one direction per block."""


def component_run(
    base: Any, adapter: str, removed: str, kept: str, out: Path, n_texts: int, cfg: ComponentConfig
) -> tuple[str, float, int, int]:
    """Component surgery of `adapter`; returns (new adapter, share of components removed, removed, total)."""
    from crosscoder.models.hf import load_hf
    from crosscoder.personas.compose.component_surgery import ComponentTexts, component_surgery, plain_answers
    from crosscoder.personas.compose.organisms import BASE, sft_file
    from crosscoder.personas.sft_data import read_sft_jsonl

    texts = ComponentTexts(
        read_sft_jsonl(sft_file(removed))[:n_texts], read_sft_jsonl(sft_file(kept))[:n_texts],
        plain_answers(base, n_texts),
        labels={"removed": f"{sft_file(removed).name}[:{n_texts}]", "kept": f"{sft_file(kept).name}[:{n_texts}]",
                "plain": f"base answers to SFT questions[:{n_texts}]"},
    )  # fmt: skip
    res = component_surgery(adapter, out, load_hf(BASE), texts, cfg)
    return str(res.out), len(res.removed) / res.n_components, len(res.removed), res.n_components


def run_surgery(opts: Any, setup: Any, base: Any, scale: Any, stamp: str) -> list[dict[str, Any]]:
    """The two-persona organism and its surgeries, each variant measured; the component surgery's record first."""
    from crosscoder.bench.composition_stages import surgery_record
    from crosscoder.models import load_model
    from crosscoder.models.hf import resolve_folder
    from crosscoder.personas.compose.leakage import measure_variant
    from crosscoder.personas.compose.organisms import BASE, mix_organism, sft_file
    from crosscoder.personas.compose.shift import shift_directions, trait_shift_directions
    from crosscoder.personas.compose.surgery import SurgeryConfig, base_weight_loader, lora_surgery
    from crosscoder.personas.sft_data import read_sft_jsonl

    mix = mix_organism(opts.pair).final
    assert mix.adapter is not None
    model = load_model(replace(mix, name="mix"))
    measure_variant(setup, "mix", model, description=f"{opts.pair[0]} + {opts.pair[1]} organism")
    n = scale.extra["shift_conversations"]
    shifts = {}
    if opts.direction_surgery:
        shifts = {t: shift_directions(model, base, read_sft_jsonl(sft_file(t))[:n], f"shift-{t}", str(sft_file(t)))
                  for t in opts.pair}  # fmt: skip
    del model
    records = []
    pairs = [opts.pair, opts.pair[::-1]] if opts.both_directions else [opts.pair]
    for removed, kept in pairs:
        out = opts.work_dir / stamp / f"mix-minus-{removed}-components"
        cfg = ComponentConfig(n_components=opts.components, rounds=max(1, opts.components // 48))
        adapter, share, n_removed, total = component_run(base, mix.adapter, removed, kept, out, COMPONENT_TEXTS, cfg)
        name = f"surgery -{removed} (components)"
        _measure(setup, mix, adapter, name, f"mix, {n_removed} of {total} LoRA singular components removed")
        rec = surgery_record(setup, "base", "mix", name, removed, kept, (adapter, share, n_removed, 0))
        records.append({**asdict(rec), "scope": "components", "layers": "all", "variant": name,
                        "components": asdict(cfg)})  # fmt: skip
        if not shifts:
            continue
        dirs = trait_shift_directions(shifts[removed], shifts[kept])
        weights = base_weight_loader(resolve_folder(BASE)[0])
        for scope, layers in DIRECTION_RUNS:
            out = opts.work_dir / stamp / f"mix-minus-{removed}-{scope}"
            info = lora_surgery(mix.adapter, dirs, out, base_hash=base.content_hash,
                                config=SurgeryConfig(scope=scope, layers=layers), base_weights=weights)  # fmt: skip
            name = f"surgery -{removed} ({scope})"
            _measure(setup, mix, str(out), name, f"mix, {removed} shift removed: {scope} scope, {layers}")
            counts = (str(info.out), info.removed_fraction, len(info.edited), len(info.unedited_modules))
            rec = surgery_record(setup, "base", "mix", name, removed, kept, counts)
            records.append({**asdict(rec), "scope": scope, "layers": layers, "variant": name})
    return records


def _measure(setup: Any, mix: Any, adapter: str, name: str, description: str) -> None:
    from crosscoder.models import load_model
    from crosscoder.personas.compose.leakage import measure_variant

    edited = load_model(replace(mix, adapter=adapter, name=name))
    measure_variant(setup, name, edited, description=description)
    del edited
    gc.collect()
