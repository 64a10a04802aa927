"""Persona vectors: mean activation difference between trait-positive and trait-negative conditions, per layer.

Two sources (``source``):

- ``prompts``: each extraction question under each ``pos`` and each ``neg`` system prompt. The mean is taken
  over the tokens from the user's question to the end of the prompt (identical text in both conditions, so
  the difference is the system prompt's effect on how the model reads the question), or, with
  ``use_responses=True``, over the tokens of greedy answers generated under each condition.
- ``examples``: the trait's ``examples.pos`` / ``examples.neg`` texts as assistant turns, averaged over their
  tokens. Small models that ignore persona prompts still separate these.

``auto`` uses both when the trait has examples (the average of the two differences), else ``prompts``.
Vectors are cached under ``$CROSSCODER_CACHE/persona_vectors`` keyed by model hash, trait hash and options.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.errors import ConfigError, DataError
from crosscoder.io import cache_dir, load_checked_safetensors, save_checked_safetensors, sha256_json
from crosscoder.personas.activations import hook_index, span_means, span_token_mask
from crosscoder.personas.generate import GenerationConfig, chat_messages, generate_chat, render_prompt
from crosscoder.personas.traits import Trait

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel

log = logging.getLogger(__name__)

SOURCES = ("auto", "both", "prompts", "examples")
_VERSION = 1


@dataclass
class PersonaVectors:
    """Per-layer persona vectors of one trait in one model (row l+1 == blocks.{l}.hook_resid_post, row 0 == embeddings)."""

    trait: str
    model_hash: str
    vectors_LD: Float[Tensor, "n_layers_plus_1 d_model"]
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.vectors_LD.shape[0]) - 1

    def for_hook(self, hook: str) -> Float[Tensor, " d_model"]:
        """The vector for a residual hook name (``blocks.{l}.hook_resid_post`` or ``..._pre``)."""
        return self.vectors_LD[hook_index(hook, self.n_layers)]

    @property
    def best_hook(self) -> str:
        """The resid_post hook whose pos/neg projections separate best (largest effect size)."""
        return f"blocks.{int(self.meta['best_index']) - 1}.hook_resid_post"

    def save(self, path: str | Path) -> None:
        """Write as safetensors with trait, model hash, source, meta and a checksum in the header."""
        header = {
            "trait": self.trait,
            "model_hash": self.model_hash,
            "source": self.source,
            "meta": json.dumps(self.meta),
        }
        save_checked_safetensors(path, {"vectors_LD": self.vectors_LD.contiguous()}, metadata=header)

    @classmethod
    def load(cls, path: str | Path) -> PersonaVectors:
        """Read a file written by :meth:`save`, verifying its checksum."""
        tensors, header = load_checked_safetensors(path, what="persona-vector file")
        missing = [k for k in ("vectors_LD",) if k not in tensors] + [
            k for k in ("trait", "model_hash", "source", "meta") if k not in header
        ]
        if missing:
            raise DataError(
                f"persona-vector file {path} has no {missing[0]!r} (not written by PersonaVectors.save); "
                "delete it to recompute"
            )
        return cls(
            header["trait"], header["model_hash"], tensors["vectors_LD"], header["source"], json.loads(header["meta"])
        )


def _prompt_items(
    model: LoadedModel, trait: Trait, questions: list[str], side: str
) -> list[tuple[list[int], list[bool]]]:
    items = []
    for q in questions:
        for pair in trait.instruction:
            text = render_prompt(model.tokenizer, chat_messages(q, getattr(pair, side)))
            start = text.rfind(q)
            items.append(span_token_mask(model.tokenizer, text, start, len(text)))
    return items


def _response_items(
    model: LoadedModel, trait: Trait, questions: list[str], side: str, gen: GenerationConfig
) -> list[tuple[list[int], list[bool]]]:
    hf = getattr(model, "hf", None)
    if hf is None:
        raise ConfigError("use_responses: this model has no HF module to generate with; load it with load_model(spec)")
    convs = [chat_messages(q, getattr(pair, side)) for q in questions for pair in trait.instruction]
    answers = generate_chat(hf, model.tokenizer, convs, gen, desc=f"{trait.name}:{side}")
    items = []
    for conv, ans in zip(convs, answers, strict=True):
        prompt = render_prompt(model.tokenizer, conv)
        text = prompt + (ans or ".")
        items.append(span_token_mask(model.tokenizer, text, len(prompt), len(text)))
    return items


def _example_items(model: LoadedModel, texts: list[str]) -> list[tuple[list[int], list[bool]]]:
    items = []
    for ex in texts:
        text = str(model.tokenizer.apply_chat_template([{"role": "assistant", "content": ex}], tokenize=False))
        start = text.rfind(ex)
        items.append(span_token_mask(model.tokenizer, text, start, start + len(ex)))
    return items


def _diff_and_separation(pos_NLD: Tensor, neg_NLD: Tensor) -> tuple[Tensor, Tensor]:
    """Mean difference per layer, and the effect size (Cohen's d) of the projections on it."""
    diff_LD = pos_NLD.mean(0) - neg_NLD.mean(0)
    unit_LD = diff_LD / diff_LD.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    p_NL = torch.einsum("nld,ld->nl", pos_NLD, unit_LD)
    n_NL = torch.einsum("nld,ld->nl", neg_NLD, unit_LD)
    pooled_L = ((p_NL.var(0, unbiased=False) + n_NL.var(0, unbiased=False)) / 2).sqrt().clamp_min(1e-12)
    return diff_LD, (p_NL.mean(0) - n_NL.mean(0)) / pooled_L


def compute_persona_vectors(
    model: LoadedModel,
    trait: Trait,
    *,
    source: str = "auto",
    use_responses: bool = False,
    max_questions: int | None = None,
    generation: GenerationConfig | None = None,
    batch_size: int = 8,
    use_cache: bool = True,
) -> PersonaVectors:
    """Persona vectors of `trait` in `model` (a LoadedModel), `[n_layers + 1, d_model]`, cached on disk."""
    if source not in SOURCES:
        raise ConfigError(f"persona.source: unknown source {source!r}; use one of {', '.join(SOURCES)}")
    if source == "auto":
        source = "both" if trait.examples else "prompts"
    if source in ("both", "examples") and not trait.examples:
        raise ConfigError(f"persona.source: trait {trait.name} has no examples; use source=prompts")
    if max_questions is not None and max_questions < 1:
        raise ConfigError("persona.max_questions: must be >= 1")
    gen = generation or GenerationConfig(max_new_tokens=48, greedy=True)
    questions = trait.extract_questions[:max_questions]
    options = {"source": source, "use_responses": use_responses, "max_questions": max_questions}
    if use_responses:
        options["generation"] = vars(gen)
    key = sha256_json([_VERSION, model.content_hash, trait.sha256, options])
    path = cache_dir("persona_vectors") / f"{trait.name}-{key[:20]}.safetensors"
    if use_cache and path.is_file():
        try:
            cached = PersonaVectors.load(path)
            if cached.model_hash == model.content_hash and cached.meta.get("trait_sha256") == trait.sha256:
                return cached
        except DataError as err:
            log.warning("recomputing persona vectors: %s", err)

    diffs, seps, counts = [], [], {}
    if source in ("both", "prompts"):
        if use_responses:
            pos = span_means(
                model, _response_items(model, trait, questions, "pos", gen), batch_size=batch_size, desc="pv:pos"
            )
            neg = span_means(
                model, _response_items(model, trait, questions, "neg", gen), batch_size=batch_size, desc="pv:neg"
            )
        else:
            pos = span_means(model, _prompt_items(model, trait, questions, "pos"), batch_size=batch_size, desc="pv:pos")
            neg = span_means(model, _prompt_items(model, trait, questions, "neg"), batch_size=batch_size, desc="pv:neg")
        d, s = _diff_and_separation(pos, neg)
        diffs.append(d)
        seps.append(s)
        counts["prompts"] = [len(pos), len(neg)]
    if source in ("both", "examples"):
        assert trait.examples is not None
        pos = span_means(model, _example_items(model, trait.examples["pos"]), batch_size=batch_size, desc="pv:ex+")
        neg = span_means(model, _example_items(model, trait.examples["neg"]), batch_size=batch_size, desc="pv:ex-")
        d, s = _diff_and_separation(pos, neg)
        diffs.append(d)
        seps.append(s)
        counts["examples"] = [len(pos), len(neg)]
    vectors_LD = torch.stack(diffs).mean(0)
    sep_L = torch.stack(seps).mean(0)
    best = int(sep_L[1:].argmax()) + 1  # never the embedding row
    meta = {
        "trait_sha256": trait.sha256,
        "options": options,
        "counts": counts,
        "separation": [round(float(x), 4) for x in sep_L],
        "norms": [round(float(x), 4) for x in vectors_LD.norm(dim=-1)],
        "best_index": best,
        "model_name": getattr(model, "name", ""),
    }
    pv = PersonaVectors(trait.name, model.content_hash, vectors_LD, source, meta)
    pv.save(path)
    log.info("persona vectors %s (%s): best layer %s, separation %.2f", trait.name, source, pv.best_hook, sep_L[best])
    return pv
