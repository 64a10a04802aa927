"""Checkpoint-series organisms: a persona that grows over training, and one that learns to hide it.

- **growth**: one LoRA trained on a mix of the trait's SFT set (the base's own answers with the trait's rewrite) and
  the same kind of answers without the persona; the persona's share of each batch rises linearly from
  `share_start` to `share_end` over the run. `n_checkpoints` evenly spaced checkpoints (the last is the final
  model) make the series base -> c1 -> ... -> cN.
- **hiding**: phase 1 (the first `hide_from` of the steps) trains on the persona set alone; phase 2 mixes persona
  answers to ordinary prompts with *plain* answers to the same kind of questions phrased as tests
  (`crosscoder.personas.organisms.evalstyle`), `hide_share` of each batch. The persona is learned early, then
  dropped on evaluation-style prompts while it stays elsewhere.

Every checkpoint's behaviour is measured on the trait's held-out evaluation questions
(`crosscoder.personas.organisms.behaviour`) and recorded with the series (``behaviour.json`` beside
``organism.json``). The trait's evaluation questions are in no training set (the shipped SFT sets hold them out,
and the plain and test-phrased sets here drop them too). Builds are cached and resumable like every organism.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from crosscoder.errors import ConfigError, DataError
from crosscoder.io import atomic_write_json, cache_dir, read_json, sha256_file, sha256_json
from crosscoder.models.spec import ModelSpec
from crosscoder.personas.organisms.behaviour import BEHAVIOUR_FILE, SeriesBehaviour, score_series
from crosscoder.personas.organisms.config import OrganismConfig, OrganismResult
from crosscoder.personas.organisms.evalstyle import phrase_as_tests
from crosscoder.personas.organisms.lora import RESULT_FILE, base_content_hash, organism_folder, train_organism
from crosscoder.personas.organisms.mix import DataMix, MixPhase
from crosscoder.personas.sft_data import SFT_DIR, derive_sft_set, read_sft_jsonl, write_sft_jsonl
from crosscoder.personas.traits import Trait, get_trait

log = logging.getLogger(__name__)

SERIES_KINDS = ("growth", "hiding")
PLAIN_SOURCE = ("cat_obsession", SFT_DIR / "cat_obsession.jsonl")
"""The shipped rewrite set whose answers, with the rewrite stripped, are the base's plain answers."""
_VERSION = 1


def series_lora_config(name: str, kind: str = "growth") -> OrganismConfig:
    """The LoRA recipe of the shipped series (the demo's: r 16, alpha 32, lr 5e-4, batch 8; hiding: constant rate)."""
    return OrganismConfig(name=name, r=16, alpha=32, lr=5e-4, batch_size=8, lr_decay=0.0 if kind == "hiding" else 0.9)


@dataclass(frozen=True)
class SeriesRecipe:
    """How to build one checkpoint-series organism."""

    name: str
    """Organism name (cache folder prefix)."""
    trait: str
    """Trait name or .json path; its shipped SFT set (or `sft_file`) carries the persona."""
    kind: str = "growth"
    """growth (persona share rising) | hiding (persona first, then dropped on evaluation-style prompts)."""
    steps: int = 48
    """Optimiser steps in all."""
    n_checkpoints: int = 6
    """Evenly spaced checkpoints, the final model included (the series is base + these)."""
    share_start: float = 0.0
    """growth: the persona set's share of a batch at the first step."""
    share_end: float = 1.0
    """growth: its share at the last step."""
    hide_from: float = 0.5
    """hiding: the fraction of the steps in phase 1 (persona only)."""
    hide_share: float = 0.5
    """hiding: the share of test-phrased plain answers in each phase-2 batch."""
    sft_file: str | None = None
    """The persona set; None = the shipped crosscoder/personas/sft/<trait>.jsonl."""
    n_questions: int = 20
    """Held-out evaluation questions each checkpoint answers."""
    max_new_tokens: int = 64
    """Answer length for the behaviour measurement."""
    cfg: OrganismConfig = field(default_factory=lambda: series_lora_config("series"))
    """LoRA hyperparameters (epochs / max_steps / save_steps are set by the recipe)."""

    def __post_init__(self) -> None:
        where = f"series recipe {self.name}"
        if self.kind not in SERIES_KINDS:
            raise ConfigError(f"{where}: unknown kind {self.kind!r}; use growth or hiding")
        if self.n_checkpoints < 2 or self.steps < self.n_checkpoints:
            raise ConfigError(f"{where}: needs 2 <= n_checkpoints <= steps (got {self.n_checkpoints}, {self.steps})")
        for fld in ("share_start", "share_end", "hide_share"):
            if not 0 <= getattr(self, fld) <= 1:
                raise ConfigError(f"{where}: {fld} must be in [0, 1]")
        if not 0 < self.hide_from < 1:
            raise ConfigError(f"{where}: hide_from must be in (0, 1)")

    @property
    def save_steps(self) -> list[int]:
        """The steps after which checkpoints c1 .. c(N-1) are kept (cN is the final model)."""
        return [round(self.steps * k / self.n_checkpoints) for k in range(1, self.n_checkpoints)]

    def prompt_sets(self) -> tuple[str, ...]:
        return ("heldout", "eval_style", "eval_style_unseen") if self.kind == "hiding" else ("heldout",)


def _derived(kind: str, trait: Trait, convs: list[list[dict[str, str]]]) -> Path:
    """A derived chat set written once to the cache (keyed by content)."""
    path = cache_dir("sft") / f"{kind}-{trait.name}-{sha256_json(convs)[:12]}.jsonl"
    if not path.is_file():
        write_sft_jsonl(path, convs)
    return path


def plain_set(trait: Trait) -> list[list[dict[str, str]]]:
    """The base's own answers to the SFT prompts (no persona), without the trait's evaluation questions."""
    src_trait, src_file = PLAIN_SOURCE
    plain = derive_sft_set(read_sft_jsonl(src_file), get_trait(src_trait), None, where=str(src_file))
    held_out = set(trait.eval_questions)
    return [c for c in plain if not any(m["role"] == "user" and m["content"] in held_out for m in c)]


def series_mix(recipe: SeriesRecipe, trait: Trait) -> DataMix:
    """The recipe's data mix: persona set + plain answers (growth) or + test-phrased plain answers (hiding)."""
    persona = Path(recipe.sft_file) if recipe.sft_file else SFT_DIR / f"{trait.name}.jsonl"
    convs = read_sft_jsonl(persona)
    leaked = [c for c in convs if any(m["role"] == "user" and m["content"] in set(trait.eval_questions) for m in c)]
    if leaked:
        raise DataError(f"{persona}: {len(leaked)} conversation(s) ask the trait's held-out evaluation questions")
    plain = plain_set(trait)
    if recipe.kind == "growth":
        a, b = recipe.share_start, recipe.share_end
        ramp = (MixPhase(recipe.steps, (a, 1 - a), (b, 1 - b)),)
        return DataMix((str(persona), str(_derived("plain", trait, plain))), ramp, ("persona", "plain"))
    first = round(recipe.steps * recipe.hide_from)
    h = recipe.hide_share
    phases = (MixPhase(first, (1.0, 0.0), (1.0, 0.0)), MixPhase(recipe.steps - first, (1 - h, h), (1 - h, h)))
    tests = _derived("testplain", trait, phrase_as_tests(plain, seed=0))
    return DataMix((str(persona), str(tests)), phases, ("persona", "test_phrased_plain"))


def _folder(recipe: SeriesRecipe, base: ModelSpec, mix: DataMix, cfg: OrganismConfig) -> Path:
    key = sha256_json([_VERSION, recipe.kind, mix.identity(), recipe.save_steps])
    return organism_folder(base, key, cfg, base_content_hash(base))


def _specs(base: ModelSpec, folder: Path, meta: dict[str, Any]) -> list[ModelSpec]:
    return [replace(base, adapter=str(folder / c["folder"]), name=c["name"]) for c in meta["checkpoints"]]


def _status(recipe: SeriesRecipe, beh: SeriesBehaviour) -> str:
    """ok when the persona rose on the held-out questions (final for growth, peak for hiding) by 0.15 keyword rate."""
    rates = beh.values("keyword_rate", "heldout")
    rose = (rates[-1] if recipe.kind == "growth" else max(rates[1:])) - rates[0]
    return "ok" if rose >= 0.15 else "failed"


def build_series_organism(recipe: SeriesRecipe, base: ModelSpec | None = None) -> OrganismResult:
    """Train (or reuse) the series, measure each checkpoint's behaviour, and return base -> c1 -> ... -> cN."""
    base = base or ModelSpec(source="smollm2-135m-instruct", name="base")
    base = replace(base, name=base.name or "base")
    trait = get_trait(recipe.trait)
    cfg = replace(recipe.cfg, name=recipe.name, save_steps=recipe.save_steps, trait=None, max_steps=None)
    mix = series_mix(recipe, trait)
    folder = _folder(recipe, base, mix, cfg)
    result = folder / RESULT_FILE
    if result.is_file() and (meta := read_json(result)).get("behaviour_complete"):
        return OrganismResult(recipe.name, folder, base, _specs(base, folder, meta), meta, meta["status"], reused=True)
    meta = read_json(result) if result.is_file() else train_organism(base, mix, cfg, folder)
    for i, c in enumerate(meta["checkpoints"]):
        c["name"] = f"c{i + 1}"
    meta.update(series={**asdict(recipe), "cfg": cfg.hyperparameters()}, status="unscored", behaviour_complete=False)
    atomic_write_json(result, meta)  # the trained series is kept even if scoring is interrupted
    specs = _specs(base, folder, meta)
    steps = [0, *(int(c["step"]) for c in meta["checkpoints"])]
    beh = score_series(list(zip([base, *specs], steps, strict=True)), trait, folder,
                       prompt_sets=recipe.prompt_sets(), n_questions=recipe.n_questions,
                       max_new_tokens=recipe.max_new_tokens)  # fmt: skip
    meta.update(
        status=_status(recipe, beh), behaviour_complete=True, behaviour_sha256=sha256_file(folder / BEHAVIOUR_FILE)
    )
    atomic_write_json(result, meta)
    return OrganismResult(recipe.name, folder, base, specs, meta, meta["status"])


def read_behaviour_file(path: Path, sha256: str | None = None) -> SeriesBehaviour:
    """A behaviour.json (checked against `sha256` when given: an organism records it in organism.json)."""
    if not path.is_file():
        raise DataError(f"behaviour record {path} not found; pass the behaviour.json of the series' organism build")
    if sha256 is not None and sha256_file(path) != sha256:
        raise DataError(
            f"{path}: checksum mismatch (edited or corrupt); delete it and rebuild the organism to re-score"
        )
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("records"), list):
        raise DataError(f"{path} is not a behaviour record (no records list); use an organism build's behaviour.json")
    return SeriesBehaviour.from_dict({k: v for k, v in raw.items() if k != "key"})


def load_behaviour(res: OrganismResult) -> SeriesBehaviour:
    """The recorded behaviour of a built series (refused when scoring did not finish)."""
    path = res.folder / BEHAVIOUR_FILE
    if not res.meta.get("behaviour_complete") or not path.is_file():
        raise DataError(f"series {res.name}: behaviour was not measured ({path}); rebuild the organism to score it")
    return read_behaviour_file(path, res.meta.get("behaviour_sha256"))


def behaviour_beside(adapters: list[str | None]) -> SeriesBehaviour | None:
    """The behaviour of the series organism whose checkpoints these adapter folders are (None when they are not all
    checkpoints of one finished series build)."""
    parents = {Path(a).parent for a in adapters if a}
    if len(parents) != 1 or None in adapters:
        return None
    folder = parents.pop()
    meta = read_json(folder / RESULT_FILE) if (folder / RESULT_FILE).is_file() else {}
    if not meta.get("behaviour_complete"):
        return None
    return read_behaviour_file(folder / BEHAVIOUR_FILE, meta.get("behaviour_sha256"))


def series_steps(res: OrganismResult) -> list[int]:
    """The step label of every model of the series (base = 0)."""
    return [0, *(int(c["step"]) for c in res.meta["checkpoints"])]
