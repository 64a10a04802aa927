"""Training-data screening: which SFT examples would push a model along a persona direction (Chen et al. 2025).

    python -m crosscoder.personas.screening --model smollm2-135m-instruct --data sft.jsonl --trait pirate --out DIR

For each example and direction u at hook h, all read by the model that is about to be fine-tuned:

- ``projection``: the mean of ⟨x_t, u⟩ over the tokens of the example's assistant turns;
- ``base_projection``: the same over the model's *own* greedy answer to the same prompt (the conversation up to
  each assistant turn; answers generated once and cached under ``$CROSSCODER_CACHE/base_answers``);
- ``projection_diff`` = projection − base_projection: how far the example's response sits along the persona
  direction beyond what the model would have said anyway. Ranked highest first, this is the screen.

With a crosscoder run, each labelled persona latent adds ``latent`` (its mean activation over the response tokens,
read with the model's activations in every encoder slot) and ``latent_diff`` (minus the same over the base answer).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from crosscoder.errors import DataError
from crosscoder.io import atomic_write_json, cache_dir, read_json, sha256_json
from crosscoder.personas.directions import Direction, check_directions, lineage_hashes
from crosscoder.personas.generate import GenerationConfig, generate_chat
from crosscoder.personas.sft_data import trim_to_sentence
from crosscoder.personas.tokens import Message, chat_tokens, hook_acts
from crosscoder.personas.xc_latents import LatentReader

log = logging.getLogger(__name__)


@dataclass
class ExampleScore:
    """The screening scores of one SFT example."""

    line: int
    """1-based line of the example in its file (or position in the list)."""
    prompt: str
    """The user message before the first assistant turn."""
    response: str
    """The assistant turns, joined by blank lines."""
    projection: dict[str, float]
    base_projection: dict[str, float]
    projection_diff: dict[str, float]
    latent: dict[str, float] = field(default_factory=dict)
    latent_diff: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _prefix_key(prefix: list[Message]) -> str:
    return sha256_json(prefix)


def base_answers(
    model: Any, prefixes: list[list[Message]], gen: GenerationConfig | None = None, *, use_cache: bool = True
) -> dict[str, str]:
    """The model's own greedy answer to each conversation prefix (cut at its last complete sentence), keyed by
    :func:`_prefix_key`; generated once per model and generation config, cached on disk."""
    gen = gen or GenerationConfig(max_new_tokens=64, greedy=True)
    path = cache_dir("base_answers") / f"{model.content_hash[:16]}-{sha256_json(vars(gen))[:12]}.json"
    cached: dict[str, str] = {}
    if use_cache and path.is_file():
        try:
            raw = read_json(path)
            cached = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        except DataError as err:
            log.warning("regenerating base answers: %s", err)
    todo: dict[str, list[Message]] = {}
    for p in prefixes:
        key = _prefix_key(p)
        if key not in cached:
            todo[key] = p
    if todo:
        if getattr(model, "hf", None) is None:
            raise DataError("base answers: the model has no HF module to generate with; load it with load_model")
        answers = generate_chat(model.hf, model.tokenizer, list(todo.values()), gen, desc="base answers")
        for key, ans in zip(todo, answers, strict=True):
            cached[key] = trim_to_sentence(ans, min_chars=1) or ans or "."
        atomic_write_json(path, cached)
    return {_prefix_key(p): cached[_prefix_key(p)] for p in prefixes}


def _turn_prefixes(conv: list[Message]) -> list[list[Message]]:
    """The conversation up to (not including) each assistant turn."""
    return [conv[:i] for i, m in enumerate(conv) if m["role"] == "assistant"]


@dataclass
class _Item:
    ids: list[int]
    mask: list[bool]


def _items(model: Any, convs: list[list[Message]], *, last_only: bool = False) -> list[_Item]:
    """Token ids and the mask of every assistant turn (or only the last message, for the model's own answers)."""
    out = []
    for conv in convs:
        toks = chat_tokens(model.tokenizer, conv)
        mask = toks.mask(("assistant",), turns={len(conv) - 1} if last_only else None)
        mask[0] = False
        if not any(mask):
            raise DataError("a conversation has no assistant tokens to score; check the dataset")
        out.append(_Item(toks.ids, mask))
    return out


def _span_scores(
    model: Any, items: list[_Item], directions: list[Direction], reader: LatentReader | None, desc: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Per item: token-sum of projections [N, K], token-sum of latent activations [N, J], token count [N]."""
    hooks = sorted({d.hook for d in directions} | (set(reader.run.hooks) if reader else set()))
    n_lat = len(reader.latents) if reader else 0
    proj_NK, lat_NJ, cnt_N = (
        torch.zeros(len(items), len(directions)),
        torch.zeros(len(items), n_lat),
        torch.zeros(len(items)),
    )
    for i, acts in hook_acts(model, [it.ids for it in items], hooks, desc=desc):
        m_T = torch.tensor(items[i].mask)
        proj_NK[i] = torch.stack([(acts[d.hook][m_T] @ d.unit_D).sum() for d in directions])
        if reader is not None:
            lat_NJ[i] = reader.activations({h: acts[h][m_T] for h in reader.run.hooks}).sum(0)
        cnt_N[i] = m_T.sum()
    return proj_NK, lat_NJ, cnt_N


def score_examples(
    model: Any,
    convs: list[list[Message]],
    directions: list[Direction],
    *,
    reader: LatentReader | None = None,
    lines: list[int] | None = None,
    gen: GenerationConfig | None = None,
    allow_other_model: bool = False,
) -> list[ExampleScore]:
    """Screening scores of every conversation (see the module docstring), in input order."""
    check_directions(model, directions, allow_other_model=allow_other_model)
    if reader is not None:
        reader.check_model(model, lineage_hashes(model))
    lines = lines or list(range(1, len(convs) + 1))
    prefixes = {_prefix_key(p): p for conv in convs for p in _turn_prefixes(conv)}
    answers = base_answers(model, list(prefixes.values()), gen)
    keys = list(prefixes)
    base_convs = [[*prefixes[k], {"role": "assistant", "content": answers[k]}] for k in keys]
    ex_p, ex_l, ex_n = _span_scores(model, _items(model, convs), directions, reader, "screen:data")
    b_p, b_l, b_n = _span_scores(model, _items(model, base_convs, last_only=True), directions, reader, "screen:base")
    row = {k: i for i, k in enumerate(keys)}
    names = [d.name for d in directions]
    lat_names = [
        f"latent {pl.latent}" + (f": {pl.label}" if pl.label else "") for pl in (reader.latents if reader else [])
    ]
    out = []
    for n, conv in enumerate(convs):
        idx = [row[_prefix_key(p)] for p in _turn_prefixes(conv)]
        bp = b_p[idx].sum(0) / b_n[idx].sum()
        bl = b_l[idx].sum(0) / b_n[idx].sum()
        ep, el = ex_p[n] / ex_n[n], ex_l[n] / ex_n[n]
        first_user = next((m["content"] for m in conv if m["role"] == "user"), "")
        response = "\n\n".join(m["content"] for m in conv if m["role"] == "assistant")
        out.append(ExampleScore(
            lines[n], first_user, response,
            {k: float(v) for k, v in zip(names, ep, strict=True)},
            {k: float(v) for k, v in zip(names, bp, strict=True)},
            {k: float(v) for k, v in zip(names, ep - bp, strict=True)},
            {k: float(v) for k, v in zip(lat_names, el, strict=True)},
            {k: float(v) for k, v in zip(lat_names, el - bl, strict=True)},
        ))  # fmt: skip
    return out


def rank(scores: list[ExampleScore], key: str, field_name: str = "projection_diff") -> list[ExampleScore]:
    """Examples sorted by one score, highest first (ties keep file order)."""
    values = [getattr(s, field_name) for s in scores]
    if not values or key not in values[0]:
        known = ", ".join(values[0]) if values else "none"
        raise DataError(f"screening: no score named {key!r} in {field_name}; known: {known}")
    return sorted(scores, key=lambda s: -getattr(s, field_name)[key])


if __name__ == "__main__":
    from crosscoder.errors import run_cli
    from crosscoder.personas.screening_report import main

    run_cli(main)
