"""Export each model's slice of a crosscoder as a SAELens SAE folder (`cfg.json` + `sae_weights.safetensors`).

`export_saelens(run_dir_or_crosscoder, out_dir)` writes one folder per (model, hook), `<out_dir>/<model>__<hook>/`,
that `sae_lens.SAE.load_from_disk` loads. The exported SAE takes RAW activations: the crosscoder's input scale
`scale_ML` is folded into the weights (W_enc * s, W_dec / s, b_dec / s), and `apply_b_dec_to_input` is false because
the crosscoder does not subtract its decoder bias before encoding.

Architecture mapping (exact for the slice's inputs; see "approximation" below):

| crosscoder | SAELens      | activation of latent j                                                          |
|------------|--------------|---------------------------------------------------------------------------------|
| l1         | standard     | relu(pre_j)                                                                     |
| jumprelu   | jumprelu     | pre_j * (pre_j > t_j), t_j = the learned threshold                              |
| batchtopk  | jumprelu     | relu(pre_j) * (pre_j > t_j), t_j = theta * share_j / sum_{m,l} ||d_{j,m,l}||    |
| topk       | topk         | top k of pre_j * w_j, w_j = sum_{m,l} ||d_{j,m,l}|| / share_j (w folded in)     |

BatchTopK at inference keeps latent j when its score pre_j * sum||d_j|| / share_j exceeds the trained threshold
theta, which is a per-latent threshold on pre_j: a JumpReLU. For TopK the ranking weight w_j is folded into the
encoder (and 1/w_j into the decoder), so the topk SAE's activations are in score units (f_j * w_j) while its
reconstruction equals the crosscoder's.

Approximation. A crosscoder encodes all models together: pre = sum_{m,l} W_enc[m,l] (s_ml x_ml) + b_enc. A
single-model SAE only sees its own model's activation x, so it substitutes the others (`export.encoder`):

* `encoder="fit"` (default): every other input (other models, other hooks) is replaced by its least-squares linear
  prediction from x over the run's activation cache (`crosscoder.analysis.export.input_fit`). Exact when the other
  models' activations are an affine function of this one's (a planted direction, a rotation); in general the best
  linear stand-in for the joint encoding, so the slice reconstructs its model nearly as well as the crosscoder does.
  Needs the activation cache (run.json's, or `activations=`).
* `encoder="mirror"`: every model's input is replaced by this model's activation x (at the same hook),
  W_enc' = sum_m s_ml W_enc[m,l]. Good when the fine-tune's activations stay close to the base's; poor when the
  models differ a lot (a constant shift c adds the bias W_enc[other] c to every latent).
* `encoder="own"`: the other models' inputs are zero, W_enc' = s_ml W_enc[m,l]. Exact for the crosscoder fed x for
  this model and zeros elsewhere; it underestimates latents whose encoder is spread over the models.

In `mirror` and `own` the other hooks' inputs are zero. The choice and this note are stored in the SAE's `cfg.json`
metadata (`crosscoder_encoder`, `crosscoder_approximation`), with what SAELens flows need to load the model
(`crosscoder.analysis.export.saelens_meta`). Decoding is exact: x_hat_m is the crosscoder's reconstruction of model
m from the same latents. `python -m crosscoder.bench export` measures each mode's FVE against the crosscoder's.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.analysis.export.input_fit import InputFit, RowFilter, fit_inputs, input_moments
from crosscoder.analysis.export.saelens_meta import run_metadata
from crosscoder.errors import ConfigError, DataError, NumericsError
from crosscoder.io import atomic_dir, atomic_save_safetensors, atomic_write_json, read_json

if TYPE_CHECKING:
    from crosscoder.data.protocols import Activations
    from crosscoder.xc.model import Crosscoder

log = logging.getLogger(__name__)

ENCODER_MODES = ("fit", "mirror", "own")
"""How a single-model SAE stands in for the other models' inputs (see the module docstring)."""
_SAE_ARCH = {"l1": "standard", "jumprelu": "jumprelu", "batchtopk": "jumprelu", "topk": "topk", "dfc": "jumprelu",
             "matryoshka": "jumprelu"}  # fmt: skip
"""SAELens architecture of each crosscoder architecture's single-model slice (dfc and matryoshka are BatchTopK at
inference: a per-latent threshold, as jumprelu)."""
_APPROX = {
    "fit": "single-model slice of a crosscoder: every other input (other models and hooks) is replaced by its "
    "least-squares linear prediction from this model's activation over the run's activation cache",
    "mirror": "single-model slice of a crosscoder: every model's input is replaced by this model's activation "
    "(W_enc = sum over models of the scaled encoder slices at this hook); other hooks' inputs are zero",
    "own": "single-model slice of a crosscoder: the other models' inputs are zero (W_enc = this model's scaled "
    "encoder slice); other hooks' inputs are zero",
}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _load_source(source: str | Path | Crosscoder) -> tuple[Crosscoder, dict[str, Any], str]:
    """(crosscoder, run.json or {}, description) from a run folder, a crosscoder folder or a Crosscoder."""
    from crosscoder.xc.model import CONFIG, WEIGHTS, Crosscoder

    if isinstance(source, Crosscoder):
        return source, {}, "in-memory crosscoder"
    folder = Path(source)
    if (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file():
        run_json = folder.parent / "run.json"
        return Crosscoder.load(folder), read_json(run_json) if run_json.is_file() else {}, str(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist; pass a training run folder (holding final/) or a crosscoder folder")
    final = folder / "final"
    if not ((final / WEIGHTS).is_file() and (final / CONFIG).is_file()):
        raise DataError(
            f"run folder {folder} has no finished checkpoint (final/{WEIGHTS}); finish training "
            "(python train.py ... trainer.resume=true) or pass a checkpoint folder"
        )
    info = read_json(folder / "run.json") if (folder / "run.json").is_file() else {}
    return Crosscoder.load(final), info, str(folder)


def _check_mode(encoder: str, fit: InputFit | None) -> None:
    if encoder not in ENCODER_MODES:
        raise ConfigError(f"export.encoder: unknown mode {encoder!r}; choose one of {', '.join(ENCODER_MODES)}")
    if encoder == "fit" and fit is None:
        raise ConfigError("export.encoder=fit needs the input fit of the run's activations; pass fit= (input_fit)")


def slice_weights(
    cc: Crosscoder, m: int, h: int, encoder: str = "mirror", fit: InputFit | None = None
) -> dict[str, Tensor]:
    """Raw-space SAE weights of model m at hook h: W_enc [D, F], b_enc [F], W_dec [F, D], b_dec [D] (+ threshold [F]).
    `fit` (mode `fit`) is the prediction of the other inputs from this one (`input_fit.fit_inputs`)."""
    _check_mode(encoder, fit)
    arch = cc.cfg.architecture
    with torch.no_grad():
        s_ML = cc.scale_ML.detach().float()
        W_enc_MLDF = cc.W_enc_MLDF.detach().float()
        b_enc_F = cc.b_enc_F.detach().float().clone()
        if encoder == "fit":
            assert fit is not None
            W_enc_DF = torch.einsum("mlde,mlef->df", fit.A_MLDD, W_enc_MLDF) * s_ML[m, h]
            b_enc_F = b_enc_F + torch.einsum("mld,mldf->f", fit.c_MLD, W_enc_MLDF)
        elif encoder == "mirror":
            W_enc_DF = (W_enc_MLDF[:, h] * s_ML[:, h, None, None]).sum(0)  # [D, F]
        else:
            W_enc_DF = W_enc_MLDF[m, h] * s_ML[m, h]
        W_dec_FD = cc.W_dec_FMLD.detach().float()[:, m, h] / s_ML[m, h]
        b_dec_D = cc.b_dec_MLD.detach().float()[m, h] / s_ML[m, h]
        dec_norm_F = cc.decoder_norms_FML().detach().float().sum(dim=(1, 2))  # normalised space, all models/hooks
        share_F = cc.share_F.detach().float()
        out = {"W_enc": W_enc_DF.contiguous(), "b_enc": b_enc_F, "W_dec": W_dec_FD.contiguous(), "b_dec": b_dec_D}
        if arch == "jumprelu":
            out["threshold"] = cc.sparsity.get_parameter("log_threshold_F").detach().float().exp()
        elif cc.threshold is not None:  # batchtopk and its variants (dfc, matryoshka)
            theta = float(cc.threshold)
            if theta < 0:
                raise DataError(
                    "the crosscoder's BatchTopK threshold was never estimated (untrained); train it before exporting"
                )
            dead = dec_norm_F <= 0
            out["threshold"] = torch.where(
                dead, torch.full_like(dec_norm_F, float("inf")), theta * share_F / dec_norm_F.clamp_min(1e-30)
            )
        elif arch == "topk":
            w_F = dec_norm_F / share_F
            out["W_enc"] = out["W_enc"] * w_F
            out["b_enc"] = out["b_enc"] * w_F
            out["W_dec"] = out["W_dec"] / w_F.clamp_min(1e-30)[:, None]
    for name, t in out.items():
        if name != "threshold" and not bool(torch.isfinite(t).all()):
            raise NumericsError(
                f"exported tensor {name} of model {m} hook {h} is not finite; check the crosscoder weights"
            )
    return out


def crosscoder_slice_reference(
    cc: Crosscoder, x_BD: Float[Tensor, "B D"], m: int, h: int, encoder: str = "mirror", fit: InputFit | None = None
) -> tuple[Float[Tensor, "B F"], Float[Tensor, "B D"]]:
    """The crosscoder math the exported SAE reproduces: (latents, reconstruction of model m at hook h) for raw x_BD."""
    _check_mode(encoder, fit)
    M, L = cc.cfg.n_models, cc.cfg.n_hooks
    x_BMLD = x_BD.new_zeros(x_BD.shape[0], M, L, x_BD.shape[1])
    s_ML = cc.scale_ML.detach().float()
    if fit is not None and encoder == "fit":
        x_BMLD = fit.predict(x_BD * s_ML[m, h]) / s_ML[None, :, :, None]
        x_BMLD[:, m, h] = x_BD
    elif encoder == "mirror":
        x_BMLD[:, :, h] = x_BD[:, None]
    else:
        x_BMLD[:, m, h] = x_BD
    with torch.no_grad():
        f_BF = cc.encode(x_BMLD)
        xhat_BD = cc.decode(f_BF)[:, m, h]
        if cc.cfg.architecture == "topk":  # the export's activations are in score units
            f_BF = f_BF * (cc.decoder_norms_FML().sum(dim=(1, 2)) / cc.share_F)
    return f_BF, xhat_BD


def _sae_config(arch: str, d_in: int, d_sae: int, k: int, metadata: dict[str, Any]) -> Any:
    from sae_lens import JumpReLUSAEConfig, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.topk_sae import TopKSAEConfig

    meta = SAEMetadata(**metadata)
    common: dict[str, Any] = dict(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu", apply_b_dec_to_input=False)
    if arch == "standard":
        return StandardSAEConfig(**common, metadata=meta)
    if arch == "jumprelu":
        return JumpReLUSAEConfig(**common, metadata=meta)
    return TopKSAEConfig(**common, k=k, rescale_acts_by_decoder_norm=False, metadata=meta)


def _write_folder(target: Path, cfg_dict: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Write cfg.json + sae_weights.safetensors into a temp folder, then swap it in for `target`."""
    from sae_lens.constants import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME

    with atomic_dir(target) as tmp:
        atomic_save_safetensors(tmp / SAE_WEIGHTS_FILENAME, tensors)
        atomic_write_json(tmp / SAE_CFG_FILENAME, cfg_dict)


def probe_inputs(cc: Crosscoder, m: int, h: int, n: int = 64, seed: int = 0) -> Float[Tensor, "n D"]:
    """Raw activations of model m at hook h that exercise the SAE: half Gaussian at the data's scale, half decoded
    from random sparse latents (so plenty of latents fire whatever the sparsity mechanism)."""
    gen = torch.Generator().manual_seed(seed)
    D, F = cc.cfg.d_model, cc.cfg.n_latents
    s = float(cc.scale_ML[m, h])
    noise_BD = torch.randn(n - n // 2, D, generator=gen) / s  # normalised norm ~ sqrt(D)
    k = min(F, max(1, int(getattr(cc.cfg, "k", 8))))
    f_BF = torch.zeros(n // 2, F)
    idx = torch.stack([torch.randperm(F, generator=gen)[:k] for _ in range(n // 2)]) if n // 2 else torch.zeros(0, k)
    f_BF.scatter_(1, idx.long(), torch.rand(n // 2, k, generator=gen) * 4 + 1)
    with torch.no_grad():
        dec_BD = cc.decode(f_BF)[:, m, h]
    return torch.cat([noise_BD, dec_BD + 0.1 * torch.randn(dec_BD.shape, generator=gen) / s])


def _at_threshold(sae: Any, x_BD: Tensor, rel: float = 1e-3) -> Tensor:
    """Entries (input, latent) whose JumpReLU pre-activation lies within `rel` of the input's largest one from the
    latent's threshold (all False for the other architectures).

    A jump is discontinuous: there the exported SAE (its encoder folded and, in `fit` mode, multiplied by the fitted
    map) and the crosscoder may fall on either side by float error alone, so those entries cannot test the export."""
    threshold = getattr(sae, "threshold", None)
    if threshold is None:
        return torch.zeros(x_BD.shape[0], sae.cfg.d_sae, dtype=torch.bool)
    with torch.no_grad():
        pre_BF = x_BD @ sae.W_enc + sae.b_enc
    return (pre_BF - threshold).abs() <= rel * pre_BF.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)


def verify_export(
    folder: Path,
    cc: Crosscoder,
    m: int,
    h: int,
    encoder: str,
    fit: InputFit | None = None,
    n: int = 64,
    atol: float = 1e-4,
) -> float:
    """Load `folder` with SAELens and compare encode/decode with the crosscoder slice on random raw inputs.

    Returns the max abs difference of the reconstructions (relative to their scale); raises NumericsError above atol.
    """
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(folder), device="cpu")
    x_BD = probe_inputs(cc, m, h, n)
    f_ref, xhat_ref = crosscoder_slice_reference(cc, x_BD, m, h, encoder, fit)
    with torch.no_grad():
        f_sae = sae.encode(x_BD)
        xhat_sae = sae.decode(f_sae)
    at_BF = _at_threshold(sae, x_BD)
    if bool(at_BF.any()):  # compare the rest: both sides without those entries and their decoder writes
        with torch.no_grad():
            xhat_sae = xhat_sae - (f_sae * at_BF) @ sae.W_dec
            xhat_ref = xhat_ref - (f_ref * at_BF) @ sae.W_dec
        f_sae, f_ref = f_sae.masked_fill(at_BF, 0.0), f_ref.masked_fill(at_BF, 0.0)
    scale = float(xhat_ref.abs().max().clamp_min(1e-12))
    err = float((xhat_sae - xhat_ref).abs().max()) / scale
    f_err = float((f_sae - f_ref).abs().max()) / float(f_ref.abs().max().clamp_min(1e-12))
    if err > atol or f_err > atol:
        raise NumericsError(
            f"SAELens export {folder} does not reproduce the crosscoder slice (reconstruction error {err:.2e}, latent "
            f"error {f_err:.2e}); report this with the sae_lens version"
        )
    return max(err, f_err)


def _fit_source(encoder: str, info: dict[str, Any], activations: Activations | None) -> Activations | None:
    """The activations the `fit` mode is fitted on: `activations`, else the run's cache (run.json)."""
    if encoder != "fit" or activations is not None:
        return activations
    from crosscoder.data.api import ActivationSet

    path = info.get("activations")
    if not path or not Path(path).is_dir():
        raise DataError(
            f"export.encoder=fit fits the slice's encoder on the run's activation cache, but {path or 'none'} is not "
            "available; pass activations=<cache folder> or choose export.encoder=mirror|own"
        )
    return ActivationSet.open(path, verify=False)


def export_saelens(
    source: str | Path | Crosscoder,
    out_dir: str | Path,
    *,
    encoder: str = "fit",
    model_names: list[str] | None = None,
    hooks: list[str] | None = None,
    activations: Activations | None = None,
    fit_rows: RowFilter | None = None,
    verify: bool = True,
) -> list[Path]:
    """Export every (model, hook) slice of a crosscoder (a run folder, a crosscoder folder or a Crosscoder) for SAELens.

    Writes `<out_dir>/<model>__<hook>/{cfg.json, sae_weights.safetensors}` and returns the folders. Mode `fit` (the
    default) is fitted on `activations` or the run's activation cache (its training rows, or those `fit_rows` picks). With `verify`, each folder is loaded back with
    `sae_lens.SAE.load_from_disk` and checked against the crosscoder's slice math.
    """
    import sae_lens

    if encoder not in ENCODER_MODES:
        raise ConfigError(f"export.encoder: unknown mode {encoder!r}; choose one of {', '.join(ENCODER_MODES)}")
    cc, info, where = _load_source(source)
    cc = cc.float().eval()
    M, L, D, F = cc.cfg.n_models, cc.cfg.n_hooks, cc.cfg.d_model, cc.cfg.n_latents
    names = list(model_names or info.get("model_names") or [f"model{i}" for i in range(M)])
    hook_names = list(hooks or info.get("hooks") or [f"hook{i}" for i in range(L)])
    if len(names) != M or len(hook_names) != L:
        raise DataError(
            f"{where}: {len(names)} model names / {len(hook_names)} hooks for a crosscoder over {M} models x {L} hooks; "
            "pass model_names and hooks matching the crosscoder"
        )
    arch = _SAE_ARCH.get(cc.cfg.architecture)
    if arch is None:
        raise ConfigError(f"export: no SAELens mapping for crosscoder architecture {cc.cfg.architecture!r}")
    acts = _fit_source(encoder, info, activations)
    moments = (
        input_moments(acts, cc.scale_ML.detach().float(), fit_rows) if encoder == "fit" and acts is not None else None
    )
    data_config = getattr(getattr(acts, "manifest", None), "data_config", None)
    out_dir = Path(out_dir)
    written = []
    for m, model in enumerate(names):
        for h, hook in enumerate(hook_names):
            fit = fit_inputs(moments, m, h) if moments is not None else None
            tensors = slice_weights(cc, m, h, encoder, fit)
            metadata = {
                "sae_lens_version": sae_lens.__version__,
                "sae_lens_training_version": None,
                "hook_name": hook,
                "hook_head_index": None,
                **run_metadata(info, data_config, m, model),
                "crosscoder_source": where,
                "crosscoder_architecture": cc.cfg.architecture,
                "crosscoder_models": names,
                "crosscoder_hooks": hook_names,
                "crosscoder_model_index": m,
                "crosscoder_encoder": encoder,
                "crosscoder_approximation": _APPROX[encoder],
                "crosscoder_fit_rows": fit.n_rows if fit is not None else None,
                "crosscoder_scale": float(cc.scale_ML[m, h]),
                "activation_units": "score (f * sum||d|| / share)"
                if cc.cfg.architecture == "topk"
                else "crosscoder latent",
            }
            cfg = _sae_config(arch, D, F, int(cc.cfg.k), metadata)
            folder = out_dir / f"{_safe(model)}__{_safe(hook)}"
            _write_folder(folder, json.loads(json.dumps(cfg.to_dict(), default=str)), tensors)
            if verify:
                err = verify_export(folder, cc, m, h, encoder, fit)
                log.info("exported %s (%s, %s encoder, max rel. error %.1e)", folder, arch, encoder, err)
            written.append(folder)
    return written
