"""Persona directions: files, algebra, mismatch errors, multi-direction steering (hooks gone after an exception)."""

from __future__ import annotations

import json

import pytest
import torch

from crosscoder.errors import DataError
from crosscoder.models import load_model
from crosscoder.personas.compose import ops
from crosscoder.personas.compose.directions import DirectionMismatchError, PersonaDirection, Provenance
from crosscoder.personas.compose.steer import ablate, steer

HOOK = "blocks.1.hook_resid_post"


def _dir(name: str, vec: list[float] | torch.Tensor, *, model: str = "m1", hook: str = HOOK) -> PersonaDirection:
    return PersonaDirection(name, torch.as_tensor(vec, dtype=torch.float32), model, "base", hook, Provenance("file"))


def _hooks(hf: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in hf.modules())


@pytest.fixture(scope="module")
def tiny(tiny_spec):
    return load_model(tiny_spec)


def test_save_load_roundtrip_and_manifest(tmp_path) -> None:
    a = _dir("a", [3.0, 4.0, 0.0])
    b = _dir("b", [0.0, 1.0, 1.0])
    c = ops.scale(ops.subtract(a, b), 2.0, name="c")
    path = c.save(tmp_path / "c")
    back = PersonaDirection.load(tmp_path / "c.json")
    assert torch.equal(back.vector_D, torch.tensor([6.0, 6.0, -2.0]))
    assert [o.op for o in back.operations] == ["subtract", "scale"]
    assert back.operations[0].operands == (b.ref,)
    assert back.model_hash == "m1" and back.hook == HOOK and back.provenance.kind == "file"
    man = json.loads((tmp_path / "c.json").read_text())
    assert man["d_model"] == 3 and man["norm"] == pytest.approx(float(torch.tensor([6.0, 6, -2]).norm()))
    # a vector file that does not match its manifest is refused
    _dir("other", [1.0, 1.0, 1.0]).save(tmp_path / "other")
    (tmp_path / "c.safetensors").write_bytes((tmp_path / "other.safetensors").read_bytes())
    with pytest.raises(DataError, match="does not match its manifest"):
        PersonaDirection.load(path)


def test_mismatched_model_hook_or_width_names_both() -> None:
    a = _dir("a", [1.0, 0.0, 0.0])
    for other in (
        _dir("b", [0.0, 1.0, 0.0], model="m2"),
        _dir("b", [0.0, 1.0, 0.0], hook="blocks.2.hook_resid_post"),
        _dir("b", [0.0, 1.0, 0.0, 0.0]),
    ):
        with pytest.raises(DirectionMismatchError) as err:
            ops.add(a, other)
        msg = str(err.value)
        assert "'a'" in msg and "'b'" in msg and "\n" not in msg


def test_gram_schmidt_project_out_and_cosines() -> None:
    torch.manual_seed(0)
    dirs = [_dir(f"d{i}", torch.randn(16)) for i in range(4)]
    orth = ops.orthogonalise(dirs)
    assert torch.equal(orth[0].vector_D, dirs[0].vector_D)
    cos = ops.cosine_matrix(orth)
    assert torch.allclose(cos, torch.eye(4), atol=1e-5)
    # each result differs from its input only by a combination of the earlier inputs
    q = ops.orthonormal_basis(torch.stack([d.vector_D for d in dirs[:2]]))
    resid = orth[2].vector_D - dirs[2].vector_D
    assert torch.allclose(resid - (resid @ q.T) @ q, torch.zeros(16), atol=1e-5)
    p = ops.project_out(dirs[3], dirs[:3])
    for d in dirs[:3]:
        assert abs(float(p.vector_D @ d.vector_D)) < 1e-4
    with pytest.raises(DataError, match="span"):
        ops.project_out(ops.add(dirs[0], dirs[1]), dirs[:2])
    raw = ops.cosine_matrix(dirs)
    assert torch.allclose(raw, raw.T) and torch.allclose(raw.diagonal(), torch.ones(4))


def test_steer_sums_directions_and_removes_hooks_on_error(tiny) -> None:
    hf = tiny.hf
    d = tiny.d_model
    a = PersonaDirection("a", torch.randn(d), tiny.content_hash, tiny.name, HOOK, Provenance("file"))
    b = PersonaDirection("b", torch.randn(d), tiny.content_hash, tiny.name, HOOK, Provenance("file"))
    ab = ops.add(ops.scale(a, 2.0), ops.scale(b, -1.0))
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        ref = hf(ids).logits
    before = _hooks(hf)  # after a first forward (the bridge registers its own hooks lazily)
    with torch.no_grad():
        with steer(tiny, [(a, 2.0), (b, -1.0)]):
            two = hf(ids).logits
        with steer(tiny, [(ab, 1.0)]):
            one = hf(ids).logits
    assert not torch.allclose(two, ref) and torch.allclose(two, one, atol=1e-5)
    with pytest.raises(RuntimeError, match="boom"), steer(tiny, [(a, 3.0)]):
        assert _hooks(hf) > before
        raise RuntimeError("boom")
    assert _hooks(hf) == before
    with pytest.raises(RuntimeError, match="boom"), ablate(tiny, [a, b]):
        raise RuntimeError("boom")
    assert _hooks(hf) == before
    with torch.no_grad():
        assert torch.equal(hf(ids).logits, ref)


def test_steer_refuses_other_models_direction(tiny) -> None:
    alien = PersonaDirection("alien", torch.randn(tiny.d_model), "f" * 64, "other", HOOK, Provenance("file"))
    with pytest.raises(DirectionMismatchError, match="alien"), steer(tiny, [(alien, 1.0)]):
        pass
    narrow = PersonaDirection("narrow", torch.randn(8), tiny.content_hash, tiny.name, HOOK, Provenance("file"))
    with pytest.raises(DirectionMismatchError, match="width 8"), steer(tiny, [(narrow, 1.0)]):
        pass
    with steer(tiny, [(alien, 1.0)], allow_models=("f" * 64,)):  # an explicit, related model is accepted
        pass


def test_ablate_removes_the_component(tiny) -> None:
    a = PersonaDirection("a", torch.randn(tiny.d_model), tiny.content_hash, tiny.name, HOOK, Provenance("file"))
    seen: list[torch.Tensor] = []
    from crosscoder.models.residual import edit_hf_residual

    def keep(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach().clone())
        return x

    with torch.no_grad(), ablate(tiny, [a]), edit_hf_residual(tiny.hf, "blocks.2.hook_resid_pre", keep):
        tiny.hf(torch.tensor([[1, 2, 3]]))
    assert float((seen[0] @ a.unit()).abs().max()) < 1e-4
