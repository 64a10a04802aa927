"""Checks that a set of models can be diffed: same tokenizer, same width at the hooked layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crosscoder.errors import ConfigError, ModelError
from crosscoder.models.load import LoadedModel

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

PROBE_TEXT = (
    "<|im_start|>user\nDiff me: naïve café, 12,345 tokens — emoji 🐈 and code `x = f(y)`.<|im_end|>\n"
    "<|im_start|>assistant\nSure! Cats sleep ~16h/day.<|im_end|>\n"
)


def _special(tok: Tokenizer) -> dict[str, Any]:
    return {k: str(v) for k, v in sorted(tok.special_tokens_map.items())}


def tokenizer_difference(a: Any, b: Any) -> str | None:
    """None when two tokenizers agree on the probe text and special tokens, else what differs."""
    ids_a = a(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    ids_b = b(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    if ids_a != ids_b:
        first = next(
            (i for i, (x, y) in enumerate(zip(ids_a, ids_b, strict=False)) if x != y), min(len(ids_a), len(ids_b))
        )
        return f"token ids differ on the probe text from position {first} ({len(ids_a)} vs {len(ids_b)} tokens)"
    if _special(a) != _special(b):
        return f"special tokens differ ({_special(a)} vs {_special(b)})"
    if len(a) != len(b):
        return f"vocabulary sizes differ ({len(a)} vs {len(b)})"
    return None


def check_model_set(models: list[LoadedModel], hooks: list[str]) -> None:
    """Refuse a model set that cannot be diffed on identical tokens at `hooks` (one line naming both models)."""
    if len(models) < 2:
        raise ConfigError(
            f"models: a diff needs 2 or more models, got {len(models)}; add a fine-tuned model or checkpoint"
        )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"models: display names must be unique, got {names}; set model.name for each")
    ref = models[0]
    ref.check_hooks(hooks)
    for other in models[1:]:
        other.check_hooks(hooks)
        diff = tokenizer_difference(ref.tokenizer, other.tokenizer)
        if diff:
            raise ModelError(
                f"models {ref.name} and {other.name} do not share a tokenizer: {diff}; diff models of one family"
            )
        if other.d_model != ref.d_model:
            raise ModelError(
                f"models {ref.name} and {other.name} differ in d_model at the hooked layer ({ref.d_model} vs {other.d_model}); "
                "diff models of the same architecture"
            )
