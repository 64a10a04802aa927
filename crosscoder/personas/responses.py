"""What a trait looks like, from its file alone: a model's answers to the trait's questions under its pos and neg
instructions (the persona-vectors recipe, Chen et al. 2025), and what the instructions do to the model's predictions.

`trait_responses`: each of the first `n_questions` extraction questions is asked under each of the first `n_pairs`
instruction pairs, once with the pair's ``pos`` and once with its ``neg`` system prompt (seeded sampling, so a rerun
gives the same texts). `instruction_lexicon`: every answer, pos and neg, is read again under both system prompts of
its pair; the mean over the answer's positions of ``log p(token | pos prompt) - log p(token | neg prompt)`` for every
vocabulary entry is the trait's *lexicon*: which tokens the pos instruction makes the model more (> 0) or less
(< 0) ready to say, whether or not it said them. It reads the instruction the way the model does: a model that
ignores the persona in what it generates still shifts its predictions towards the instruction's words and their
neighbours. Both are cached under ``$CROSSCODER_CACHE/trait_responses``, keyed by the model's content hash, the trait
file's hash and the options, with a checksum.

How well the model itself separates pos from neg (`lexicon_separation`): the lexicon of one half of the questions
scores the answers to the other half (mean lexicon value of their tokens), cross-fitted; 2 * AUC - 1 of pos against
neg answers, clipped to [0, 1]. 0: the pos and neg answers cannot be told apart, so evidence drawn from them is weak.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.errors import ConfigError, DataError, ModelError
from crosscoder.io import (
    atomic_write_json,
    cache_dir,
    load_checked_safetensors,
    read_json,
    save_checked_safetensors,
    sha256_json,
)
from crosscoder.personas.generate import GenerationConfig, chat_messages, generate_chat, render_prompt
from crosscoder.personas.traits import Trait

if TYPE_CHECKING:
    from transformers import PreTrainedModel as HFModule
    from transformers import PreTrainedTokenizerBase as Tokenizer

log = logging.getLogger(__name__)

_VERSION = 1


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
    """Sampling temperature (seeded: the same model, trait and options give the same answers)."""
    seed: int = 0
    """Sampling seed."""
    batch_size: int = 16
    """Prompts per generate / forward call."""

    def __post_init__(self) -> None:
        for name in ("n_questions", "n_pairs", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"labels.responses.{name}: must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError(f"labels.responses.temperature: must be > 0, got {self.temperature}")


@dataclass
class TraitResponses:
    """A model's answers under a trait's pos and neg instructions; item i of `pos` and `neg` answers question
    `questions[i]` under instruction pair `pairs[i]`."""

    trait: str
    model_hash: str
    trait_sha256: str
    questions: list[str]
    pairs: list[int]
    pos: list[str]
    neg: list[str]
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> TraitResponses:
        if not isinstance(obj, dict):
            raise DataError("trait responses: expected a JSON object")
        missing = [
            k for k in ("trait", "model_hash", "trait_sha256", "questions", "pairs", "pos", "neg") if k not in obj
        ]
        if missing:
            raise DataError(f"trait responses: missing key {missing[0]!r}")
        out = cls(**{k: obj[k] for k in ("trait", "model_hash", "trait_sha256", "questions", "pairs", "pos", "neg")},
                  options=dict(obj.get("options") or {}))  # fmt: skip
        if not len(out.questions) == len(out.pairs) == len(out.pos) == len(out.neg):
            raise DataError("trait responses: questions, pairs, pos and neg differ in length")
        return out


def _key(model_hash: str, trait: Trait, cfg: ResponseConfig, what: str) -> str:
    return sha256_json([_VERSION, what, model_hash, trait.sha256, asdict(cfg)])[:20]


def _items(trait: Trait, cfg: ResponseConfig) -> list[tuple[str, int]]:
    questions = trait.extract_questions[: cfg.n_questions]
    return [(q, p) for q in questions for p in range(min(cfg.n_pairs, len(trait.instruction)))]


def trait_responses(
    hf: HFModule, tokenizer: Tokenizer, model_hash: str, trait: Trait, cfg: ResponseConfig, use_cache: bool = True
) -> TraitResponses:
    """The model's pos and neg answers to the trait's questions (cached per model hash, trait hash and options)."""
    path = cache_dir("trait_responses") / f"{trait.name}-{_key(model_hash, trait, cfg, 'texts')}.json"
    if use_cache and path.is_file():
        try:
            data = read_json(path)
            if data.get("checksum") == sha256_json(data.get("responses")):
                return TraitResponses.from_json(data["responses"])
            log.warning("recomputing trait responses: %s is corrupt (checksum mismatch)", path)
        except DataError as err:
            log.warning("recomputing trait responses: %s", err)
    items = _items(trait, cfg)
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, greedy=False, temperature=cfg.temperature,
                           batch_size=cfg.batch_size, seed=cfg.seed)  # fmt: skip
    texts = {}
    for side in ("pos", "neg"):
        convs = [chat_messages(q, getattr(trait.instruction[p], side)) for q, p in items]
        texts[side] = [t.strip() or "." for t in generate_chat(hf, tokenizer, convs, gen, desc=f"{trait.name}:{side}")]
    out = TraitResponses(trait.name, model_hash, trait.sha256, [q for q, _ in items], [p for _, p in items],
                         texts["pos"], texts["neg"], asdict(cfg))  # fmt: skip
    if use_cache:
        atomic_write_json(path, {"responses": out.to_json(), "checksum": sha256_json(out.to_json())})
    return out


def _teacher_forced(
    tokenizer: Tokenizer, trait: Trait, resp: TraitResponses
) -> list[tuple[list[int], list[int], int, int, str]]:
    """(ids under the pos prompt, ids under the neg prompt, answer index, answer length in tokens, the side that
    generated it) per answer."""
    rows = []
    for i, (q, p) in enumerate(zip(resp.questions, resp.pairs, strict=True)):
        for gen_side, text in (("pos", resp.pos[i]), ("neg", resp.neg[i])):
            ids = []
            for side in ("pos", "neg"):
                prompt = render_prompt(tokenizer, chat_messages(q, getattr(trait.instruction[p], side)))
                ids.append(list(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
            answer = list(tokenizer(text, add_special_tokens=False)["input_ids"])
            if not answer:
                continue
            rows.append((ids[0] + answer, ids[1] + answer, i, len(answer), gen_side))
    return rows


@torch.no_grad()
def _answer_logprobs(hf: HFModule, rows: list[tuple[list[int], int]], pad_id: int) -> list[Tensor]:
    """Per row (ids, n answer tokens): log-probabilities ``[n, V]`` of the vocabulary at each answer position."""
    from crosscoder.data.harvest import right_pad

    device = next(hf.parameters()).device
    ids_BS, valid_BS = right_pad([ids for ids, _ in rows], pad_id)
    logits_BSV = hf(input_ids=ids_BS.to(device), attention_mask=valid_BS.long().to(device)).logits.float().cpu()
    # position s predicts token s + 1: the answer's n tokens are predicted at positions len - n - 1 .. len - 2
    return [
        torch.log_softmax(logits_BSV[b, len(ids) - n - 1 : len(ids) - 1], dim=-1) for b, (ids, n) in enumerate(rows)
    ]


def _lexicon_sums(
    hf: HFModule, rows: list[tuple[list[int], list[int], int, int, str]], fold: list[int], pad_id: int, batch: int
) -> tuple[Tensor, list[int]]:
    """Per fold, the sum over answer positions of log p(pos prompt) - log p(neg prompt) ``[2, V]``, and the counts."""
    sums: Tensor | None = None
    counts = [0, 0]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))  # similar lengths share a batch
    for a in range(0, len(order), batch):
        idx = order[a : a + batch]
        lp_pos = _answer_logprobs(hf, [(rows[i][0], rows[i][3]) for i in idx], pad_id)
        lp_neg = _answer_logprobs(hf, [(rows[i][1], rows[i][3]) for i in idx], pad_id)
        for i, p, n in zip(idx, lp_pos, lp_neg, strict=True):
            if sums is None:
                sums = torch.zeros(2, p.shape[-1], dtype=torch.float64)
            sums[fold[i]] += (p - n).double().sum(0)
            counts[fold[i]] += p.shape[0]
    assert sums is not None
    return sums, counts


@dataclass
class Lexicon:
    """What a trait's instructions do to a model's next-token predictions (module docstring)."""

    lexicon_V: Float[Tensor, " vocab"]
    """Mean over answer positions of log p(v | pos prompt) - log p(v | neg prompt)."""
    folds_2V: Float[Tensor, "2 vocab"]
    """The same over the answers to the even / the odd questions (for the cross-fitted separation)."""
    separation: float
    """2 * AUC - 1 (clipped to [0, 1]) of pos against neg answers scored by the other fold's lexicon."""
    answer_scores: list[tuple[str, float]] = field(default_factory=list)
    """(side, cross-fitted lexicon score) per answer."""


def _auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a pos score exceeds a neg score (ties count half)."""
    if not pos or not neg:
        return 0.5
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return float(wins) / (len(pos) * len(neg))


def _separation(folds_2V: Tensor, answers: list[tuple[list[int], int, str]]) -> tuple[float, list[tuple[str, float]]]:
    """Cross-fitted separation: each answer (token ids, fold, side) scored by the other fold's lexicon."""
    scored = [(side, float(folds_2V[1 - fold][torch.tensor(ids)].mean())) for ids, fold, side in answers if ids]
    auc = _auc([s for side, s in scored if side == "pos"], [s for side, s in scored if side == "neg"])
    return max(0.0, 2.0 * auc - 1.0), scored


def instruction_lexicon(
    hf: HFModule, tokenizer: Tokenizer, model_hash: str, trait: Trait, resp: TraitResponses, cfg: ResponseConfig,
    use_cache: bool = True,
) -> Lexicon:  # fmt: skip
    """The trait's lexicon in this model (module docstring), cached with its folds and separation."""
    path = cache_dir("trait_responses") / f"{trait.name}-{_key(model_hash, trait, cfg, 'lexicon')}.safetensors"
    if use_cache and path.is_file():
        try:
            t, header = load_checked_safetensors(path, what="trait lexicon")
            return Lexicon(t["lexicon_V"], t["folds_2V"], float(header["separation"]))
        except (DataError, KeyError) as err:
            log.warning("recomputing the trait lexicon: %s", err)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ModelError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
    rows = _teacher_forced(tokenizer, trait, resp)
    if not rows:
        raise DataError(f"trait {trait.name}: every generated answer is empty; check the model and the trait file")
    qs = list(dict.fromkeys(resp.questions))
    fold = [qs.index(resp.questions[r[2]]) % 2 for r in rows]
    sums, counts = _lexicon_sums(hf, rows, fold, pad, max(1, cfg.batch_size // 2))
    folds_2V = (sums / torch.tensor(counts, dtype=torch.float64).clamp_min(1)[:, None]).float()
    lexicon_V = (sums.sum(0) / max(sum(counts), 1)).float()
    answers = [(r[0][len(r[0]) - r[3] :], f, r[4]) for r, f in zip(rows, fold, strict=True)]
    sep, scored = _separation(folds_2V, answers) if min(counts) > 0 else (0.0, [])
    if use_cache:
        save_checked_safetensors(path, {"lexicon_V": lexicon_V, "folds_2V": folds_2V},
                                 metadata={"separation": repr(sep), "trait": trait.name, "model_hash": model_hash})  # fmt: skip
    return Lexicon(lexicon_V, folds_2V, sep, scored)
