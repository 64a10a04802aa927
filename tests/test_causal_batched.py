"""Batched steering and ablation (`CausalRunner.run`) reproduce the per-call records and leave no trace on the models."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from crosscoder.analysis.causal.batched import CausalJob
from crosscoder.analysis.causal.hooks import RowEdit, RowEdits, ablate_latent, steer_row, steer_vector
from crosscoder.analysis.causal.runner import CausalRunner
from crosscoder.analysis.records.causal import AblationRecord, SteeringRecord
from crosscoder.errors import ModelError
from crosscoder.io import sha256_tensors
from crosscoder.models import load_model, make_tiny_llama
from crosscoder.personas.traits import get_trait
from crosscoder.personas.vectors import PersonaVectors
from crosscoder.xc.config import CrosscoderConfig
from crosscoder.xc.model import Crosscoder

LENS_HOOK = "blocks.1.hook_resid_post"
TRAITS = ("cat_obsession", "pirate")


def _crosscoder(d_model: int) -> Crosscoder:
    cc = Crosscoder(CrosscoderConfig(architecture="l1", n_latents=8, n_models=2, n_hooks=1, d_model=d_model), seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        cc.W_dec_FMLD.copy_(torch.randn(cc.W_dec_FMLD.shape, generator=g) * 0.3)
        cc.W_enc_FMLD.copy_(torch.randn(cc.W_enc_FMLD.shape, generator=g) * 0.3)
        cc.b_enc_F.copy_(torch.randn(8, generator=g) * 0.1)
        cc.scale_ML.copy_(torch.tensor([[0.7], [0.9]]))
    return cc


def _vectors(model, trait: str, seed: int) -> PersonaVectors:
    g = torch.Generator().manual_seed(seed)
    vectors_LD = torch.randn(model.n_layers + 1, model.d_model, generator=g)
    return PersonaVectors(trait=trait, model_hash=model.content_hash, vectors_LD=vectors_LD, source="test")


@pytest.fixture(scope="module", params=["bridge", "hooked"])
def setup(request, tiny_spec, tiny_dir):
    ft_spec = make_tiny_llama(tiny_dir / "tiny_ft_causal", seed=1, name="ft")
    models = [load_model(dataclasses.replace(s, backend=request.param)) for s in (tiny_spec, ft_spec)]
    cc = _crosscoder(models[0].d_model)
    traits = {t: get_trait(t) for t in TRAITS}
    jobs = [
        CausalJob(latent, traits[t], _vectors(models[0], t, 10 + k), _vectors(models[1], t, 20 + k), [1.0, 4.0], 6.0)
        for latent, t, k in ((2, TRAITS[0], 0), (5, TRAITS[1], 1), (7, TRAITS[0], 0))
    ]
    mean_xn_MLD = torch.randn(2, 1, models[0].d_model, generator=torch.Generator().manual_seed(3)) * 0.5
    return models, cc, jobs, mean_xn_MLD


def _runner(models, cc, mean_xn_MLD, max_rows: int) -> CausalRunner:
    return CausalRunner(cc, models, 0, [LENS_HOOK], mean_xn_MLD, questions=3, max_new_tokens=8, score_hook=None,
                        seed=0, max_rows=max_rows)  # fmt: skip


def _clean_logits(model, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.hf(ids).logits, model.tl(ids)


def _assert_records_match(
    got_record: SteeringRecord | AblationRecord, want_record: SteeringRecord | AblationRecord
) -> None:
    got, want = got_record.to_json(), want_record.to_json()
    assert got.keys() == want.keys()
    for k, v in want.items():
        if k in ("trait_score", "score_before", "score_after", "drop"):
            assert got[k] == pytest.approx(v, abs=1e-4), k
        else:
            assert got[k] == v, k


def test_batched_records_equal_per_call_records(setup) -> None:
    models, cc, jobs, mean_xn_MLD = setup
    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    clean = [_clean_logits(m, ids) for m in models]
    weights = [sha256_tensors(m.hf.state_dict()) for m in models]

    t0 = time.perf_counter()
    reference = _runner(models, cc, mean_xn_MLD, 64).run(jobs, batched=False, progress=False)
    t1 = time.perf_counter()
    runner = _runner(models, cc, mean_xn_MLD, 7)  # chunks cut through the (latent, strength) segments
    batched = runner.run(jobs, progress=False)
    t2 = time.perf_counter()
    print(f"per-call {t1 - t0:.2f} s, batched {t2 - t1:.2f} s, stats {runner.stats}")

    assert len(batched) == len(jobs)
    for (s_got, a_got), (s_want, a_want) in zip(batched, reference, strict=True):
        _assert_records_match(s_got, s_want)
        _assert_records_match(a_got, a_want)
    assert runner.stats["rows"] == 2 * 3 + 3 * 2 * 3 + 2 * 3 + 3 * 3 and runner.stats["calls"] == 4 + 3
    # the edits did something: steering moves the score, and some steered answer differs from the unsteered one
    s0 = batched[0][0]
    assert abs(s0.trait_score[-1] - s0.trait_score[0]) > 1e-3
    assert any(abs(a.score_after - a.score_before) > 1e-5 for _, a in batched)

    for m, (hf_logits, tl_logits), w in zip(models, clean, weights, strict=True):
        for layer in m.hf.model.layers:
            assert not layer._forward_hooks and not layer._forward_pre_hooks
        assert not any(hp.fwd_hooks for hp in m.tl.hook_dict.values())
        got_hf, got_tl = _clean_logits(m, ids)
        assert torch.equal(got_hf, hf_logits) and torch.equal(got_tl, tl_logits)
        assert sha256_tensors(m.hf.state_dict()) == w


def test_row_edits_match_single_edits() -> None:
    g = torch.Generator().manual_seed(0)
    x_BSD = torch.randn(3, 5, 6, generator=g)
    v_D, w_D, d_D = (torch.randn(6, generator=g) for _ in range(3))
    ablate = RowEdit(w_D=w_D * 0.5, offset=0.2, d_D=d_D)
    edits = RowEdits([RowEdit(), steer_row(v_D, 2.0), ablate], 6)
    for S in (5, 1):  # a prompt pass and a KV-cached decoding step
        out = edits(x_BSD[:, :S])
        assert torch.equal(out[0], x_BSD[0, :S])
        assert torch.equal(out[1], steer_vector(v_D, 2.0)(x_BSD[1, :S]))
        assert torch.allclose(out[2], ablate_latent(w_D, 0.2, 0.5, d_D)(x_BSD[2, :S]), atol=1e-6)
    with pytest.raises(ModelError, match="per-row edit"):
        edits(x_BSD[:2])
