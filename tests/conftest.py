"""Shared fixtures: an isolated cache folder and runs/LATEST, W&B disabled, tiny models built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def one_thread():  # type: ignore[no-untyped-def]
    """Tiny tensors: one torch thread avoids OpenMP hand-offs on a busy shared CPU; the count is restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session", autouse=True)
def _session_runs_root(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """runs/LATEST stays the user's even for module-scoped fixtures that train (they start before `_isolated_cache`)."""
    import crosscoder.runs

    mp = pytest.MonkeyPatch()
    mp.setattr(crosscoder.runs, "RUNS_ROOT", tmp_path_factory.mktemp("runs"))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Every fast test gets its own cache; slow tests share the user's cache (the converted SmolLM2 lives there)."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("CROSSCODER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    import crosscoder.runs

    # runs/LATEST is the user's pointer to their latest run: a test's training run must not move it
    monkeypatch.setattr(crosscoder.runs, "RUNS_ROOT", tmp_path / "runs")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session folder holding tiny models."""
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_spec(tiny_dir: Path):
    """A random tiny Llama (d_model 64, 4 layers) saved as an HF folder."""
    from crosscoder.models import make_tiny_llama

    return make_tiny_llama(tiny_dir / "tiny_a", seed=0, name="base")
