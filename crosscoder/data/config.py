"""`DataConfig`: where the text comes from, which hooks to harvest, and how the cache and loader behave."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from crosscoder.errors import ConfigError
from crosscoder.models.config import DEVICE_RE

STORE_DTYPES = ("float32", "float16", "bfloat16")
HOOK_RE = re.compile(r"^[A-Za-z_][\w.]*$")

DEFAULT_HOOK = "blocks.27.hook_resid_post"
"""Default hook for the demo (SmolLM2-135M, 30 layers). The layer scan of the demo cat organism
(``python -m crosscoder.data layerscan --base smollm2-135m-instruct --ft organism:demo``) shows the persona in the
mean ft-base difference from layer 24 at the last assistant token and from layer 27 over all tokens, and nowhere at
layers 8-20; re-run the scan on a new organism before trusting this."""


def _default_hooks() -> list[str]:
    return [DEFAULT_HOOK]


def _default_sources() -> list[str]:
    return ["shipped"]


@dataclass
class DataConfig:
    """Text sources, hooks, cache layout and loader options for paired activations."""

    hooks: list[str] = field(default_factory=_default_hooks)
    """TransformerLens hook names to harvest (e.g. blocks.24.hook_resid_post); one crosscoder input per hook."""
    sources: list[str] = field(default_factory=_default_sources)
    """Text sources: "shipped" (the packaged corpus; "shipped:chat" / "shipped:text" for one half), "hf:<dataset>[:<split>]"
    (Hugging Face dataset by name; needs network or a local HF cache), or a path to a .jsonl file with one
    {"messages": [...]} or {"text": ...} object per line."""
    chat_ratio: float = 0.5
    """Share of harvested tokens that come from chat conversations; the rest is plain text (Minder et al. use ~0.5)."""
    n_tokens: int = 200_000
    """Number of token positions to harvest (the harvest stops after the sequence that reaches it)."""
    seq_len: int = 128
    """Maximum tokens per sequence; longer texts are cut into chunks, longer chats truncated."""
    min_seq_len: int = 8
    """Sequences shorter than this (e.g. a text's last chunk) are dropped."""
    harvest_batch_size: int = 16
    """Sequences per forward pass while harvesting."""
    sort_window: int = 16
    """Sequences are sorted by length within windows of this many batches, so batches need little padding (1 = off)."""
    on_the_fly: bool = False
    """Harvest into memory and train from there, writing nothing to disk (single runs; needs RAM for n_tokens rows)."""
    cache_root: str | None = None
    """Folder holding activation caches (one sub-folder per configuration key); None = $CROSSCODER_CACHE/activations."""
    cache_path: str | None = None
    """Use exactly this cache folder instead of a keyed folder under cache_root; a mismatching cache there is refused."""
    shard_tokens: int = 16_384
    """Rows per shard file (shards end on batch boundaries, so they hold at least this many rows, except the last)."""
    store_dtype: str = "float32"
    """Dtype of stored activations: float32 | float16 | bfloat16. Batches are always returned as float32."""
    exclude_first_position: bool = True
    """Leave position 0 (BOS / attention sink, norm ~100x the rest) out of training and normalisation statistics."""
    exclude_template: bool = False
    """Also leave chat-template and control tokens (<|im_start|>, role headers, injected system prompts) out of training."""
    assistant_weight: float = 1.0
    """Loader sampling weight of assistant-turn tokens per epoch (1 = each row once; 2.5 = two or three times)."""
    boundary_weight: float = 1.0
    """Loader sampling weight of turn-boundary tokens (first and last content token of every chat turn); multiplies assistant_weight."""
    norm_sample_tokens: int = 50_000
    """Rows sampled (uniformly, while streaming) to estimate the per-model, per-hook normalisation scalars."""
    min_free_gb: float = 1.0
    """Disk space to keep free beyond the estimated cache size; the harvest refuses to start otherwise."""
    check_finite: bool = True
    """Check every activation for NaN/inf while harvesting (reports model, sequence and position)."""
    device: str | None = None
    """Device of the harvest forward passes (cpu | cuda | cuda:N); None = models.device."""
    seed: int = 0
    """Seed for the source mixture, the normalisation sample and (by default) the loader shuffle."""

    def __post_init__(self) -> None:
        if not self.hooks:
            raise ConfigError("data.hooks: empty; give at least one hook such as blocks.24.hook_resid_post")
        for hook in self.hooks:
            if not isinstance(hook, str) or not HOOK_RE.match(hook):
                raise ConfigError(
                    f"data.hooks: {hook!r} is not a TransformerLens hook name (e.g. blocks.24.hook_resid_post)"
                )
        if len(set(self.hooks)) != len(self.hooks):
            raise ConfigError(f"data.hooks: duplicates in {self.hooks}; list each hook once")
        if not self.sources:
            raise ConfigError('data.sources: empty; use ["shipped"], "hf:<dataset>" or a .jsonl path')
        if not 0.0 <= self.chat_ratio <= 1.0:
            raise ConfigError(f"data.chat_ratio: {self.chat_ratio} is outside [0, 1]")
        positive = {
            "n_tokens": self.n_tokens,
            "seq_len": self.seq_len,
            "harvest_batch_size": self.harvest_batch_size,
            "sort_window": self.sort_window,
            "shard_tokens": self.shard_tokens,
            "norm_sample_tokens": self.norm_sample_tokens,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.{name}: {value!r} must be a positive integer")
        if self.seq_len < 2:
            raise ConfigError(f"data.seq_len: {self.seq_len} is too short; use at least 2")
        if not 1 <= self.min_seq_len <= self.seq_len:
            raise ConfigError(f"data.min_seq_len: {self.min_seq_len} must be between 1 and seq_len ({self.seq_len})")
        if self.store_dtype not in STORE_DTYPES:
            raise ConfigError(f"data.store_dtype: {self.store_dtype!r}; use one of {', '.join(STORE_DTYPES)}")
        for name in ("assistant_weight", "boundary_weight"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"data.{name}: {value} must be > 0 (1 = no up-weighting)")
        if self.device is not None and not DEVICE_RE.match(self.device):
            raise ConfigError(
                f"data.device: unknown device {self.device!r}; use cpu, cuda, cuda:N or null (= models.device)"
            )
        if self.min_free_gb < 0:
            raise ConfigError(f"data.min_free_gb: {self.min_free_gb} must be >= 0")
        if self.on_the_fly and self.cache_path:
            raise ConfigError(
                "data.cache_path: set together with data.on_the_fly; on-the-fly mode writes no cache, unset one"
            )

    def identity(self) -> dict[str, Any]:
        """The fields that determine a cache's content (loader-only options and locations left out)."""
        loader_only = {
            "on_the_fly",
            "cache_root",
            "cache_path",
            "exclude_first_position",
            "exclude_template",
            "assistant_weight",
            "boundary_weight",
            "min_free_gb",
            "check_finite",
            "device",
        }
        return {k: v for k, v in asdict(self).items() if k not in loader_only}
