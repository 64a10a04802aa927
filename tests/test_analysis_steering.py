"""Steering and ablation hooks: they change the forward pass, leave no trace after the block, and never touch weights."""

from __future__ import annotations

import pytest
import torch

from crosscoder.analysis.causal.hooks import ablate_latent, edit_residual, steer_vector
from crosscoder.analysis.evidence.lens import LogitLens
from crosscoder.errors import ConfigError
from crosscoder.io import sha256_tensors
from crosscoder.models import load_model

HOOKS = ("blocks.1.hook_resid_post", "blocks.3.hook_resid_post")


def _resid(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        _, cache = model.tl.run_with_cache(ids, names_filter=lambda n: n in HOOKS)
    return {h: cache[h].clone() for h in HOOKS}


def _hook_count(model) -> int:
    n = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.hf.modules())
    return n + sum(len(hp.fwd_hooks) for hp in model.tl.hook_dict.values())


@pytest.fixture(scope="module")
def model(tiny_spec):
    return load_model(tiny_spec)


@pytest.fixture(scope="module", params=["bridge", "hooked"])
def any_backend(request, tiny_spec):
    import dataclasses

    return load_model(dataclasses.replace(tiny_spec, backend=request.param))


def test_steering_changes_downstream_and_is_removed(any_backend) -> None:
    model = any_backend
    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    clean = _resid(model, ids)
    n_hooks = _hook_count(model)
    v = torch.randn(model.d_model)
    with edit_residual(model, "blocks.1.hook_resid_post", steer_vector(v, 3.0)):
        steered = _resid(model, ids)
    assert (steered["blocks.3.hook_resid_post"] - clean["blocks.3.hook_resid_post"]).norm() > 1e-2
    after = _resid(model, ids)
    assert torch.equal(after["blocks.3.hook_resid_post"], clean["blocks.3.hook_resid_post"])
    assert _hook_count(model) == n_hooks


def test_hooks_removed_after_an_exception(model) -> None:
    ids = torch.tensor([[1, 40, 41, 42]])
    clean = _resid(model, ids)
    n_hooks = _hook_count(model)
    with (
        pytest.raises(RuntimeError, match="boom"),
        edit_residual(model, "blocks.2.hook_resid_pre", steer_vector(torch.ones(model.d_model), 5.0)),
    ):
        _resid(model, ids)
        raise RuntimeError("boom")
    assert _hook_count(model) == n_hooks
    assert torch.equal(_resid(model, ids)["blocks.3.hook_resid_post"], clean["blocks.3.hook_resid_post"])


def test_generation_under_steering_leaves_weights_unchanged(model) -> None:
    before = sha256_tensors(model.hf.state_dict())
    ids = torch.tensor([[1, 40, 41, 42]])
    with edit_residual(model, "blocks.1.hook_resid_post", steer_vector(torch.randn(model.d_model), 8.0)):
        steered = model.hf.generate(ids, max_new_tokens=6, do_sample=False)
    with edit_residual(
        model,
        "blocks.1.hook_resid_post",
        ablate_latent(torch.randn(model.d_model), 0.1, 1.0, torch.randn(model.d_model)),
    ):
        model.hf.generate(ids, max_new_tokens=6, do_sample=False)
    plain = model.hf.generate(ids, max_new_tokens=6, do_sample=False)
    assert sha256_tensors(model.hf.state_dict()) == before
    assert steered.shape == plain.shape


def test_ablation_removes_the_latent_contribution() -> None:
    d = torch.tensor([1.0, 0.0, 0.0])
    edit = ablate_latent(torch.tensor([1.0, 0.0, 0.0]), 0.0, 1.0, d)
    x = torch.tensor([[2.0, 1.0, -1.0], [-3.0, 1.0, 0.0]])
    out = edit(x)
    assert torch.allclose(out[0], torch.tensor([0.0, 1.0, -1.0])) and torch.allclose(out[1], x[1])


def test_bad_hook_refused(model) -> None:
    with (
        pytest.raises(ConfigError, match="residual hook"),
        edit_residual(model, "blocks.1.attn.hook_z", steer_vector(torch.zeros(4), 1.0)),
    ):
        pass


def test_logit_lens_reads_unembedding_directions(model) -> None:
    lens = LogitLens(model)
    W_U = lens.W_U_DV
    tok = 57
    v = W_U[:, tok] / (lens.gain_D if lens.gain_D is not None else 1.0)
    out = lens.top(v[None], 5)[0]
    assert out.promoted[0][0] == model.tokenizer.decode([tok])
    assert len(out.suppressed) == 5 and out.suppressed[0][1] < out.promoted[-1][1]
