"""Series statistics of a crosscoder against brute force: decoder geometry per checkpoint, per-checkpoint firing,
and the persona-vector projection of the reconstructed and of the true mean shift from the base."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crosscoder.analysis.trajectory.stats import series_stats
from crosscoder.data import DataConfig, Role, prepare_activations
from crosscoder.models import load_model, make_tiny_llama
from crosscoder.xc.config import CrosscoderConfig
from crosscoder.xc.model import Crosscoder


@pytest.fixture(scope="module")
def acts(tiny_spec, tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    specs = [tiny_spec, *(make_tiny_llama(tiny_dir / f"stats_c{i}", seed=20 + i, name=f"c{i}") for i in (1, 2))]
    cfg = DataConfig(hooks=["blocks.2.hook_resid_post"], n_tokens=800, seq_len=40, harvest_batch_size=8,
                     shard_tokens=400, cache_root=str(tmp_path_factory.mktemp("stats")), norm_sample_tokens=400)  # fmt: skip
    return prepare_activations([load_model(s) for s in specs], cfg)


def test_series_stats_match_brute_force(acts) -> None:  # type: ignore[no-untyped-def]
    cfg = CrosscoderConfig(n_models=3, n_hooks=1, d_model=64, n_latents=32, architecture="topk", k=4)
    cc = Crosscoder(cfg, seed=0)
    cc.scale_ML.copy_(acts.scale_ML)
    with torch.no_grad():
        cc.b_dec_MLD.normal_()
        cc.W_dec_FMLD[:, 2] *= 2.0  # checkpoint 2's decoders twice as long, same direction
    cc.eval()
    v = torch.randn(64)
    s = series_stats(cc, acts, ["base", "c1", "c2"], {"t": v}, batch_size=300)
    assert s.dec_norm_FK[:, 2] == pytest.approx(2 * s.dec_norm_FK[:, 0], rel=1e-5)
    assert s.cos_base_FK[:, 0] == pytest.approx(1.0) and s.cos_base_FK[:, 2] == pytest.approx(1.0, abs=1e-6)
    assert s.rel_norm_FK[:, 2] == pytest.approx(2 / 3, rel=1e-5)

    rows = [rb for rb in acts.iter_rows(5000)]
    x = torch.cat([r.x_BMLD[r.train_mask_B] for r in rows])
    role = torch.cat([r.role_B[r.train_mask_B] for r in rows])
    with torch.no_grad():
        xhat, f = cc(x)
        fired_on_c1 = (cc.encode(x[:, [1, 1, 1]]) > 0).float().mean(0)
    unit = v / v.norm()
    a = role == int(Role.ASSISTANT)
    assert 0 < int(a.sum()) < x.shape[0] and s.n_rows["assistant"] == int(a.sum())
    want = ((xhat[a, :, 0] - xhat[a, :1, 0]).mean(0) @ unit).numpy()
    np.testing.assert_allclose(s.signal["t"]["assistant"], want, rtol=1e-4, atol=1e-4)
    want_all = ((xhat[:, :, 0] - xhat[:, :1, 0]).mean(0) @ unit).numpy()
    np.testing.assert_allclose(s.signal["t"]["all"], want_all, rtol=1e-4, atol=1e-4)
    true = ((x[a, :, 0] - x[a, :1, 0]).mean(0) @ unit).numpy()
    np.testing.assert_allclose(s.activation_signal["t"]["assistant"], true, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s.freq_F, (f > 0).float().mean(0).numpy(), atol=1e-6)
    np.testing.assert_allclose(s.freq_on_FK[:, 1], fired_on_c1.numpy(), atol=1e-6)
    # attribution of each checkpoint's shift from the base (normalised space), as the model-diff score reads a pair
    xn = x * cc.scale_ML[None, :, :, None]
    for k in (1, 2):
        delta = (xn[:, k] - xn[:, 0]).reshape(len(x), -1).double()
        dd = (cc.W_dec_FMLD[:, k] - cc.W_dec_FMLD[:, 0]).reshape(32, -1).detach().double()
        want_attr = (f.double() * (delta @ dd.T)).sum(0) / (delta**2).sum()
        np.testing.assert_allclose(s.attr_FK["all"][:, k], want_attr.numpy(), rtol=1e-4, atol=1e-7)
    assert np.all(s.attr_FK["assistant"][:, 0] == 0)
    assert s.peak_K.shape == (32,) and s.series_attr_F.shape == (32,)
    np.testing.assert_allclose(s.series_attr_F, np.maximum(s.attr_FK["all"], s.attr_FK["assistant"]).max(1))
    # contributions: latent j's share of the signal, the decoder-bias term making up the rest
    assert s.contrib["t"]["assistant"].shape == (32, 3) and np.all(s.contrib["t"]["assistant"][:, 0] == 0)
    np.testing.assert_allclose(
        s.contrib["t"]["assistant"][:, 2], (f[a].mean(0).double() * ((cc.W_dec_FMLD[:, 2, 0] / cc.scale_ML[2, 0] -
        cc.W_dec_FMLD[:, 0, 0] / cc.scale_ML[0, 0]).double() @ unit.double())).detach().numpy(), rtol=1e-4, atol=1e-6)  # fmt: skip
