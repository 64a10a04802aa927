"""Persona latents of a crosscoder run, as directions and as an activation read-out from one model's activations.

Reads only the run's own files: ``run.json`` (model names, hooks, content hashes), ``final/`` (the crosscoder, via
:meth:`crosscoder.xc.model.Crosscoder.load`) and the analysis output ``analysis/candidates.json`` (labels; format in
docs/ANALYSIS_FORMAT.md). No analysis code is imported.

- :func:`persona_latents`: the labelled candidates (or given latent ids), each with its raw-space decoder of the
  last (ft) model and d_ft − d_base at the hook where its ft decoder is largest.
- :func:`latent_directions`: those decoders as :class:`~crosscoder.personas.directions.Direction` s (monitoring).
- :class:`LatentReader`: latent activations computed from a *single* model's residual activations, fed into every
  model slot of the encoder (the "mirror" encoder: what the latent reads when every model is in that state). This is
  how data are screened before any fine-tune exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from crosscoder.errors import ConfigError, DataError, ModelError
from crosscoder.io import read_json
from crosscoder.personas.directions import Direction


@dataclass
class PersonaLatent:
    """One latent of a run with the trait it was labelled with."""

    latent: int
    label: str | None
    """The analysis label (None when labels did not run or the latent is unlabelled)."""
    hook: str
    hook_index: int
    decoder_D: Float[Tensor, " d_model"]
    """Raw-space decoder of the last (ft) model at `hook`."""
    diff_D: Float[Tensor, " d_model"]
    """Raw-space d_ft − d_base at `hook`."""
    confidence: float | None = None


@dataclass
class CrosscoderRun:
    """A finished training run: its crosscoder and what it was trained on."""

    folder: Path
    crosscoder: Any
    model_names: list[str]
    hooks: list[str]
    content_hashes: list[str]

    @property
    def base_hash(self) -> str:
        return self.content_hashes[0]


def load_run(run_dir: str | Path) -> CrosscoderRun:
    """The crosscoder in ``run_dir/final`` and the run's ``run.json``; one-line errors for missing pieces."""
    from crosscoder.xc.model import Crosscoder

    folder = Path(run_dir)
    info_path = folder / "run.json"
    if not info_path.is_file():
        raise DataError(f"{info_path}: missing; pass a training run folder (holding run.json and final/)")
    info = read_json(info_path)
    for key in ("model_names", "hooks", "content_hashes"):
        if not isinstance(info.get(key), list) or not info[key]:
            raise DataError(f"{info_path}: field {key}: missing or empty; the run was not written by train.py")
    cc = Crosscoder.load(folder / "final")
    if cc.cfg.n_hooks != len(info["hooks"]) or cc.cfg.n_models != len(info["model_names"]):
        raise DataError(f"{info_path}: field hooks: does not match the crosscoder in final/; the run folder is mixed")
    return CrosscoderRun(folder, cc, info["model_names"], info["hooks"], info["content_hashes"])


def _labels(path: Path) -> dict[int, tuple[str | None, float | None]]:
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a list of candidates (docs/ANALYSIS_FORMAT.md); re-run the analysis")
    out = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("latent"), int):
            raise DataError(f"{path}: entry {i}: field latent: missing or not an integer; re-run the analysis")
        label = row.get("label")
        out[row["latent"]] = (label if label not in (None, "", "unlabelled") else None, row.get("label_confidence"))
    return out


def persona_latents(
    run: CrosscoderRun, analysis_dir: str | Path | None = None, latents: list[int] | None = None
) -> list[PersonaLatent]:
    """The labelled candidates of the run's analysis (or the given latent ids, labelled when the analysis has them)."""
    cc = run.crosscoder
    cand = Path(analysis_dir) if analysis_dir else run.folder / "analysis"
    labels = _labels(cand / "candidates.json") if (cand / "candidates.json").is_file() else {}
    if latents is None:
        if not labels:
            raise DataError(
                f"{cand}/candidates.json: missing; run `python analyze.py run_dir={run.folder}` or pass latent ids"
            )
        latents = [j for j, (label, _) in labels.items() if label is not None]
        if not latents:
            raise DataError(f"{cand}/candidates.json: no candidate has a trait label; pass latent ids instead")
    out = []
    with torch.no_grad():
        W_FMLD = cc.W_dec_FMLD.detach().float() / cc.scale_ML[None, :, :, None]  # raw space
        for j in latents:
            if not 0 <= j < cc.cfg.n_latents:
                raise ConfigError(f"latent {j}: the crosscoder has {cc.cfg.n_latents} latents")
            h = int(W_FMLD[j, -1].norm(dim=-1).argmax())
            label, conf = labels.get(j, (None, None))
            out.append(PersonaLatent(j, label, run.hooks[h], h, W_FMLD[j, -1, h].clone(),
                                     (W_FMLD[j, -1, h] - W_FMLD[j, 0, h]).clone(), conf))  # fmt: skip
    return out


def latent_directions(run: CrosscoderRun, latents: list[PersonaLatent], which: str = "decoder") -> list[Direction]:
    """Directions from the latents' ft decoders (``decoder``) or decoder differences (``diff``)."""
    if which not in ("decoder", "diff"):
        raise ConfigError(f"latent direction {which!r}: use decoder or diff")
    out = []
    for pl in latents:
        vec = pl.decoder_D if which == "decoder" else pl.diff_D
        name = f"latent {pl.latent}" + (f": {pl.label}" if pl.label else "")
        out.append(Direction(name, pl.hook, vec, "latent", run.base_hash, str(run.folder), pl.label,
                             float(vec.norm()), meta={"latent": pl.latent, "which": which}))  # fmt: skip
    return out


class LatentReader:
    """Latent activations from one model's activations at the run's hooks (every model slot gets the same input)."""

    def __init__(self, run: CrosscoderRun, latents: list[PersonaLatent]) -> None:
        self.run, self.latents = run, latents
        self.index = torch.tensor([pl.latent for pl in latents])

    def check_model(self, model: Any, lineage: set[str]) -> None:
        """Refuse a model the run was not trained on (or that is not a fine-tune of its base)."""
        if self.run.base_hash not in lineage:
            raise ModelError(
                f"{self.run.folder}/run.json: field content_hashes: the crosscoder was trained on another model "
                f"({self.run.base_hash[:12]}), not {model.name} ({model.content_hash[:12]}); screen with its base"
            )
        if self.run.crosscoder.cfg.d_model != model.d_model:
            raise ModelError(f"{self.run.folder}: d_model {self.run.crosscoder.cfg.d_model} != model {model.d_model}")

    @torch.no_grad()
    def activations(self, acts: dict[str, Tensor]) -> Float[Tensor, "T K"]:
        """Per token, the activation of each persona latent; `acts` maps every run hook to ``[T, d_model]``."""
        missing = [h for h in self.run.hooks if h not in acts]
        if missing:
            raise ConfigError(f"latent read-out needs activations at {missing[0]}; include every run hook")
        x_TLD = torch.stack([acts[h] for h in self.run.hooks], dim=1)
        M = self.run.crosscoder.cfg.n_models
        x_TMLD = x_TLD[:, None].expand(-1, M, -1, -1)
        f_TF = self.run.crosscoder.encode(x_TMLD.contiguous())
        return f_TF[:, self.index]
