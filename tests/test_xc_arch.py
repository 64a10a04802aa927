"""The dfc and matryoshka architectures: fast path = dense reference (values and gradients), structure kept by
training and checked on load, the nested loss as its formula, and one-line config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crosscoder.errors import ConfigError, DataError
from crosscoder.testing.xc_pairs import fast_dense_pair
from crosscoder.xc import Crosscoder, CrosscoderConfig, LoggingConfig, TrainerConfig, train
from crosscoder.xc.dfc import allowed_mask, exclusive_blocks
from crosscoder.xc.synthetic import SyntheticPairs

DATA = SyntheticPairs(n_models=2, n_hooks=1, d_model=16, n_features=48, n_exclusive=6, batch_size=128, seed=0)
LOG = LoggingConfig(wandb_mode="disabled", progress=False, measure_mfu=False, hist_every=0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (conftest)


def pair(arch: str, dtype: torch.dtype, **kw: object) -> tuple[Crosscoder, Crosscoder]:
    return fast_dense_pair(arch, dtype, n_models=2, **kw)


@pytest.mark.parametrize("arch", ["dfc", "matryoshka"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_matches_dense(arch: str, dtype: torch.dtype) -> None:
    fast, dense = pair(arch, dtype, n_shared=8)
    x = torch.randn(48, 2, 2, 16, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 3
    dead = torch.rand(256, generator=torch.Generator().manual_seed(1)) < 0.3
    outs = []
    for cc in (fast, dense):
        out = cc.loss_terms(cc.normalise(x), k=8, sparsity_coeff=0.0, dead_F=dead, aux_k=16, aux_coeff=0.5)
        out["loss"].backward()
        outs.append(out)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    assert (float(outs[0]["extra"]) > 0) == (arch == "matryoshka")  # only matryoshka adds a term
    for key in ("loss", "recon", "extra", "aux", "sq_err_ML", "fired_F", "l0", "min_score"):
        torch.testing.assert_close(outs[0][key], outs[1][key], **tol)
    grads_dense = dict(dense.named_parameters())
    for name, p in fast.named_parameters():
        q = grads_dense[name]
        assert p.grad is not None and q.grad is not None and float(p.grad.abs().max()) > 0, name
        torch.testing.assert_close(p.grad, q.grad, **tol, msg=lambda m, n=name: f"{n}: {m}")


def test_matryoshka_loss_is_the_sum_of_the_nested_reconstructions() -> None:
    cc = Crosscoder(CrosscoderConfig(architecture="matryoshka", n_latents=64, k=4, n_models=2, n_hooks=1, d_model=8,
                                     matryoshka_prefixes=[0.125, 0.5]), seed=0).double()  # fmt: skip
    x = torch.randn(32, 2, 1, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x_n = cc.normalise(x)
    out = cc.loss_terms(x_n, k=4, sparsity_coeff=0.0)
    with torch.no_grad():
        f_BF = cc.sparsity.activate(torch.addmm(cc.b_enc_F, x_n, cc.W_enc_XF), cc._dec_norm_F(), cc.share_F, 4)
    want = 0.0
    for g in (8, 32):  # each prefix alone: the latents >= g switched off
        xhat = f_BF[:, :g] @ cc.W_dec_FX[:g].detach() + cc.b_dec_MLD.detach().reshape(-1)
        want += float((x_n - xhat).pow(2).sum()) / 32
    assert float(out["extra"]) == pytest.approx(want, rel=1e-10)
    assert float(out["loss"]) == pytest.approx(float(out["recon"]) + want, rel=1e-10)


def _trained(arch: str, tmp_path: Path, **kw) -> Crosscoder:
    cfg = CrosscoderConfig(architecture=arch, n_latents=96, k=6, n_models=2, n_hooks=1, d_model=16, **kw)
    cc = Crosscoder(cfg, seed=0)
    cc.scale_ML.copy_(DATA.scale_ML())
    tc = TrainerConfig(steps=150, batch_size=128, lr=3e-3, warmup_steps=5, log_every=50, checkpoint_every=60,
                       dead_tokens=1280, aux_k=16)  # fmt: skip
    train(cc, DATA.batches_from, tc, LOG, tmp_path, run_info={"models": ["base", "ft"]})
    return cc


def test_dfc_blocks_stay_exclusive_through_training_and_load(tmp_path: Path) -> None:
    cc = _trained("dfc", tmp_path, dfc_exclusive=0.1)
    base_only, ft_only = exclusive_blocks(cc.cfg)
    assert len(base_only) == len(ft_only) == 10 and ft_only.stop == 96
    norms_FM = cc.decoder_norms_FM().detach()
    assert bool((norms_FM[ft_only.start : ft_only.stop, 0] == 0).all())  # exactly zero after 150 Adam steps
    assert bool((norms_FM[base_only.start : base_only.stop, 1] == 0).all())
    assert bool((cc.W_enc_FMLD.detach()[ft_only.start : ft_only.stop, 0] == 0).all())
    assert float(norms_FM[ft_only.start : ft_only.stop, 1].min()) > 0  # they did train
    assert float(norms_FM[: base_only.start].min()) > 0  # shared latents decode to both models
    back = Crosscoder.load(tmp_path / "final")
    torch.testing.assert_close(back.W_dec_FMLD, cc.W_dec_FMLD)
    tensors = cc.tensors()
    tensors["W_dec_FMLD"][ft_only.start, 0, 0, 0] = 0.5  # a base decoder for a ft-only latent
    with pytest.raises(DataError, match="exclusive block; the file is corrupt"):
        Crosscoder(cc.cfg).load_tensors(tensors, "x.safetensors")


def test_matryoshka_first_prefix_reconstructs_better_than_batchtopk(tmp_path: Path) -> None:
    fve = {}
    for arch in ("batchtopk", "matryoshka"):
        cc = _trained(arch, tmp_path / arch, matryoshka_prefixes=[0.125, 0.5])
        x_n = cc.normalise(torch.cat([DATA.batch(10_000 + i) for i in range(4)]))
        with torch.no_grad():
            f_BF = cc.sparsity.activate(torch.addmm(cc.b_enc_F, x_n, cc.W_enc_XF), cc._dec_norm_F(), cc.share_F, 6)
            xhat = f_BF[:, :12] @ cc.W_dec_FX[:12] + cc.b_dec_MLD.reshape(-1)
        fve[arch] = 1 - float((x_n - xhat).pow(2).sum() / (x_n - x_n.mean(0)).pow(2).sum())
    assert fve["matryoshka"] > fve["batchtopk"] + 0.1, fve


def test_bad_architecture_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"crosscoder.architecture: unknown architecture 'dfx'; choose one of .*dfc"):
        CrosscoderConfig(architecture="dfx")
    with pytest.raises(ConfigError, match="crosscoder.dfc_exclusive: must be in"):
        CrosscoderConfig(architecture="dfc", dfc_exclusive=0.6)
    with pytest.raises(ConfigError, match="crosscoder.matryoshka_prefixes: need ascending"):
        CrosscoderConfig(architecture="matryoshka", matryoshka_prefixes=[0.5, 0.25])
    with pytest.raises(ConfigError, match="crosscoder.dfc_exclusive: 2 models x 4 exclusive latents leave 8 for 10"):
        Crosscoder(CrosscoderConfig(architecture="dfc", n_latents=16, k=2, n_shared=10, dfc_exclusive=0.25,
                                    n_models=2, n_hooks=1, d_model=4))  # fmt: skip
    with pytest.raises(ConfigError, match="crosscoder.matryoshka_prefixes: .* widths"):
        Crosscoder(CrosscoderConfig(architecture="matryoshka", n_latents=8, k=2, matryoshka_prefixes=[0.01, 0.5],
                                    n_models=2, n_hooks=1, d_model=4))  # fmt: skip
    mask = allowed_mask(CrosscoderConfig(architecture="dfc", n_latents=20, k=2, n_models=3, dfc_exclusive=0.1))
    assert mask.sum(0).tolist() == [16.0, 16.0, 16.0] and mask.sum(1).tolist() == [3.0] * 14 + [1.0] * 6
