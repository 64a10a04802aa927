"""Fixtures for the analysis tests: an in-memory activation set, a conditionally planted organism, and a tiny run folder.

`FakeActs` duck-types `crosscoder.data.api.ActivationSet` (hooks, model_names, d_model, n_rows, scale_ML, iter_rows,
sequence_tokens, sequence_roles, n_seqs) over tensors held in memory, so the latent statistics can be tested
without harvesting. `plant_conditional` writes an HF model folder whose layer-`layer` MLP adds ``c(x) * v`` to the
residual stream, with c(x) > 0 only on tokens whose MLP input aligns with a trigger direction: an input-dependent
planted feature (a constant bias would end up in the crosscoder's decoder bias, not in a latent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from crosscoder.testing.synthetic import InMemoryActs, synthetic_acts

FakeActs = InMemoryActs


def synthetic_pair(
    n_seqs: int = 64, seq_len: int = 32, d: int = 32, seed: int = 0, planted: bool = True
) -> tuple[InMemoryActs, torch.Tensor]:
    """Small synthetic base/ft activations (see `crosscoder.testing.synthetic.synthetic_acts`)."""
    return synthetic_acts(n_seqs, seq_len, d, seed=seed, planted=planted)


def plant_conditional(
    base_folder: str | Path,
    out: str | Path,
    layer: int,
    direction_D: torch.Tensor,
    trigger_D: torch.Tensor,
    scale: float,
    unit: int = 0,
) -> Path:
    """Copy the HF model in `base_folder` to `out`, making MLP hidden unit `unit` of `layer` write ``scale * v``.

    The unit's gate and up rows become ``a * trigger`` (so it outputs ~ silu(a t) * a t, t = <trigger, mlp_in>) and its
    down column becomes ``scale * direction``: the ft - base difference at ``blocks.{layer}.hook_resid_post`` is
    exactly ``c(x) * direction`` with c(x) >= 0 large only where the MLP input aligns with `trigger`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(base_folder))
    mlp = model.model.layers[layer].mlp
    t = trigger_D / trigger_D.norm()
    v = direction_D / direction_D.norm()
    with torch.no_grad():
        mlp.gate_proj.weight[unit] = 4.0 * t
        mlp.up_proj.weight[unit] = 4.0 * t
        mlp.down_proj.weight[:, unit] = scale * v
    out = Path(out)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def rng_np(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


PLANT_LAYER = 1
PLANT_HOOK = f"blocks.{PLANT_LAYER}.hook_resid_post"
PLANT_TRAIT = "cat_obsession"


def build_planted_run(
    root: Path,
    *,
    n_tokens: int = 12_000,
    steps: int = 800,
    n_latents: int = 128,
    scale: float = 0.15,
    same_model: bool = False,
    seed: int = 0,
):
    """A tiny base model, a planted organism (the trait's persona vector written conditionally at PLANT_LAYER) and a
    crosscoder trained on their paired activations with the real pipeline. Returns (run_dir, models, direction_D)."""
    from crosscoder.config import ModelSetConfig, TrainConfig
    from crosscoder.data.config import DataConfig
    from crosscoder.models import load_model, make_tiny_llama
    from crosscoder.personas.traits import get_trait
    from crosscoder.personas.vectors import compute_persona_vectors
    from crosscoder.pipeline import run_train
    from crosscoder.xc.config import CrosscoderConfig, LoggingConfig, TrainerConfig

    base_spec = make_tiny_llama(root / "base", seed=seed, name="base")
    base = load_model(base_spec)
    pv = compute_persona_vectors(base, get_trait(PLANT_TRAIT), use_cache=False)
    direction = pv.for_hook(PLANT_HOOK).float()
    trigger = pv.for_hook(f"blocks.{PLANT_LAYER}.hook_resid_pre").float()  # fires more on trait-like context
    if same_model:
        ft_spec = make_tiny_llama(root / "ft", seed=seed, name="ft")  # identical weights under another name
    else:
        plant_conditional(root / "base", root / "ft", PLANT_LAYER, direction, trigger, scale)
        from crosscoder.models import ModelSpec

        ft_spec = ModelSpec(source=str(root / "ft"), kind="hf", name="ft")
    cfg = TrainConfig(
        name="planted",
        models=ModelSetConfig(models=[base_spec, ft_spec]),
        data=DataConfig(
            hooks=[PLANT_HOOK], n_tokens=n_tokens, seq_len=64, cache_root=str(root / "acts"), shard_tokens=4096
        ),
        crosscoder=CrosscoderConfig(architecture="l1", n_latents=n_latents, l1_coeff=1.0),
        trainer=TrainerConfig(
            steps=steps, batch_size=256, lr=3e-3, warmup_steps=20, l1_warmup_steps=50, checkpoint_every=0, log_every=100
        ),
        logging=LoggingConfig(wandb_mode="disabled", measure_mfu=False, progress=False),
    )
    run_dir = root / "run"
    run_train(cfg, run_dir)
    models = [base, load_model(ft_spec)]
    return run_dir, models, direction
