"""The residual-edit primitive: hooks are gone after the block even when registering a later hook fails."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from crosscoder.errors import ConfigError
from crosscoder.models import load_model
from crosscoder.models.residual import edit_hf_residual, edit_residual, parse_resid_hook, steer_vector


def _hf_hooks(hf: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in hf.modules())


@pytest.fixture(scope="module")
def hooked(tiny_spec):
    return load_model(dataclasses.replace(tiny_spec, backend="hooked"))


def test_parse_resid_hook() -> None:
    assert parse_resid_hook("blocks.3.hook_resid_post") == (3, "post")
    assert parse_resid_hook("blocks.0.hook_resid_pre") == (0, "pre")
    with pytest.raises(ConfigError, match="residual hook"):
        parse_resid_hook("blocks.3.attn.hook_z")


def test_hf_hook_removed_when_tl_hook_entry_raises(hooked, monkeypatch) -> None:
    """The HF hook registered first must not leak when entering the TransformerLens hooks raises."""
    before = _hf_hooks(hooked.hf)

    def boom(*_a, **_k):
        raise RuntimeError("tl hooks failed")

    monkeypatch.setattr(hooked.tl, "hooks", boom)
    with (
        pytest.raises(RuntimeError, match="tl hooks failed"),
        edit_residual(hooked, "blocks.1.hook_resid_post", steer_vector(torch.ones(hooked.d_model), 1.0)),
    ):
        pass
    assert _hf_hooks(hooked.hf) == before


def test_edit_hf_residual_changes_output_and_is_removed(hooked) -> None:
    hf = hooked.hf
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        ref = hf(ids).logits
    before = _hf_hooks(hf)
    with (
        pytest.raises(ValueError, match="inside"),
        edit_hf_residual(hf, "blocks.1.hook_resid_post", steer_vector(torch.ones(hooked.d_model), 5.0)),
    ):
        with torch.no_grad():
            steered = hf(ids).logits
        assert not torch.allclose(steered, ref)
        raise ValueError("inside")
    assert _hf_hooks(hf) == before
    with torch.no_grad():
        assert torch.equal(hf(ids).logits, ref)
    with pytest.raises(ConfigError, match="only"), edit_hf_residual(hf, "blocks.99.hook_resid_post", lambda x: x):
        pass
