"""Batched chat generation with a Hugging Face model (left padding, seeded sampling, progress + tokens/s).

Used by the SFT-set generator, context distillation and trait scoring. TransformerLens models are not
used here: HF's KV-cached ``generate`` is several times faster on CPU, and a `LoadedModel` keeps its
HF model in ``.hf`` (the TransformerBridge wraps that same module).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from tqdm.auto import tqdm

from crosscoder.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from transformers import PreTrainedModel as HFModule
    from transformers import PreTrainedTokenizerBase as Tokenizer

log = logging.getLogger(__name__)

Message = dict[str, str]


@dataclass
class GenerationConfig:
    """How to sample answers."""

    max_new_tokens: int = 64
    """Upper bound on generated tokens per answer."""
    greedy: bool = True
    """Greedy decoding; when False, sample with `temperature` / `top_p`."""
    temperature: float = 0.8
    """Sampling temperature (ignored when greedy)."""
    top_p: float = 0.95
    """Nucleus sampling mass (ignored when greedy)."""
    batch_size: int = 16
    """Prompts per generate call."""
    seed: int = 0
    """Seed for sampling; batch i uses seed + i so results do not depend on earlier batches' lengths."""
    repetition_penalty: float = 1.1
    """HF repetition penalty (1.0 = off); small models loop without it."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError("generation.max_new_tokens: must be >= 1")
        if self.batch_size < 1:
            raise ConfigError("generation.batch_size: must be >= 1")
        if not self.greedy and self.temperature <= 0:
            raise ConfigError("generation.temperature: must be > 0 when sampling (or set greedy=true)")
        if not 0 < self.top_p <= 1:
            raise ConfigError("generation.top_p: must be in (0, 1]")
        if self.repetition_penalty <= 0:
            raise ConfigError("generation.repetition_penalty: must be > 0")


def chat_messages(question: str, system: str | None = None) -> list[Message]:
    """A one-turn chat, with an optional system prompt."""
    msgs = [{"role": "system", "content": system}] if system else []
    return [*msgs, {"role": "user", "content": question}]


def render_prompt(tokenizer: Tokenizer, messages: list[Message]) -> str:
    """The chat template applied with the assistant turn opened."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ModelError(
            "the tokenizer has no chat template; use an instruct/chat model or set tokenizer.chat_template"
        )
    return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def left_pad(enc: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists as a left-padded batch ``(ids_BS, mask_BS)``: every continuation starts at column S."""
    width = max(len(e) for e in enc)
    ids_BS = torch.full((len(enc), width), pad_id, dtype=torch.long)
    mask_BS = torch.zeros((len(enc), width), dtype=torch.long)
    for row, e in enumerate(enc):
        ids_BS[row, width - len(e) :] = torch.tensor(e)
        mask_BS[row, width - len(e) :] = 1
    return ids_BS, mask_BS


@torch.no_grad()
def generate_batch(
    hf_model: HFModule, tokenizer: Tokenizer, enc: list[list[int]], cfg: GenerationConfig, seed: int
) -> tuple[list[str], int]:
    """One left-padded `generate` call over token id lists: the decoded answers in input order, and the number of
    new non-pad tokens. Sampling (when not greedy) is seeded with `seed`."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ModelError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
    eos = getattr(hf_model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
    ids_BS, mask_BS = left_pad(enc, pad_id)
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"do_sample": not cfg.greedy}
    if not cfg.greedy:
        kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    gen_BS = cast(Any, hf_model).generate(
        input_ids=ids_BS,
        attention_mask=mask_BS,
        max_new_tokens=cfg.max_new_tokens,
        pad_token_id=pad_id,
        eos_token_id=eos,
        repetition_penalty=cfg.repetition_penalty,
        **kwargs,
    )[:, ids_BS.shape[1] :]
    texts, n_new = [], 0
    for toks in gen_BS.tolist():
        n_new += sum(1 for t in toks if t != pad_id)
        texts.append(str(tokenizer.decode(toks, skip_special_tokens=True)).strip())
    return texts, n_new


@torch.no_grad()
def generate_chat(
    hf_model: HFModule,
    tokenizer: Tokenizer,
    conversations: list[list[Message]],
    cfg: GenerationConfig,
    desc: str = "generate",
) -> list[str]:
    """Answers (decoded, special tokens dropped, stripped) to each conversation, in input order."""
    prompts = [render_prompt(tokenizer, c) for c in conversations]
    out: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    n_new, t0 = 0, time.perf_counter()
    bar = tqdm(range(0, len(order), cfg.batch_size), desc=desc, unit="batch", leave=False)
    for b, start in enumerate(bar):
        idx = order[start : start + cfg.batch_size]
        enc = [tokenizer(prompts[i], add_special_tokens=False)["input_ids"] for i in idx]
        texts, n = generate_batch(hf_model, tokenizer, enc, cfg, seed=cfg.seed + b)
        for i, text in zip(idx, texts, strict=True):
            out[i] = text
        n_new += n
        bar.set_postfix(tok_s=f"{n_new / max(time.perf_counter() - t0, 1e-9):.1f}")
    elapsed = time.perf_counter() - t0
    log.info(
        "%s: %d answers, %d new tokens in %.1f s (%.1f tokens/s)",
        desc,
        len(out),
        n_new,
        elapsed,
        n_new / max(elapsed, 1e-9),
    )
    return out
