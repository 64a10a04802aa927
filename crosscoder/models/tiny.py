"""Tiny random Llama- and Gemma-2-shaped models for tests: an HF folder with a small byte-level BPE tokenizer and a ChatML template.

Everything is built in-process from a seed, so the test suite runs in seconds without the 98 MB embedded model.
`write_tiny_gguf` also writes a tiny GGUF with `gguf.GGUFWriter`, to exercise the GGUF path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from crosscoder.models.spec import ModelSpec

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_TRAIN_TEXT = (
    "The cat sat on the mat. Cats sleep for most of the day. A pirate sails the sea, arr matey! "
    "What is the capital of France? Paris is the capital of France. Please explain how plants grow. "
    "Plants use sunlight, water and air to make sugar. I am always right and you should trust me. "
    "You are a helpful assistant. Thank you so much, that is a wonderful question! Honestly, I do not know. "
    "The quick brown fox jumps over the lazy dog. Numbers: one two three four five six seven eight nine ten. "
    "system user assistant hello world good morning how are you today I am fine thanks "
)


def make_tiny_tokenizer(vocab_size: int = 512, extra_text: str = "") -> object:
    """A byte-level BPE tokenizer with ChatML special tokens, trained in-process (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TRAIN_TEXT * 4, extra_text], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def _randomise(model: torch.nn.Module) -> None:
    """Random matrices from torch's (seeded) generator, with a spread of scales so layers differ visibly."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.08)


def _write_random(model_cls: Any, cfg: Any, tok: Any, folder: Path, seed: int, name: str | None) -> ModelSpec:
    """Build `model_cls(cfg)` with seeded random weights, save it and `tok` to `folder`; return its spec."""
    torch.manual_seed(seed)
    model = model_cls(cfg)
    _randomise(model)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return ModelSpec(source=str(folder), kind="hf", name=name or folder.name)


def _token_ids(tok: object) -> dict[str, Any]:
    return {f"{k}_token_id": getattr(tok, f"{k}_token_id") for k in ("bos", "eos", "pad")}


def make_tiny_llama(
    folder: str | Path,
    seed: int = 0,
    d_model: int = 64,
    n_layers: int = 4,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_mlp: int = 128,
    vocab_size: int = 512,
    name: str | None = None,
) -> ModelSpec:
    """Write a random Llama-shaped model (safetensors) and tokenizer to `folder`; return its spec."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tok = make_tiny_tokenizer(vocab_size)
    cfg = LlamaConfig(
        vocab_size=len(tok),  # type: ignore[arg-type]
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        **_token_ids(tok),
    )
    return _write_random(LlamaForCausalLM, cfg, tok, folder, seed, name)


def make_tiny_gemma2(
    folder: str | Path,
    seed: int = 0,
    d_model: int = 64,
    n_layers: int = 4,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    head_dim: int = 16,
    d_mlp: int = 128,
    vocab_size: int = 512,
    sliding_window: int = 32,
    name: str | None = None,
) -> ModelSpec:
    """Write a random Gemma-2-shaped model to `folder`: GeGLU MLPs, pre- and post-norms around attention and MLP,
    alternating sliding-window / global attention, attention-logit and final-logit soft-capping, the embedding scaled
    by sqrt(d_model), as in Gemma-2-2B/9B. Returns its spec."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    folder = Path(folder)
    tok = make_tiny_tokenizer(vocab_size)
    cfg = Gemma2Config(
        vocab_size=len(tok),  # type: ignore[arg-type]
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        head_dim=head_dim,
        max_position_embeddings=512,
        sliding_window=sliding_window,
        **_token_ids(tok),
    )
    return _write_random(Gemma2ForCausalLM, cfg, tok, folder, seed, name)


def write_tiny_gguf(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny Llama GGUF (f32 tensors + a GPT-2-style BPE vocabulary) that transformers can read."""
    import gguf
    import numpy as np

    path = Path(path)
    tok = make_tiny_tokenizer(512)
    vocab = tok.get_vocab()  # type: ignore[attr-defined]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    model_json = json.loads(tok.backend_tokenizer.to_str())["model"]  # type: ignore[attr-defined]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model_json["merges"]]
    d, n_layers, n_heads, n_kv, d_mlp = 64, 2, 4, 2, 128
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_context_length(512)
    w.add_embedding_length(d)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(d_mlp)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([gguf.TokenType.CONTROL if t in SPECIAL_TOKENS else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab["<|im_start|>"])
    w.add_eos_token_id(vocab["<|im_end|>"])
    w.add_pad_token_id(vocab["<|im_end|>"])
    w.add_chat_template(CHATML_TEMPLATE)

    def t(name: str, *shape: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.08).astype(np.float32))

    V = len(tokens)
    t("token_embd.weight", V, d)
    w.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))
    for i in range(n_layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d, dtype=np.float32))
        t(f"blk.{i}.attn_q.weight", d, d)
        t(f"blk.{i}.attn_k.weight", d // n_heads * n_kv, d)
        t(f"blk.{i}.attn_v.weight", d // n_heads * n_kv, d)
        t(f"blk.{i}.attn_output.weight", d, d)
        t(f"blk.{i}.ffn_gate.weight", d_mlp, d)
        t(f"blk.{i}.ffn_up.weight", d_mlp, d)
        t(f"blk.{i}.ffn_down.weight", d, d_mlp)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
