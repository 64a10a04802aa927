"""The recovery benchmark's control fine-tune (`--control`): the SFT recipe without any persona.

Every shipped SFT set is the base model's own answers to the same everyday questions, trimmed to two sentences,
with one trait's prefix / suffix added. The control set is those answers with the rewrite stripped and nothing
added (`crosscoder.personas.sft_data.derive_sft_set` with no target trait), fine-tuned with the same LoRA recipe
as the persona organisms. Analysed with it (`crosscoder.analysis.stats.control`), a latent's score keeps only the
attribution the control does not share: what the persona added, not what any fine-tune on these answers changes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from crosscoder.io import cache_dir
from crosscoder.models.spec import ModelSpec

log = logging.getLogger(__name__)

SOURCE_TRAIT = "cat_obsession"
"""The shipped set the control answers are taken from (made with `--mode rewrite`; the others derive from it)."""


def control_sft_file(traits: dict[str, Any]) -> Path:
    """Write (or reuse) the control SFT set: the shipped cat set with its rewrite stripped."""
    from crosscoder.io import sha256_file
    from crosscoder.personas.sft_data import SFT_DIR, derive_sft_set, read_sft_jsonl, write_sft_jsonl

    source = SFT_DIR / f"{SOURCE_TRAIT}.jsonl"
    out = cache_dir("organisms", "recovery") / f"control-{sha256_file(source)[:12]}.jsonl"
    if not out.is_file():
        convs = derive_sft_set(read_sft_jsonl(source), traits[SOURCE_TRAIT], None, where=str(source))
        write_sft_jsonl(out, convs)
        log.info("wrote the control SFT set (%d conversations, no persona) to %s", len(convs), out)
    return out


def control_organism(base: ModelSpec, traits: dict[str, Any], max_steps: int | None = None) -> ModelSpec:
    """Build (or reuse) the control organism with the persona organisms' LoRA recipe (`max_steps`: as
    ``--sft-max-steps``); returns its spec."""
    from crosscoder.personas.organisms.config import OrganismConfig
    from crosscoder.personas.organisms.lora import build_sft_organism

    cfg = OrganismConfig(name="recovery-control", r=16, alpha=32, lr=5e-4, batch_size=8, epochs=1, max_steps=max_steps)
    return build_sft_organism(base, control_sft_file(traits), cfg).checkpoints[-1]


def control_override(run_dir: Path, base: ModelSpec, traits: dict[str, Any]) -> str:
    """The analysis override that points the run's analysis at the control's activations (harvested on demand)."""
    from crosscoder.analysis.stats.control import harvest_control

    return f"control_activations={harvest_control(run_dir, control_organism(base, traits))}"
