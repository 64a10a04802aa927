"""What a trait looks like, from its file alone: a model's answers to the trait's questions under its pos and neg
instructions (the persona-vectors recipe, Chen et al. 2025), and what the instructions do to its predictions.

`trait_evidence`: each of the first `n_questions` extraction questions is asked under each of the first `n_pairs`
instruction pairs, once with the pair's ``pos`` and once with its ``neg`` system prompt (sampled). Every answer is
then read under *both* prompts of its pair: the next-token distributions under its own prompt come with the
generation, those under the other prompt from one forward pass. The trait's **lexicon** is

    L[v] = mean over all answer positions (pos and neg answers) of log p(v | pos prompt, answer so far)
                                                                 - log p(v | neg prompt, answer so far)

which tokens the pos instruction makes the model readier to say (> 0) or less ready (< 0) *on the same text*,
whether or not the sample said them: what the answers are about cancels, what the instruction does stays, and a
model that barely follows a persona prompt still shifts its predictions towards the instruction's words.

**Separation** (how well the model itself tells pos from neg): the lexicon of the answers to the even questions
scores the answers to the odd questions (mean lexicon value of their sampled tokens) and vice versa; 2 * AUC - 1 of
pos against neg answers, clipped to [0, 1]. 0: indistinguishable, so evidence drawn from them is weak.

Cached under ``$CROSSCODER_CACHE/trait_responses`` per model content hash, trait file hash and options (texts as
JSON with a checksum, lexicons as checked safetensors). Sampling is seeded per batch, so the same traits computed
together give the same answers; a cached trait is read back as it was.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.errors import ConfigError, DataError, ModelError
from crosscoder.io import cache_dir, load_checked_safetensors, save_checked_safetensors, sha256_json
from crosscoder.personas.generate import chat_messages, left_pad, render_prompt
from crosscoder.personas.traits import Trait

if TYPE_CHECKING:
    from transformers import PreTrainedModel as HFModule
    from transformers import PreTrainedTokenizerBase as Tokenizer

log = logging.getLogger(__name__)

_VERSION = 3


@dataclass
class ResponseConfig:
    """How many answers a trait's evidence is drawn from, and how they are sampled."""

    n_questions: int = 4
    """Extraction questions asked (the first n of the trait's extraction questions)."""
    n_pairs: int = 2
    """Instruction pairs each question is asked under (the first n); every pair gives one pos and one neg answer."""
    max_new_tokens: int = 24
    """Tokens per answer."""
    temperature: float = 0.8
    """Sampling temperature."""
    seed: int = 0
    """Sampling seed (per batch: seed + batch index)."""
    batch_size: int = 48
    """Prompts per `generate` call (several traits share a batch)."""

    def __post_init__(self) -> None:
        for name in ("n_questions", "n_pairs", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"labels.responses.{name}: must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError(f"labels.responses.temperature: must be > 0, got {self.temperature}")


@dataclass
class TraitResponses:
    """A model's answers under one trait's pos and neg instructions and the lexicon they give (module docstring)."""

    trait: str
    pos: list[str]
    neg: list[str]
    lexicon_V: Float[Tensor, " vocab"]
    """Mean log p over pos answer positions minus mean log p over neg answer positions."""
    separation: float
    """Cross-fitted 2 * AUC - 1 of pos against neg answers scored by the other fold's lexicon, clipped to [0, 1]."""
    questions: list[str] = field(default_factory=list)
    """The question of each answer (pos[i] and neg[i] answer questions[i])."""


@dataclass
class _Item:
    trait: str
    question: int
    side: str
    ids: list[int]
    other_ids: list[int]
    """The prompt under the pair's other system prompt."""
    text: str = ""
    new_ids: list[int] = field(default_factory=list)
    own_V: Tensor | None = None
    """Sum over the answer's positions of log p(v) under its own prompt (from the generation)."""
    other_V: Tensor | None = None
    """The same with the answer read under the other prompt."""


def _items(tokenizer: Tokenizer, trait: Trait, cfg: ResponseConfig) -> list[_Item]:
    def ids(question: str, system: str) -> list[int]:
        prompt = render_prompt(tokenizer, chat_messages(question, system))
        return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])

    out = []
    for qi, q in enumerate(trait.extract_questions[: cfg.n_questions]):
        for pair in trait.instruction[: cfg.n_pairs]:
            pos, neg = ids(q, pair.pos), ids(q, pair.neg)
            out += [_Item(trait.name, qi, "pos", pos, neg), _Item(trait.name, qi, "neg", neg, pos)]
    return out


def _pad_id(tokenizer: Tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ModelError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
    return int(pad)


@torch.no_grad()
def _generate(hf: HFModule, tokenizer: Tokenizer, items: list[_Item], cfg: ResponseConfig) -> None:
    """Sample every item's answer, keeping the sum of its log-probabilities over positions (in place)."""
    pad = _pad_id(tokenizer)
    eos = getattr(hf.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos]) | {pad}
    device = next(hf.parameters()).device
    order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
    t0, n_new = time.perf_counter(), 0
    for b, a in enumerate(range(0, len(order), cfg.batch_size)):
        batch = [items[i] for i in order[a : a + cfg.batch_size]]
        ids_BS, mask_BS = left_pad([it.ids for it in batch], pad)
        torch.manual_seed(cfg.seed + b)
        out = cast(Any, hf).generate(
            input_ids=ids_BS.to(device), attention_mask=mask_BS.to(device), max_new_tokens=cfg.max_new_tokens,
            do_sample=True, temperature=cfg.temperature, top_p=0.95, top_k=0, repetition_penalty=1.1,
            pad_token_id=pad, eos_token_id=eos, output_logits=True, return_dict_in_generate=True,
        )  # fmt: skip
        gen_BT = out.sequences[:, ids_BS.shape[1] :].cpu()
        logp_TBV = torch.stack([torch.log_softmax(x.float().cpu(), dim=-1) for x in out.logits])
        for r, it in enumerate(batch):
            toks = gen_BT[r].tolist()
            m = next((k for k, t in enumerate(toks) if t in stops), len(toks))  # tokens before the first stop
            it.new_ids = toks[:m]
            it.text = str(tokenizer.decode(it.new_ids, skip_special_tokens=True)).strip() or "."
            it.own_V = logp_TBV[:m, r].double().sum(0)
            n_new += m
    log.info("trait answers: %d answers, %d tokens in %.1f s", len(items), n_new, time.perf_counter() - t0)


@torch.no_grad()
def _read_under_other_prompt(hf: HFModule, tokenizer: Tokenizer, items: list[_Item], batch_size: int) -> None:
    """Each answer read under the pair's other system prompt: the sum of log p(v) over its positions (in place)."""
    from crosscoder.data.harvest import right_pad

    pad = _pad_id(tokenizer)
    device = next(hf.parameters()).device
    rows = [it for it in items if it.new_ids]
    rows.sort(key=lambda it: len(it.other_ids) + len(it.new_ids))
    for a in range(0, len(rows), batch_size):
        batch = rows[a : a + batch_size]
        ids_BS, valid_BS = right_pad([it.other_ids + it.new_ids for it in batch], pad)
        logits = hf(input_ids=ids_BS.to(device), attention_mask=valid_BS.long().to(device)).logits
        for r, it in enumerate(batch):
            start = len(it.other_ids) - 1  # position s predicts token s + 1
            span = logits[r, start : start + len(it.new_ids)].float().cpu()
            it.other_V = torch.log_softmax(span, dim=-1).double().sum(0)


def _auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a pos score exceeds a neg score (ties count half)."""
    if not pos or not neg:
        return 0.5
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return float(wins) / (len(pos) * len(neg))


def _lexicon(items: list[_Item]) -> Tensor:
    """Mean over the items' answer positions of log p(v | pos prompt) - log p(v | neg prompt)."""
    total, n = None, 0
    for it in items:
        if not it.new_ids or it.own_V is None or it.other_V is None:
            continue
        diff = it.own_V - it.other_V if it.side == "pos" else it.other_V - it.own_V
        total = diff if total is None else total + diff
        n += len(it.new_ids)
    if total is None:
        raise DataError(f"trait {items[0].trait}: every generated answer is empty; check the model and the trait file")
    return (total / n).float()


def lexicon_of(trait: str, items: list[_Item]) -> TraitResponses:
    """The lexicon and cross-fitted separation of one trait's answered items."""
    lexicon_V = _lexicon(items)
    scored: dict[str, list[float]] = {"pos": [], "neg": []}
    for fold in (0, 1):
        train = [it for it in items if it.question % 2 != fold and it.new_ids]
        test = [it for it in items if it.question % 2 == fold and it.new_ids]
        if not (train and test):
            continue
        lex = _lexicon(train)
        for it in test:
            scored[it.side].append(float(lex[torch.tensor(it.new_ids)].mean()))
    sep = max(0.0, 2.0 * _auc(scored["pos"], scored["neg"]) - 1.0)
    pos = [it for it in items if it.side == "pos"]
    neg = [it for it in items if it.side == "neg"]
    return TraitResponses(trait, [it.text for it in pos], [it.text for it in neg], lexicon_V, sep,
                          [str(it.question) for it in pos])  # fmt: skip


def _path(model_hash: str, trait: Trait, cfg: ResponseConfig) -> Path:
    key = sha256_json([_VERSION, model_hash, trait.sha256, asdict(cfg)])[:20]
    return cache_dir("trait_responses") / f"{trait.name}-{key}.safetensors"


def _load(path: Path, trait: Trait) -> TraitResponses | None:
    if not path.is_file():
        return None
    try:
        t, header = load_checked_safetensors(path, what="trait responses")
        if sha256_json([header["pos"], header["neg"]]) != header.get("texts_sha256"):
            raise DataError(f"{path}: texts checksum mismatch")
        return TraitResponses(trait.name, json.loads(header["pos"]), json.loads(header["neg"]), t["lexicon_V"],
                              float(header["separation"]), json.loads(header["questions"]))  # fmt: skip
    except (DataError, KeyError, ValueError) as err:
        log.warning("recomputing trait responses of %s: %s", trait.name, err)
        return None


def _save(path: Path, r: TraitResponses) -> None:
    pos, neg = json.dumps(r.pos), json.dumps(r.neg)
    meta = {"trait": r.trait, "pos": pos, "neg": neg, "questions": json.dumps(r.questions),
            "separation": repr(r.separation), "texts_sha256": sha256_json([pos, neg])}  # fmt: skip
    save_checked_safetensors(path, {"lexicon_V": r.lexicon_V.contiguous()}, metadata=meta)


def trait_evidence(
    hf: HFModule, tokenizer: Tokenizer, model_hash: str, traits: dict[str, Trait], cfg: ResponseConfig,
    use_cache: bool = True,
) -> dict[str, TraitResponses]:  # fmt: skip
    """{trait: TraitResponses} of `hf` (content hash `model_hash`); traits missing from the cache are answered
    together, several per batch."""
    out: dict[str, TraitResponses] = {}
    todo: list[_Item] = []
    for name, trait in traits.items():
        cached = _load(_path(model_hash, trait, cfg), trait) if use_cache else None
        if cached is not None:
            out[name] = cached
        else:
            todo += _items(tokenizer, trait, cfg)
    if todo:
        _generate(hf, tokenizer, todo, cfg)
        _read_under_other_prompt(hf, tokenizer, todo, max(1, cfg.batch_size // 3))
        for name in dict.fromkeys(it.trait for it in todo):
            out[name] = lexicon_of(name, [it for it in todo if it.trait == name])
            if use_cache:
                _save(_path(model_hash, traits[name], cfg), out[name])
    return {name: out[name] for name in traits}
