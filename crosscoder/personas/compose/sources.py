"""Where persona directions come from: a trait's persona vector, a crosscoder latent's decoder (or the change of its
decoder between two models), or a vector file whose model and hook the user states.

Crosscoder decoders are read from a training run folder (``run.json`` names the models, their content hashes and
the hooks; ``final/`` holds the weights) and returned in each model's raw residual basis (the normalisation scale
``scale_ML`` divided out), so they add directly to that model's activations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from crosscoder.errors import ConfigError, DataError
from crosscoder.io import read_json, sha256_file
from crosscoder.personas.compose.directions import PersonaDirection, Provenance
from crosscoder.personas.vectors import PersonaVectors


def from_persona_vectors(
    pv: PersonaVectors, hook: str, model_name: str = "", name: str | None = None
) -> PersonaDirection:
    """The persona vector of ``pv.trait`` at `hook` (mean pos minus mean neg activation) in the model it was made in."""
    vec = pv.for_hook(hook)
    prov = Provenance(
        "persona_vector",
        trait=pv.trait,
        source_sha256=str(pv.meta.get("trait_sha256", "")) or None,
        detail=f"source={pv.source}",
    )
    model_name = model_name or str(pv.meta.get("model_name", ""))
    return PersonaDirection(name or f"{pv.trait}@{hook}", vec, pv.model_hash, model_name, hook, prov)


def _final_folder(run: Path) -> Path:
    if (run / "crosscoder.safetensors").is_file():
        return run
    if (run / "final" / "crosscoder.safetensors").is_file():
        return run / "final"
    raise DataError(
        f"no crosscoder in {run} (final/crosscoder.safetensors missing); pass a finished train.py run folder"
    )


def _run_info(run: Path) -> dict[str, Any]:
    info_path = run / "run.json" if (run / "run.json").is_file() else run.parent / "run.json"
    info = read_json(info_path)
    if not isinstance(info, dict) or "content_hashes" not in info or "hooks" not in info:
        raise DataError(f"{info_path} has no content_hashes/hooks; it was not written by train.py")
    return info


def _model_index(names: list[str], model: str | int) -> int:
    if isinstance(model, int) or str(model).isdigit():
        idx = int(model)
        if not 0 <= idx < len(names):
            raise ConfigError(f"crosscoder model index {idx} out of range; the run has models {', '.join(names)}")
        return idx
    if model not in names:
        raise ConfigError(f"crosscoder model {model!r} not in the run; pick one of {', '.join(names)}")
    return names.index(str(model))


def run_models(run: str | Path) -> tuple[list[str], list[str], list[str]]:
    """(model names, content hashes, hooks) of a crosscoder training run."""
    run = Path(run)
    info = _run_info(run if (run / "run.json").is_file() else _final_folder(run))
    hashes = [str(h) for h in info["content_hashes"]]
    names = [str(n) for n in info.get("model_names", [])] or [f"model{i}" for i in range(len(hashes))]
    return names, hashes, [str(h) for h in info["hooks"]]


def decoder_matrix(run: str | Path, model: str | int, hook: str | None = None) -> torch.Tensor:
    """Every latent's decoder for `model` at `hook` in the model's raw residual basis, ``[F, D]``."""
    from crosscoder.xc.model import Crosscoder

    names, _, hooks = run_models(run)
    hook = hook or hooks[0]
    if hook not in hooks:
        raise ConfigError(f"hook {hook!r} is not one of the crosscoder's hooks ({', '.join(hooks)}); pick one of them")
    cc = Crosscoder.load(_final_folder(Path(run)))
    mi, li = _model_index(names, model), hooks.index(hook)
    with torch.no_grad():
        return (cc.W_dec_FMLD[:, mi, li, :] / cc.scale_ML[mi, li]).clone()


def decoder_directions(
    run: str | Path,
    latents: list[int],
    model: str | int,
    *,
    minus: str | int | None = None,
    hook: str | None = None,
) -> list[PersonaDirection]:
    """Latents' decoders for `model` in its raw residual basis, or with `minus` the decoder change d_model - d_minus.

    A decoder change is recorded as a direction of the `minus` model (the one it is usually added to: steering the
    base along d_ft - d_base); its provenance names both models.
    """
    run = Path(run)
    names, hashes, hooks = run_models(run)
    hook = hook or hooks[0]
    mi = _model_index(names, model)
    raw = {mi: decoder_matrix(run, mi, hook)}
    n_lat = int(raw[mi].shape[0])
    bad = [j for j in latents if not 0 <= j < n_lat]
    if bad:
        raise ConfigError(f"latent {bad[0]} out of range; the crosscoder has {n_lat} latents")
    if minus is not None:
        bi = _model_index(names, minus)
        raw[bi] = decoder_matrix(run, bi, hook)
    weights_sha = sha256_file(_final_folder(run) / "crosscoder.safetensors")
    out = []
    for j in latents:
        if minus is None:
            prov = Provenance(
                "latent_decoder", latent=j, source=str(run), source_sha256=weights_sha, models=(names[mi],)
            )
            vec, owner, label = raw[mi][j], mi, f"latent{j}.{names[mi]}"
        else:
            prov = Provenance(
                "decoder_diff", latent=j, source=str(run), source_sha256=weights_sha, models=(names[mi], names[bi])
            )
            vec, owner, label = raw[mi][j] - raw[bi][j], bi, f"latent{j}.{names[mi]}-{names[bi]}"
        out.append(PersonaDirection(label, vec, hashes[owner], names[owner], hook, prov))
    return out


def from_vector_file(
    path: str | Path, *, model_hash: str, model_name: str, hook: str, key: str | None = None, name: str | None = None
) -> PersonaDirection:
    """A vector from a ``.safetensors`` (tensor `key`, or its only tensor) or ``.npy`` file, for a stated model and hook."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"vector file {path} not found; check the path")
    if path.suffix == ".npy":
        import numpy as np

        try:
            vec = torch.from_numpy(np.load(path, allow_pickle=False)).float()
        except ValueError as err:
            raise DataError(f"{path} is not a plain numeric .npy array ({err}); save the vector with np.save") from err
    elif path.suffix == ".safetensors":
        from crosscoder.io import load_safetensors

        tensors = load_safetensors(path)
        if key is None and len(tensors) != 1:
            raise ConfigError(
                f"{path} holds {len(tensors)} tensors ({', '.join(sorted(tensors))}); name one with --key"
            )
        if key is not None and key not in tensors:
            raise ConfigError(f"{path} has no tensor {key!r}; it has {', '.join(sorted(tensors))}")
        vec = tensors[key] if key is not None else next(iter(tensors.values()))
    else:
        raise ConfigError(f"vector file {path}: use .safetensors or .npy (pickled formats are not read)")
    if vec.dim() != 1 and not (vec.dim() == 2 and 1 in vec.shape):
        raise DataError(f"{path}: expected one vector, got shape {tuple(vec.shape)}; save a single [d_model] vector")
    prov = Provenance("file", source=str(path), source_sha256=sha256_file(path))
    return PersonaDirection(name or path.stem, vec.reshape(-1), model_hash, model_name, hook, prov)
