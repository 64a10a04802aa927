"""Organisms the composition tools are measured on: single-trait SFT organisms and a two-persona organism.

The single-trait organisms use the recovery benchmark's recipe and cache names (``recovery-<trait>``: LoRA r 16,
alpha 32, lr 5e-4, batch 8, one epoch, all linear layers), so both benchmarks share one build. The two-persona
organism is the same recipe on a shuffled mix of two shipped SFT sets (all conversations of both, one epoch).
"""

from __future__ import annotations

import random
from pathlib import Path

from crosscoder.errors import ConfigError
from crosscoder.io import cache_dir, sha256_file, sha256_json
from crosscoder.models.spec import ModelSpec
from crosscoder.personas.organisms.config import OrganismConfig, OrganismResult
from crosscoder.personas.sft_data import SFT_DIR, read_sft_jsonl, write_sft_jsonl

BASE = ModelSpec(source="smollm2-135m-instruct", name="base")
"""The base model every composition organism is fine-tuned from."""


def sft_file(trait: str) -> Path:
    """The shipped SFT set of `trait` (a one-line error when the library ships none)."""
    path = SFT_DIR / f"{trait}.jsonl"
    if not path.is_file():
        shipped = sorted(p.stem for p in SFT_DIR.glob("*.jsonl"))
        raise ConfigError(f"trait {trait!r} has no shipped SFT set; pick one of {', '.join(shipped)}")
    return path


def organism_config(name: str, trait: str | None) -> OrganismConfig:
    """The recovery benchmark's LoRA recipe (one epoch of the SFT set), checked against `trait` when given."""
    from crosscoder.personas.traits import get_trait

    path = str(get_trait(trait).path) if trait else None
    return OrganismConfig(name=name, r=16, alpha=32, lr=5e-4, batch_size=8, epochs=1, trait=path)


def trait_organism(trait: str, base: ModelSpec = BASE) -> OrganismResult:
    """Build (or reuse) the single-trait SFT organism of `trait` (shared with the recovery benchmark)."""
    from crosscoder.personas.organisms.lora import build_sft_organism

    return build_sft_organism(base, sft_file(trait), organism_config(f"recovery-{trait}", trait))


def mixed_sft_file(traits: tuple[str, str], seed: int = 0) -> Path:
    """A shuffled mix of all conversations of two shipped SFT sets, written once into the cache (content-keyed)."""
    if len(set(traits)) != 2:
        raise ConfigError(f"a two-persona organism needs two different traits, got {traits}")
    files = [sft_file(t) for t in traits]
    key = sha256_json([[sha256_file(f) for f in files], seed])[:12]
    out = cache_dir("composition", "sft") / f"mix-{traits[0]}+{traits[1]}-{key}.jsonl"
    if not out.is_file():
        convs = [c for f in files for c in read_sft_jsonl(f)]
        random.Random(seed).shuffle(convs)
        write_sft_jsonl(out, convs)
    return out


def mix_organism(traits: tuple[str, str], base: ModelSpec = BASE) -> OrganismResult:
    """Build (or reuse) the two-persona organism: the single-trait recipe on both traits' SFT sets mixed."""
    from crosscoder.personas.organisms.lora import build_sft_organism

    name = f"compose-mix-{traits[0]}+{traits[1]}"
    return build_sft_organism(base, mixed_sft_file(traits), organism_config(name, None))
