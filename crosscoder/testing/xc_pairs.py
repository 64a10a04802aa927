"""A fast-path crosscoder and its dense reference with identical, non-trivial weights: the equivalence tests' pair."""

from __future__ import annotations

import torch

from crosscoder.xc import Crosscoder, CrosscoderConfig


def fast_dense_pair(arch: str, dtype: torch.dtype, n_models: int = 2, **kw: object) -> tuple[Crosscoder, Crosscoder]:
    """Two crosscoders of `arch` (256 latents, k 8, 2 hooks, d_model 16), one on the fast path and one on the dense
    reference, sharing random encoder biases, decoder biases and input scales (so neither is at its initial zeros)."""
    cfg = dict(architecture=arch, n_latents=256, k=8, n_models=n_models, n_hooks=2, d_model=16, **kw)
    fast = Crosscoder(CrosscoderConfig(**cfg, fast_path=True), seed=1).to(dtype)  # type: ignore[arg-type]
    dense = Crosscoder(CrosscoderConfig(**cfg, fast_path=False), seed=1).to(dtype)  # type: ignore[arg-type]
    with torch.no_grad():
        fast.b_enc_F.normal_(0, 0.05)
        fast.b_dec_MLD.normal_()
        fast.scale_ML.uniform_(0.5, 2.0)
    dense.load_state_dict(fast.state_dict())
    assert fast.fast and not dense.fast
    return fast, dense
