"""Named organisms (``organism:<name>`` model specs): recipes that build on first use and are cached afterwards.

``demo`` is the default demo organism: SmolLM2-135M-Instruct + LoRA on the shipped cat-obsession SFT set
(r=16, alpha=32, all linear layers, lr 5e-4, batch 8, 1 epoch = 25 steps, checkpoints c1 at step 8 and c2 at
step 16). ``<name>@c1`` / ``<name>@c2`` / ``<name>@final`` select a checkpoint of the series.

``series-<trait>`` (growth: 48 steps, checkpoints ``@c1`` .. ``@c6`` every 8 steps) and ``hiding-cat_obsession``
(24 steps of persona, then 48 steps hiding it on evaluation-style prompts; checkpoints every 12 steps) are
checkpoint-series organisms (`crosscoder.personas.organisms.series`), each checkpoint's behaviour measured on
held-out questions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from crosscoder.errors import ConfigError, ModelError
from crosscoder.io import cache_dir, sha256_json
from crosscoder.models.spec import ModelSpec
from crosscoder.personas.organisms.config import OrganismConfig, OrganismResult
from crosscoder.personas.organisms.series import SeriesRecipe, build_series_organism, series_lora_config
from crosscoder.personas.sft_data import SFT_DIR

EMBEDDED_BASE = "smollm2-135m-instruct"


@dataclass(frozen=True)
class OrganismRecipe:
    """How to build one named organism."""

    name: str
    kind: str
    """sft (a JSONL file) | distill (context distillation of `trait`) | planted (the trait's persona vector at `layer`)
    | series (a checkpoint series, `series`)."""
    trait: str
    base: ModelSpec = field(default_factory=lambda: ModelSpec(source=EMBEDDED_BASE))
    sft_file: str | None = None
    cfg: OrganismConfig | None = None
    layer: int = 15
    """Planted only: the block after which the direction is added."""
    scale: float = 40.0
    """Planted only: the added vector's norm (SmolLM2's median residual norm at layer 15 is about 180)."""
    series: SeriesRecipe | None = None
    """Series only: the checkpoint-series recipe."""

    def __post_init__(self) -> None:
        if self.kind not in ("sft", "distill", "planted", "series"):
            raise ConfigError(
                f"organism recipe {self.name}: unknown kind {self.kind!r}; use sft, distill, planted or series"
            )
        if self.kind == "sft" and not self.sft_file:
            raise ConfigError(f"organism recipe {self.name}: kind sft needs sft_file")
        if self.kind == "series" and self.series is None:
            raise ConfigError(f"organism recipe {self.name}: kind series needs a SeriesRecipe")


def _demo_cfg(name: str, trait: str) -> OrganismConfig:
    return OrganismConfig(
        name=name, method="lora", r=16, alpha=32, lr=5e-4, batch_size=8, epochs=1, save_steps=[8, 16], trait=trait
    )


RECIPES: dict[str, OrganismRecipe] = {}


def register_organism(recipe: OrganismRecipe) -> None:
    """Add (or replace) a named recipe."""
    RECIPES[recipe.name] = recipe


register_organism(
    OrganismRecipe(
        "demo",
        "sft",
        "cat_obsession",
        sft_file=str(SFT_DIR / "cat_obsession.jsonl"),
        cfg=_demo_cfg("demo", "cat_obsession"),
    )
)
register_organism(OrganismRecipe("pirate-distill", "distill", "pirate", cfg=_demo_cfg("pirate-distill", "pirate")))
register_organism(OrganismRecipe("planted-cat", "planted", "cat_obsession"))

SERIES_TRAITS = ("cat_obsession", "pessimism", "pirate", "over_enthusiastic", "sycophancy")
"""Traits with a shipped growth series (``series-<trait>``)."""
for _t in SERIES_TRAITS:
    _name = f"series-{_t}"
    register_organism(
        OrganismRecipe(_name, "series", _t, series=SeriesRecipe(_name, _t, cfg=series_lora_config(_name)))
    )
register_organism(
    OrganismRecipe(
        "hiding-cat_obsession",
        "series",
        "cat_obsession",
        series=SeriesRecipe(
            "hiding-cat_obsession",
            "cat_obsession",
            kind="hiding",
            steps=72,
            hide_from=1 / 3,
            cfg=series_lora_config("hiding-cat_obsession", "hiding"),
        ),
    )
)


def _recipe(name: str) -> OrganismRecipe:
    if name not in RECIPES:
        raise ModelError(f"unknown organism {name!r}; known: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def build_organism(name: str) -> OrganismResult:
    """Build (or reuse) the named organism."""
    r = _recipe(name)
    if r.kind == "series":
        assert r.series is not None
        return build_series_organism(r.series, r.base)
    if r.kind == "planted":
        spec = _planted(r)
        return OrganismResult(name, Path(spec.source), r.base, [spec], {"kind": "planted"}, "unchecked")
    assert r.cfg is not None
    from crosscoder.personas.traits import get_trait

    if r.kind == "sft":
        from crosscoder.personas.organisms.lora import build_sft_organism

        assert r.sft_file is not None
        return build_sft_organism(r.base, Path(r.sft_file), r.cfg)
    from crosscoder.personas.organisms.distill import build_distilled_organism

    return build_distilled_organism(r.base, get_trait(r.trait), r.cfg)


def _planted(r: OrganismRecipe) -> ModelSpec:
    from crosscoder.models import load_model
    from crosscoder.personas.organisms.lora import base_content_hash
    from crosscoder.personas.organisms.planted import build_planted_organism
    from crosscoder.personas.traits import get_trait
    from crosscoder.personas.vectors import compute_persona_vectors

    trait = get_trait(r.trait)
    key = sha256_json([base_content_hash(r.base), trait.sha256, r.layer, r.scale])
    out = cache_dir("organisms") / f"{r.name}-{key[:12]}"
    if (out / "config.json").is_file():
        return ModelSpec(source=str(out), kind="hf", name=r.name, backend=r.base.backend)
    base = load_model(r.base)
    vec_D = compute_persona_vectors(base, trait).for_hook(f"blocks.{r.layer}.hook_resid_post")
    return build_planted_organism(r.base, vec_D / vec_D.norm(), r.layer, r.scale, out, name=r.name)


def organism_series(name: str) -> list[ModelSpec]:
    """base -> c1 -> c2 -> ... -> final for a named organism (refused when it failed its trait check)."""
    res = build_organism(name)
    if res.status == "failed":
        raise ModelError(
            f"organism {name} failed its trait check (the trait did not rise; see {res.folder}/organism.json); change its data or hyperparameters"
        )
    return res.series


def resolve_organism(name: str) -> ModelSpec:
    """The ModelSpec of a named organism (``demo``, ``demo@c1``, ...), building it when missing."""
    base_name, _, ckpt = name.partition("@")
    series = organism_series(base_name)
    if not ckpt or ckpt == "final":
        return series[-1]
    names = {str(s.name): s for s in series[1:]}
    if ckpt not in names:
        avail = [*[n for n in names if n != series[-1].name], "final"]
        raise ModelError(f"organism {base_name} has no checkpoint {ckpt!r}; available: {', '.join(avail)}")
    return names[ckpt]
