"""Every architecture's forward, loss and gradient on tiny sizes; shared latents; save/load; fold_scale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crosscoder.errors import DataError, ModelError, NumericsError
from crosscoder.xc import ARCHITECTURES, Crosscoder, CrosscoderConfig

M, L, D, F, K = 2, 2, 8, 32, 4


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (conftest)


def make(arch: str, **kw) -> Crosscoder:
    cfg = CrosscoderConfig(architecture=arch, n_latents=F, k=K, n_models=M, n_hooks=L, d_model=D, **kw)
    return Crosscoder(cfg, seed=0)


def batch(B: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, M, L, D, generator=torch.Generator().manual_seed(seed)) * 3.0


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_forward_loss_gradient(arch: str) -> None:
    cc = make(arch)
    x = batch()
    xhat, f = cc(x)
    assert xhat.shape == x.shape and f.shape == (16, F)
    assert bool((f >= 0).all())
    if arch == "topk":
        assert bool(((f > 0).sum(1) <= K).all())
    if arch == "batchtopk":
        assert int((f > 0).sum()) <= K * 16
    out = cc.loss_terms(cc.normalise(x), k=K, sparsity_coeff=1.0)
    # the loss is the reconstruction error (normalised space, summed over models/hooks/dims, mean over tokens)
    xn = cc.normalise(x)
    xhat_n = cc.normalise(xhat)
    torch.testing.assert_close(out.recon, (xn - xhat_n).pow(2).sum() / 16, rtol=1e-4, atol=1e-4)
    out.loss.backward()
    for name, p in cc.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().sum()) > 0, f"{arch}: no gradient reaches {name}"


def test_l1_penalty_weights_decoder_norm_sum() -> None:
    cc = make("l1", n_shared=4, shared_penalty_scale=0.1)
    x = batch()
    f = cc.encode(x)
    norms_F = cc.decoder_norms_FM().sum(1)
    share = torch.ones(F)
    share[:4] = 0.1
    want = (f * norms_F * share).sum(1).mean()
    out = cc.loss_terms(cc.normalise(x), k=K, sparsity_coeff=2.0)
    torch.testing.assert_close(out.penalty, want.detach())
    torch.testing.assert_close(out.loss.detach(), out.recon + 2.0 * want.detach())


def test_jumprelu_threshold_gets_straight_through_gradient() -> None:
    cc = make("jumprelu", jumprelu_threshold_init=0.05, jumprelu_bandwidth=0.5)
    x = batch(64)
    pre = torch.addmm(cc.b_enc_F, cc.normalise(x), cc.W_enc_XF)
    penalty = cc.sparsity.penalty(
        pre, cc.sparsity.activate(pre, cc.decoder_norms_FM().sum(1), cc.share_F, K), None, cc.share_F
    )
    torch.testing.assert_close(penalty, (pre > cc.sparsity.log_threshold_F.exp()).float().sum(1).mean())
    penalty.backward()  # the L0 penalty alone: raising thresholds lowers it
    g = cc.sparsity.log_threshold_F.grad
    assert g is not None and bool((g <= 0).all()) and float(g.sum()) < 0
    f = cc.encode(x)
    thr = cc.sparsity.log_threshold_F.exp()
    assert bool(((f == 0) | (f > thr)).all())


def test_shared_latents_tied_across_models() -> None:
    cc = make("batchtopk", n_shared=3, dec_init_same=False)
    W = cc.W_dec_FMLD
    assert torch.equal(W[:3, 0], W[:3, 1]) and not torch.equal(W[3:, 0], W[3:, 1])
    opt = torch.optim.Adam(cc.parameters(), lr=1e-2)
    for s in range(3):
        out = cc.loss_terms(cc.normalise(batch(seed=s)), k=K, sparsity_coeff=0.0)
        out.loss.backward()
        g = cc.W_dec_FMLD.grad
        assert g is not None and torch.equal(g[:3, 0], g[:3, 1])
        opt.step()
        opt.zero_grad()
    assert torch.equal(W[:3, 0], W[:3, 1])


def test_same_decoder_init_starts_shared_then_diverges() -> None:
    cc = make("batchtopk")
    W = cc.W_dec_FMLD
    assert torch.equal(W[:, 0], W[:, 1])  # every latent starts with cosine 1 between models
    opt = torch.optim.Adam(cc.parameters(), lr=1e-2)
    x = batch(seed=1)
    x[:, 1] += 2.0 * torch.randn(D, generator=torch.Generator().manual_seed(5))  # the models differ
    out = cc.loss_terms(cc.normalise(x), k=K, sparsity_coeff=0.0)
    out.loss.backward()
    opt.step()
    assert not torch.equal(W[:, 0], W[:, 1])


def test_init_decoder_norm_and_encoder_transpose() -> None:
    cc = make("topk", dec_init_norm=0.3)
    torch.testing.assert_close(cc.decoder_norms_FML(), torch.full((F, M, L), 0.3))
    torch.testing.assert_close(cc.W_enc_MLDF.permute(3, 0, 1, 2), cc.W_dec_FMLD)
    for arch, norm in (("l1", 0.08), ("batchtopk", 0.5)):  # architecture defaults when dec_init_norm = 0
        torch.testing.assert_close(make(arch).decoder_norms_FML(), torch.full((F, M, L), norm))


def test_init_from_batch() -> None:
    x = batch(256)
    cc = make("jumprelu", jumprelu_threshold_init=1e-4)
    cc.init_from_batch(cc.normalise(x))
    torch.testing.assert_close(cc.b_dec_MLD, cc.normalise(x).mean(0).view(M, L, D))
    l0 = float((cc.encode(x) > 0).sum(1).float().mean())
    assert abs(l0 - K) < 1.0, l0  # thresholds at each latent's top-k/F quantile: about k active per token


def test_batchtopk_eval_uses_threshold() -> None:
    cc = make("batchtopk").eval()
    with pytest.raises(ModelError, match="threshold"):
        cc.encode(batch())
    cc.sparsity.update_threshold(torch.tensor(0.02))
    x = batch(8)
    f_all = cc.encode(x)
    f_one = cc.encode(x[:1])
    torch.testing.assert_close(f_all[:1], f_one)  # per-token at inference: independent of the batch
    score = torch.relu(torch.addmm(cc.b_enc_F, cc.normalise(x), cc.W_enc_XF)) * cc.decoder_norms_FM().sum(1)
    assert torch.equal(f_all > 0, score > 0.02)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    cc = make("batchtopk", n_shared=2)
    cc.sparsity.update_threshold(torch.tensor(0.3))
    with torch.no_grad():
        cc.scale_ML.copy_(torch.tensor([[0.5, 2.0], [1.5, 0.25]]))
    cc.save(tmp_path / "cc")
    assert sorted(p.name for p in (tmp_path / "cc").iterdir()) == [
        "checksums.json",
        "config.json",
        "crosscoder.safetensors",
    ]
    back = Crosscoder.load(tmp_path / "cc")
    assert not back.training and back.cfg == cc.cfg
    for name, t in cc.state_dict().items():
        assert torch.equal(t, back.state_dict()[name]), name
    x = batch()
    torch.testing.assert_close(back(x)[0], cc.eval()(x)[0])


def test_load_refuses_bad_files(tmp_path: Path) -> None:
    cc = make("topk")
    folder = cc.save(tmp_path / "cc")
    (folder / "crosscoder.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="crosscoder.safetensors has the wrong size.*rebuild it with"):
        Crosscoder.load(folder)
    (folder / "checksums.json").unlink()  # a folder written before checksums: the file's own checks still apply
    with pytest.raises(DataError, match="corrupt safetensors"):
        Crosscoder.load(folder)
    cc.save(folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["crosscoder"]["n_latents"] = 64
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="config.json (is corrupt|has the wrong size)"):
        Crosscoder.load(folder)
    (folder / "checksums.json").unlink()
    with pytest.raises(DataError, match="shape"):
        Crosscoder.load(folder)
    with torch.no_grad():
        cc.W_dec_FMLD[0, 0, 0, 0] = float("nan")
    cc.save(folder)
    with pytest.raises(NumericsError, match="NaN"):
        Crosscoder.load(folder)
    with pytest.raises(DataError, match="missing file"):
        Crosscoder.load(tmp_path / "nowhere")


def test_bad_batch_shape_refused() -> None:
    cc = make("topk")
    with pytest.raises(DataError, match="expects"):
        cc(torch.randn(4, M, L, D + 1))


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_fold_scale_keeps_outputs(arch: str) -> None:
    cc = make(arch)
    with torch.no_grad():
        cc.scale_ML.copy_(torch.tensor([[0.5, 2.0], [1.5, 0.25]]))
        cc.b_dec_MLD.normal_()
    if hasattr(cc.sparsity, "update_threshold"):  # BatchTopK and its subclasses (dfc, matryoshka)
        cc.sparsity.update_threshold(torch.tensor(0.01))
    cc.eval()
    folded = cc.fold_scale()
    assert torch.equal(folded.scale_ML, torch.ones(M, L))
    torch.testing.assert_close(folded.decoder_norms_FM(), cc.decoder_norms_FM())
    x = batch(seed=3)
    (xh, f), (xh2, f2) = cc(x), folded(x)
    torch.testing.assert_close(f2, f, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(xh2, xh, rtol=1e-4, atol=1e-4)
