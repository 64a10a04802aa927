"""SAELens export round trip: crosscoder slice -> cfg.json + safetensors -> SAE.load_from_disk -> same math."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crosscoder.analysis.export.saelens import export_saelens, probe_inputs, verify_export
from crosscoder.errors import ConfigError, DataError, NumericsError
from crosscoder.io import atomic_write_json, load_safetensors
from crosscoder.xc.config import CrosscoderConfig
from crosscoder.xc.model import Crosscoder

MODELS = ["base", "ft"]
HOOKS = ["blocks.1.hook_resid_post", "blocks.3.hook_resid_post"]
SAE_ARCH = {"l1": "standard", "jumprelu": "jumprelu", "batchtopk": "jumprelu", "topk": "topk", "dfc": "jumprelu",
            "matryoshka": "jumprelu"}  # fmt: skip


def share_F(cc: Crosscoder) -> torch.Tensor:
    """The penalty scale per latent (a buffer of the crosscoder)."""
    return cc.get_buffer("share_F")


def make_crosscoder(arch: str, n_hooks: int = 2, seed: int = 0) -> Crosscoder:
    """A random crosscoder with non-trivial input scales, biases and an encoder that is not W_dec^T."""
    cfg = CrosscoderConfig(architecture=arch, n_latents=64, k=6, n_models=2, n_hooks=n_hooks, d_model=24, n_shared=3)
    cc = Crosscoder(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        cc.get_buffer("scale_ML").copy_(torch.tensor([[0.5, 2.0], [0.25, 3.0]])[:, :n_hooks])
        cc.W_enc_MLDF.add_(0.05 * torch.randn(cc.W_enc_MLDF.shape, generator=gen))
        cc.W_dec_FMLD[cc.cfg.n_shared :].mul_(1 + torch.rand(64 - 3, 2, n_hooks, 1, generator=gen))
        cc.b_enc_F.copy_(0.05 * torch.randn(64, generator=gen))
        cc.b_dec_MLD.copy_(0.3 * torch.randn(cc.b_dec_MLD.shape, generator=gen))
        if arch == "jumprelu":
            cc.sparsity.get_parameter("log_threshold_F").copy_(torch.empty(64).uniform_(0.01, 0.2, generator=gen).log())
    # a threshold at the median positive score of realistic inputs: some latents fire
    if arch in ("batchtopk", "dfc", "matryoshka"):
        cc.eval()
        x_BD = probe_inputs(cc, 1, 0, 64)
        with torch.no_grad():
            pre = cc.normalise(torch.stack([x_BD, x_BD], 1)[:, :, None].expand(-1, -1, n_hooks, -1).contiguous())
            score = (pre @ cc.W_enc_XF + cc.b_enc_F) * cc.decoder_norms_FM().sum(-1) / share_F(cc)
            cc.sparsity.get_buffer("threshold").fill_(float(score[score > 0].median()))
    return cc.eval()


@pytest.mark.parametrize("encoder", ["mirror", "own"])
@pytest.mark.parametrize("arch", ["l1", "jumprelu", "batchtopk", "topk", "dfc", "matryoshka"])
def test_round_trip_matches_crosscoder_slice(arch: str, encoder: str, tmp_path: Path) -> None:
    import sae_lens
    from sae_lens import SAE

    cc = make_crosscoder(arch)
    folders = export_saelens(cc, tmp_path / "sae", encoder=encoder, model_names=MODELS, hooks=HOOKS, verify=False)
    assert [f.name for f in folders] == [f"{m}__{h}" for m in MODELS for h in HOOKS]
    for m in range(2):
        for h in range(2):
            folder = folders[2 * m + h]
            cfg = json.loads((folder / "cfg.json").read_text())
            assert cfg["architecture"] == SAE_ARCH[arch] and cfg["d_in"] == 24 and cfg["d_sae"] == 64
            assert cfg["metadata"]["sae_lens_version"] == sae_lens.__version__
            assert cfg["metadata"]["hook_name"] == HOOKS[h] and cfg["metadata"]["model_name"] == MODELS[m]
            assert cfg["metadata"]["crosscoder_encoder"] == encoder and "approximation" in str(cfg["metadata"])
            sae = SAE.load_from_disk(folder)
            # the crosscoder's own math, built here independently: raw x of model m at hook h; the other models get
            # the same x ("mirror") or zeros ("own"); every other hook gets zeros
            x_BD = probe_inputs(cc, m, h, 48, seed=7)
            x_BMLD = torch.zeros(48, 2, 2, 24)
            if encoder == "mirror":
                x_BMLD[:, :, h] = x_BD[:, None]
            else:
                x_BMLD[:, m, h] = x_BD
            with torch.no_grad():
                f_ref = cc.encode(x_BMLD)
                xhat_ref = cc.decode(f_ref)[:, m, h]
                if arch == "topk":  # exported activations are in score units
                    f_ref = f_ref * cc.decoder_norms_FM().sum(-1) / share_F(cc)
                f_sae = sae.encode(x_BD)
                xhat_sae = sae.decode(f_sae)
            n_active = int((f_ref > 0).sum())
            assert 0 < n_active < f_ref.numel(), "the probe must exercise both active and inactive latents"
            assert torch.equal(f_sae > 0, f_ref > 0)
            torch.testing.assert_close(f_sae, f_ref, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(xhat_sae, xhat_ref, rtol=1e-4, atol=1e-4)


def test_mirror_equals_crosscoder_on_identical_paired_inputs(tmp_path: Path) -> None:
    """With one hook, feeding both models the same activation is exactly what the mirror export computes."""
    from sae_lens import SAE

    cc = make_crosscoder("batchtopk", n_hooks=1)
    folder = export_saelens(cc, tmp_path, encoder="mirror", model_names=MODELS, hooks=HOOKS[:1], verify=False)[1]
    x_BD = probe_inputs(cc, 1, 0, 32, seed=3)
    with torch.no_grad():
        f_pair = cc.encode(torch.stack([x_BD, x_BD], 1)[:, :, None])
        f_sae = SAE.load_from_disk(folder).encode(x_BD)
    torch.testing.assert_close(f_sae, f_pair, rtol=1e-4, atol=1e-4)


def test_export_from_run_folder_and_verify(tmp_path: Path) -> None:
    cc = make_crosscoder("jumprelu")
    run = tmp_path / "run"
    cc.save(run / "final")
    atomic_write_json(run / "run.json", {"model_names": ["base", "cat ft"], "hooks": HOOKS})
    folders = export_saelens(run, tmp_path / "out", encoder="mirror")  # verify=True: loaded back and checked
    assert [f.name for f in folders] == [
        "base__" + HOOKS[0],
        "base__" + HOOKS[1],
        "cat_ft__" + HOOKS[0],
        "cat_ft__" + HOOKS[1],
    ]
    meta = json.loads((folders[0] / "cfg.json").read_text())["metadata"]
    assert meta["crosscoder_source"] == str(run) and meta["crosscoder_scale"] == pytest.approx(0.5)
    # re-export replaces the folder in place
    assert export_saelens(run, tmp_path / "out", encoder="own")[0] == folders[0]
    # a corrupted export is caught by the verification
    from safetensors.torch import save_file

    w = load_safetensors(folders[0] / "sae_weights.safetensors")
    w["threshold"] = w["threshold"] * 0.5
    save_file(w, str(folders[0] / "sae_weights.safetensors"))
    with pytest.raises(NumericsError, match="does not reproduce"):
        verify_export(folders[0], cc, 0, 0, "own")


def test_bad_sources_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints" / "step_0000010").mkdir(parents=True)
    with pytest.raises(DataError, match="no finished checkpoint"):
        export_saelens(run, tmp_path / "out")
    with pytest.raises(DataError, match="does not exist"):
        export_saelens(tmp_path / "missing", tmp_path / "out")
    cc = make_crosscoder("l1")
    with pytest.raises(DataError, match="model names"):
        export_saelens(cc, tmp_path / "out", model_names=["only_one"])
    with pytest.raises(ConfigError, match="export.encoder"):
        export_saelens(cc, tmp_path / "out", encoder="both")
    untrained = Crosscoder(
        CrosscoderConfig(architecture="batchtopk", n_latents=16, k=2, n_models=2, n_hooks=1, d_model=8)
    )
    with pytest.raises(DataError, match="threshold"):
        export_saelens(untrained, tmp_path / "out", encoder="mirror")
    with pytest.raises(DataError, match="^export.encoder=fit fits the slice's encoder on the run's activation cache"):
        export_saelens(cc, tmp_path / "out")  # fit (the default) needs activations


class AffineActivations:
    """Paired activations where every input is an affine function of the base model's first hook (a fine-tune that
    rotates and shifts the base's activations): the `fit` export must reproduce the joint encoding exactly."""

    def __init__(self, cc: Crosscoder, n: int = 3000, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        M, L, D = cc.cfg.n_models, cc.cfg.n_hooks, cc.cfg.d_model
        u0 = torch.randn(n, D, generator=gen) * torch.linspace(0.5, 2.0, D)
        u = torch.empty(n, M, L, D)
        for m in range(M):
            for h in range(L):
                if (m, h) == (0, 0):
                    u[:, 0, 0] = u0
                    continue
                R = torch.linalg.qr(torch.randn(D, D, generator=gen))[0]
                u[:, m, h] = u0 @ R * (1 + 0.5 * m) + 3.0 * torch.randn(D, generator=gen)
        self.x = u / cc.scale_ML[None, :, :, None]  # raw units
        self.d_model = D

    def iter_rows(self, batch: int):  # type: ignore[no-untyped-def]
        from crosscoder.data.api import RowBatch

        for a in range(0, self.x.shape[0], batch):
            x = self.x[a : a + batch]
            z = torch.zeros(x.shape[0], dtype=torch.long)
            yield RowBatch(x, z, z, z, torch.ones(x.shape[0], dtype=torch.bool), z, z, z)


@pytest.mark.parametrize("arch", ["l1", "batchtopk"])
def test_fit_mode_reproduces_the_joint_encoding_when_inputs_are_affine(arch: str, tmp_path: Path) -> None:
    from sae_lens import SAE

    cc = make_crosscoder(arch)
    acts = AffineActivations(cc)
    fit = export_saelens(cc, tmp_path / "fit", model_names=MODELS, hooks=HOOKS, activations=acts)  # verified
    mirror = export_saelens(cc, tmp_path / "mirror", encoder="mirror", model_names=MODELS, hooks=HOOKS)
    x_BMLD = acts.x[:256]
    with torch.no_grad():
        xhat_BMLD = cc.decode(cc.encode(x_BMLD))
    for i, (m, h) in enumerate((m, h) for m in range(2) for h in range(2)):
        meta = json.loads((fit[i] / "cfg.json").read_text())["metadata"]
        assert meta["crosscoder_encoder"] == "fit" and meta["crosscoder_fit_rows"] == 3000
        x_BD, ref_BD = x_BMLD[:, m, h], xhat_BMLD[:, m, h]
        errs = {}
        for mode, folders in (("fit", fit), ("mirror", mirror)):
            with torch.no_grad():
                sae = SAE.load_from_disk(folders[i])
                errs[mode] = float((sae.decode(sae.encode(x_BD)) - ref_BD).norm() / ref_BD.norm())
        assert errs["fit"] < 1e-3, errs  # the joint encoding, from this model's activation alone
        assert errs["mirror"] > 100 * errs["fit"], errs


def test_metadata_names_the_real_model_hook_and_data(tmp_path: Path) -> None:
    from crosscoder.analysis.export.saelens_meta import run_metadata

    (tmp_path / "planted").mkdir()
    info = {
        "models": [
            {"source": "smollm2-135m-instruct", "adapter": None, "name": "base"},
            {"source": "smollm2-135m-instruct", "adapter": "/org/final", "name": "ft"},
            {"source": str(tmp_path / "planted"), "name": "planted"},
            {"source": "google/gemma-2-2b", "name": "gemma"},
        ]
    }
    data = {"seq_len": 1024, "sources": ["shipped", "hf:monology/pile-uncopyrighted:train"]}
    metas = [run_metadata(info, data, m, f"m{m}") for m in range(4)]
    assert [x["model_name"] for x in metas] == [
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        str((tmp_path / "planted").resolve()),
        "google/gemma-2-2b",
    ]
    assert metas[1]["crosscoder_adapter"] == "/org/final" and metas[0]["crosscoder_adapter"] is None
    assert {x["context_size"] for x in metas} == {1024} and metas[0]["dataset_path"] == "monology/pile-uncopyrighted"
    assert run_metadata({}, None, 0, "base")["model_name"] == "base"  # a bare crosscoder: its label
    assert run_metadata(info, {"sources": ["shipped"]}, 0, "base")["dataset_path"] is None
