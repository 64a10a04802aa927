"""Latent statistics, kernels, decoder geometry, Latent Scaling and attribution on synthetic data (fast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_fixtures import synthetic_pair

from crosscoder.analysis.rank.attribution import attribution_SF
from crosscoder.analysis.rank.table import build_table
from crosscoder.analysis.records.summary import persona_summary
from crosscoder.analysis.stats.collect import SLICES, collect_stats
from crosscoder.analysis.stats.geometry import decoder_geometry
from crosscoder.analysis.stats.kernels import (
    ActivePairs,
    TopExamples,
    decode_normalised,
    encode_active,
    topk_per_group,
    weighted_sum,
)
from crosscoder.analysis.stats.scaling import latent_scaling
from crosscoder.xc.config import CrosscoderConfig
from crosscoder.xc.model import Crosscoder


def _cc(F: int = 48, d: int = 32, M: int = 2, arch: str = "topk", seed: int = 0) -> Crosscoder:
    # Independent random decoders per model: an untrained crosscoder with non-zero decoder differences to test against.
    xc_cfg = CrosscoderConfig(
        architecture=arch, n_latents=F, k=6, n_models=M, n_hooks=1, d_model=d, dec_init_same=False
    )
    cc = Crosscoder(xc_cfg, seed=seed)
    with torch.no_grad():
        cc.b_dec_MLD.normal_(0, 0.1)
    return cc.eval()


def _stats(cc, acts, fast: bool):
    return collect_stats(cc, acts, max_rows=0, batch_size=200, first_assistant_tokens=3, top_k=6, fast=fast)


def test_sparse_kernels_match_dense_reference() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.relu(torch.randn(50, 30, generator=g) - 1.0)
    y = torch.randn(50, 7, generator=g)
    pairs = ActivePairs.from_dense(f)
    assert torch.allclose(weighted_sum(pairs, y), f.T @ y, atol=1e-5)
    assert torch.allclose(weighted_sum(pairs.col_major(), y), f.T @ y, atol=1e-5)
    keep = torch.arange(50) % 3 == 0
    assert torch.allclose(weighted_sum(pairs.select_rows(keep), y), (f * keep[:, None]).T @ y, atol=1e-5)
    assert torch.allclose(pairs.per_latent(pairs.vals_N).float(), f.sum(0), atol=1e-5)
    assert torch.equal(pairs.max_per_latent(), f.max(0).values)
    W, b = torch.randn(30, 7, generator=g), torch.randn(7, generator=g)
    assert torch.allclose(decode_normalised(pairs, W, b), decode_normalised(f, W, b), atol=1e-5)
    assert torch.allclose(decode_normalised(f, W, b), f @ W + b, atol=1e-5)


def test_topk_per_group_and_running_top_examples() -> None:
    g = torch.Generator().manual_seed(1)
    f = torch.relu(torch.randn(300, 20, generator=g))
    top = TopExamples(5, 20)
    for a in range(0, 300, 64):
        top.update(ActivePairs.from_dense(f[a : a + 64]).col_major(), a)
    for j in range(20):
        values, rows = top.for_latent(j)
        want_v, want_r = f[:, j].topk(5)
        assert np.allclose(values, want_v.tolist()) and rows == want_r.tolist()
    grp, val, pay = topk_per_group(
        torch.tensor([1, 0, 1, 1, 0]), torch.tensor([0.1, 0.5, 0.9, 0.3, 0.2]), torch.arange(5), 2
    )
    assert grp.tolist() == [0, 0, 1, 1] and val.tolist() == pytest.approx([0.5, 0.2, 0.9, 0.3])


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "l1", "jumprelu"])
def test_encode_active_equals_the_dense_encode(arch: str) -> None:
    cc = _cc(arch=arch)
    if arch == "batchtopk":
        cc.sparsity.threshold.fill_(0.05)
    x = torch.randn(64, 2, 1, 32)
    ref = ActivePairs.from_dense(cc.encode(x))
    got = encode_active(cc, x)
    assert got.n_rows == 64 and got.n_latents == 48 and ref.vals_N.numel() > 0
    assert torch.equal(got.rows_N, ref.rows_N) and torch.equal(got.cols_N, ref.cols_N)  # same row-major order
    assert torch.allclose(got.vals_N, ref.vals_N, atol=1e-6)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_fast_path_equals_dense_reference(arch: str) -> None:
    acts, _ = synthetic_pair()
    cc = _cc(arch=arch)
    if arch == "batchtopk":
        cc.sparsity.threshold.fill_(0.05)
    fast, dense = _stats(cc, acts, True), _stats(cc, acts, False)
    for name in (
        "count_S",
        "fired_SF",
        "sum_act_SF",
        "sumsq_F",
        "max_F",
        "S_x_MFX",
        "S_h_MFX",
        "S_diff_SFX",
        "sq_err_M",
    ):
        a, b = getattr(fast, name).double(), getattr(dense, name).double()
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), name
    assert torch.equal(fast.top.value_KF, dense.top.value_KF)


def test_sink_rows_never_count() -> None:
    acts, _ = synthetic_pair()
    cc = _cc()
    st1 = _stats(cc, acts, True)
    acts.x_NMLD[acts.pos_N == 0] *= 1000.0  # only the attention-sink rows change
    st2 = _stats(cc, acts, True)
    assert torch.allclose(st1.S_x_MFX, st2.S_x_MFX) and torch.equal(st1.fired_SF, st2.fired_SF)
    assert int(st1.count_S[SLICES.index("all")]) == int((acts.pos_N != 0).sum())


def test_latent_scaling_matches_least_squares() -> None:
    """beta from the accumulated sums equals an explicit least-squares fit over the tokens."""
    acts, _ = synthetic_pair()
    cc = _cc(arch="l1")
    st = _stats(cc, acts, True)
    geo = decoder_geometry(cc, ["base", "ft"], 0.9, 0.9)
    sc = latent_scaling(geo, st, 0.5, 0.5)
    with torch.no_grad():
        x = acts.x_NMLD[acts.pos_N != 0]
        f = cc.encode(x)
        xn = cc.normalise(x).view(len(x), 2, -1)
        xhat = (f @ cc.W_dec_FX + cc.b_dec_MLD.reshape(-1)).view(len(x), 2, -1)
    u = geo.direction_FX()
    checked = 0
    for j in torch.nonzero((f > 0).sum(0) > 5).flatten()[:5].tolist():
        a = (f[:, j : j + 1] * u[j]).reshape(-1, 1).double()  # regressor f_j(x) u_j, stacked over tokens
        for m in range(2):
            y_err = xn[:, m] - xhat[:, m] + f[:, j : j + 1] * geo.W_dec_MFX[m, j]
            for y, got in (
                (xhat[:, m], sc.beta_recon_FM[j, m]),
                (y_err, sc.beta_err_FM[j, m]),
                (xn[:, m], sc.beta_act_FM[j, m]),
            ):
                want = torch.linalg.lstsq(a, y.reshape(-1, 1).double()).solution.item()
                assert got.item() == pytest.approx(want, rel=1e-3, abs=1e-4)
        checked += 1
    assert checked >= 3


def test_attribution_sums_to_explained_share() -> None:
    """sum_j attr_all(j) + bias term == <xhat_ft - xhat_base, delta> / ||delta||^2 over the analysed tokens."""
    acts, _ = synthetic_pair()
    cc = _cc(arch="l1")
    st = _stats(cc, acts, True)
    geo = decoder_geometry(cc, ["base", "ft"], 0.9, 0.9)
    attr = attribution_SF(geo, st)[0]
    with torch.no_grad():
        x = acts.x_NMLD[acts.pos_N != 0]
        f = cc.encode(x)
        xn = cc.normalise(x).view(len(x), 2, -1)
        delta = xn[:, 1] - xn[:, 0]
        xhat = (f @ cc.W_dec_FX).view(len(x), 2, -1)  # without biases
        want = float((((xhat[:, 1] - xhat[:, 0]) * delta).sum()) / delta.pow(2).sum())
    assert float(attr.sum()) == pytest.approx(want, rel=1e-3)


def test_classes_from_constructed_decoders() -> None:
    cc = _cc(F=6, d=8, M=2, arch="l1")
    e = torch.eye(8)
    with torch.no_grad():
        W = cc.W_dec_FMLD
        W.zero_()
        W[0, 0, 0], W[0, 1, 0] = 0.05 * e[0], e[0]  # ft-exclusive (rel 0.95)
        W[1, 0, 0], W[1, 1, 0] = e[1], 0.05 * e[1]  # base-exclusive
        W[2, 0, 0], W[2, 1, 0] = e[2], e[3]  # shifted (cos 0)
        W[3, 0, 0], W[3, 1, 0] = e[4], e[4]  # shared
        W[4, 0, 0], W[4, 1, 0] = e[5], 0.5 * e[5] + 0.1 * e[6]  # shared (cos ~0.98)
    geo = decoder_geometry(cc, ["base", "ft"], 0.9, 0.9)
    assert list(geo.klass) == ["ft_exclusive", "base_exclusive", "shifted", "shared", "shared", "dead"]
    assert float(geo.rel_norm_F[0]) == pytest.approx(1 / 1.05)


def test_classes_for_a_checkpoint_series() -> None:
    cc = _cc(F=3, d=4, M=3, arch="l1")
    e = torch.eye(4)
    with torch.no_grad():
        W = cc.W_dec_FMLD
        W.zero_()
        W[0, 1, 0], W[0, 2, 0] = e[0], e[0]  # absent in base, present in c1 and final: ft-exclusive
        W[1, 1, 0] = e[1]  # only in the middle checkpoint: partial
        W[2, :, 0] = e[2]
    geo = decoder_geometry(cc, ["base", "c1", "ft"], 0.9, 0.9)
    assert list(geo.klass) == ["ft_exclusive", "partial", "shared"]
    assert set(geo.cos_pairs) == {"cos_base__c1", "cos_base__ft", "cos_c1__ft"}


def test_table_has_documented_columns_and_ranks_planted_latent() -> None:
    acts, v = synthetic_pair(n_seqs=96)
    cc = _cc(F=64, arch="l1")
    with torch.no_grad():  # give latent 7 the planted direction in ft only, and an encoder that reads it
        cc.W_dec_FMLD[7, 0, 0] = 0.0
        cc.W_dec_FMLD[7, 1, 0] = v * 2.5
        cc.W_enc_MLDF[:, 0, :, 7] = 0.0
        cc.W_enc_MLDF[1, 0, :, 7] = v / 2.5
        cc.W_enc_MLDF[0, 0, :, 7] = -v / 2.5
        cc.b_enc_F[7] = -0.2
    st = _stats(cc, acts, True)
    geo = decoder_geometry(cc, ["base", "ft"], 0.9, 0.9)
    sc = latent_scaling(geo, st, 0.5, 0.5)
    df = build_table(geo, st, sc, dead_max_freq=0.0, exclusivity_weight=0.5, n_candidates=5)
    for col in ("latent", "dec_norm_base", "share_ft", "rel_norm", "cos", "cos_base__ft", "freq_all", "mean_act_last_assistant",
                "beta_recon_base", "beta_err_ft", "nu_recon", "nu_err", "class", "score", "rank", "is_candidate", "label"):  # fmt: skip
        assert col in df.columns, col
    row = df.loc[7]
    assert row["class"] == "ft_exclusive" and row["ls_artifact"] == "" and row["rank"] == 1
    assert row["nu_err"] < 0.5 and row["nu_recon"] < 0.5


def test_persona_summary_groups_labels_and_skips_unlabelled_candidates() -> None:
    cands = [
        {"latent": 40, "rank": 3, "label": "pirate", "label_confidence": 0.5},
        {"latent": 10, "rank": 1, "label": "unlabelled", "label_confidence": 0.3},
        {"latent": 20, "rank": 2, "label": "cat_obsession", "label_confidence": 0.4},
        {"latent": 50, "rank": 7, "label": "cat_obsession", "label_confidence": 0.6},
        {"latent": 60, "rank": 5, "label": None},
    ]
    personas = persona_summary(cands)
    assert [p["trait"] for p in personas] == ["cat_obsession", "pirate"]  # ordered by the best-ranked latent
    assert [p["persona_rank"] for p in personas] == [1, 2]
    assert [(x["latent"], x["rank"], x["persona_rank"]) for x in personas[0]["latents"]] == [(20, 2, 1), (50, 7, 3)]
    assert personas[1]["latents"] == [{"latent": 40, "rank": 3, "persona_rank": 2, "confidence": 0.5}]
    assert persona_summary([c for c in cands if c["label"] in ("unlabelled", None)]) == []


def _control_of(acts, shift_BD: torch.Tensor):
    """A (base, control) set on the same rows as `acts`: the control is the base plus `shift_BD`."""
    import dataclasses

    x = acts.x_NMLD.clone()
    x[:, 1, 0] = x[:, 0, 0] + shift_BD
    return dataclasses.replace(acts, x_NMLD=x, model_names=["base", "control"])


@pytest.mark.parametrize("arch", ["topk", "l1"])
def test_control_sums_fast_path_equal_dense_reference(arch: str) -> None:
    acts, v = synthetic_pair()
    ctrl = _control_of(acts, acts.x_NMLD[:, 1, 0] - acts.x_NMLD[:, 0, 0] + 0.3 * torch.randn(acts.n_rows, 32))
    cc = _cc(arch=arch)
    kw = dict(max_rows=0, batch_size=200, first_assistant_tokens=3, top_k=6, control=ctrl)
    fast = collect_stats(cc, acts, fast=True, **kw)
    dense = collect_stats(cc, acts, fast=False, **kw)
    assert fast.S_ctrl_SFX is not None and dense.S_ctrl_SFX is not None
    torch.testing.assert_close(fast.S_ctrl_SFX, dense.S_ctrl_SFX, rtol=1e-4, atol=1e-4)
    plain = _stats(cc, acts, True)
    assert plain.S_ctrl_SFX is None and torch.equal(plain.S_diff_SFX, fast.S_diff_SFX)


def test_control_identical_to_ft_zeroes_the_score_and_other_rows_are_refused() -> None:
    from crosscoder.analysis.rank.attribution import control_attribution_SF, net_attribution_SF
    from crosscoder.errors import DataError

    acts, _ = synthetic_pair()
    cc = _cc(arch="l1")
    geo = decoder_geometry(cc, ["base", "ft"], 0.9, 0.9)
    as_ft = _control_of(acts, acts.x_NMLD[:, 1, 0] - acts.x_NMLD[:, 0, 0])
    st = collect_stats(
        cc, acts, max_rows=0, batch_size=200, first_assistant_tokens=3, top_k=6, fast=True, control=as_ft
    )
    attr, ctrl = attribution_SF(geo, st), control_attribution_SF(geo, st)
    assert ctrl is not None
    torch.testing.assert_close(ctrl, attr, rtol=1e-3, atol=1e-6, equal_nan=True)  # the control makes the ft's change
    net = net_attribution_SF(attr, ctrl)
    assert float(torch.nan_to_num(net).clamp_min(0).max()) <= 1e-3 * float(torch.nan_to_num(attr).abs().max())
    shuffled = _control_of(acts, torch.zeros(acts.n_rows, 32))
    shuffled.token_N = acts.token_N.roll(1)  # other tokens: not the run's rows
    with pytest.raises(DataError, match="control activations differ from the run's cache at row 0"):
        collect_stats(
            cc, acts, max_rows=0, batch_size=200, first_assistant_tokens=3, top_k=6, fast=True, control=shuffled
        )


def test_non_finite_activations_are_refused_naming_the_row() -> None:
    from crosscoder.errors import NumericsError

    acts, _ = synthetic_pair()
    cc = _cc(arch="l1")
    kw = dict(max_rows=0, batch_size=200, first_assistant_tokens=3, top_k=6, fast=True)
    bad = _control_of(acts, torch.zeros(acts.n_rows, 32))
    bad.x_NMLD[37, 1, 0, 3] = float("nan")  # the control model's row 37: sequence 1, position 5
    with pytest.raises(NumericsError, match="in the control cache at sequence 1 position 5; rebuild the control cache"):
        collect_stats(cc, acts, control=bad, **kw)
    acts.x_NMLD[40, 0, 0, 0] = float("inf")
    with pytest.raises(NumericsError, match="in the cache at sequence 1 position 8; rebuild the cache"):
        collect_stats(cc, acts, **kw)
