"""Model specs, loading (HF -> TransformerLens), the embedded default, model-set checks and tiny test models."""

from crosscoder.models.embedded import embedded_gguf_path
from crosscoder.models.hf import HFModel, load_hf
from crosscoder.models.load import LoadedModel, load_model
from crosscoder.models.modelset import check_model_set, tokenizer_difference
from crosscoder.models.spec import ModelSpec
from crosscoder.models.tiny import make_tiny_gemma2, make_tiny_llama, make_tiny_tokenizer, write_tiny_gguf

__all__ = [
    "HFModel",
    "LoadedModel",
    "ModelSpec",
    "check_model_set",
    "embedded_gguf_path",
    "load_hf",
    "load_model",
    "make_tiny_gemma2",
    "make_tiny_llama",
    "make_tiny_tokenizer",
    "tokenizer_difference",
    "write_tiny_gguf",
]
