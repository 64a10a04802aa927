"""The sparse crosscoder: one latent dictionary over N models x L hooks.

Raw activations come in (``x_BMLD``); ``scale_ML`` maps them to the normalised space (E||x_m|| = sqrt(D)) where the
weights live, and reconstructions go back out in raw space:

    x_n  = x * scale_ML                                   # normalised input, [B, M, L, D] -> [B, X], X = M*L*D
    pre  = x_n @ W_enc + b_enc                            # one GEMM over the concatenated inputs, [B, F]
    f    = sparsity(pre)                                  # ReLU+L1 | TopK | BatchTopK | JumpReLU
    xhat = (f @ W_dec + b_dec) / scale_ML                 # per-model (and per-hook) decoders and biases

Designated shared latents (the first ``n_shared``) have one decoder tied across models: ``W_dec_FMLD[:n_shared]``
holds identical copies for every model (so analysis code can index every latent the same way) and a gradient hook
gives every copy the gradient of the tied parameter, the sum over models, so they never drift apart.

The encoder is stored latent-major, as the parameter ``W_enc_FMLD``; ``W_enc_MLDF`` is its [M, L, D, F] view (the
matrix of the formulas). Each latent's encoder vector is then contiguous: the fast path writes its sparse per-latent
gradient rows without a transpose, the fused optimizer sees contiguous tensors, and the init W_enc = W_dec^T is a
plain copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from crosscoder.errors import DataError, NumericsError
from crosscoder.io import atomic_save_safetensors, atomic_write_json, load_safetensors, read_json
from crosscoder.xc.architectures import ARCHITECTURES, BatchTopK, Sparsity
from crosscoder.xc.config import CrosscoderConfig
from crosscoder.xc.loss import LossTerms, loss_terms
from crosscoder.xc.pattern import backend_for
from crosscoder.xc.workspace import Workspace

FORMAT = "crosscoder.xc/1"
WEIGHTS = "crosscoder.safetensors"
CONFIG = "config.json"


class Crosscoder(nn.Module):
    """Sparse crosscoder: parameters W_enc_FMLD (viewed as W_enc_MLDF), b_enc_F, W_dec_FMLD, b_dec_MLD; buffer scale_ML."""

    scale_ML: Tensor
    fold_ML: Tensor
    share_F: Tensor

    def __init__(self, cfg: CrosscoderConfig, *, seed: int | None = None) -> None:
        super().__init__()
        cfg.check_shape()
        self.cfg = cfg
        M, L, D, Fn, S = cfg.n_models, cfg.n_hooks, cfg.d_model, cfg.n_latents, cfg.n_shared
        gen = torch.Generator().manual_seed(seed) if seed is not None else None

        W_dec_FMLD = torch.randn(Fn, M, L, D, generator=gen)
        W_dec_FMLD[:S] = W_dec_FMLD[:S, :1]  # shared latents: one decoder for every model
        if cfg.dec_init_same:  # every latent starts with the same direction in every model (cosine 1, rel. norm 0.5)
            W_dec_FMLD[:] = W_dec_FMLD[:, :1]
        init_norm = cfg.dec_init_norm or ARCHITECTURES[cfg.architecture].default_dec_init_norm
        W_dec_FMLD *= init_norm / W_dec_FMLD.norm(dim=-1, keepdim=True)
        self.W_dec_FMLD = nn.Parameter(W_dec_FMLD)
        self.W_enc_FMLD = nn.Parameter(W_dec_FMLD.clone())  # W_enc = W_dec^T, stored latent-major
        self.b_enc_F = nn.Parameter(torch.zeros(Fn))
        self.b_dec_MLD = nn.Parameter(torch.zeros(M, L, D))
        self.register_buffer("scale_ML", torch.ones(M, L))
        """Multiplies raw activations into the normalised space (from the activation cache's manifest)."""
        self.register_buffer("fold_ML", torch.ones(M, L))
        """Scale already folded into the weights by :meth:`fold_scale` (1 = none); keeps decoder norms normalised."""
        share_F = torch.ones(Fn)
        share_F[:S] = cfg.shared_penalty_scale
        self.register_buffer("share_F", share_F, persistent=False)
        self.sparsity: Sparsity = ARCHITECTURES[cfg.architecture](cfg)
        self.workspace = Workspace()
        """Reused buffers of the sparse training step (not saved; cleared by ``eval()``)."""
        if S > 0:
            self.W_dec_FMLD.register_hook(self._tie_shared_grad)
        self.sparsity.attach(self)  # structural constraints of the architecture (e.g. dfc's masked blocks)

    # ------------------------------------------------------------------ shapes and helpers
    @property
    def W_enc_MLDF(self) -> Float[Tensor, "M L D F"]:
        """The encoder as in the formulas, pre = sum_{m,l} x_{m,l} @ W_enc[m, l] (a view of W_enc_FMLD)."""
        return self.W_enc_FMLD.permute(1, 2, 3, 0)

    @property
    def W_enc_XF(self) -> Tensor:
        return self.W_enc_FMLD.reshape(self.cfg.n_latents, self.cfg.d_in).t()  # a view (strides (1, X))

    @property
    def W_dec_FX(self) -> Tensor:
        return self.W_dec_FMLD.reshape(self.cfg.n_latents, self.cfg.d_in)

    @property
    def fast(self) -> bool:
        """True when training uses the sparse fast path."""
        return self.cfg.fast_path and self.sparsity.sparse_path

    def train(self, mode: bool = True) -> Crosscoder:
        """nn.Module.train; leaving training (``eval()``) frees the step's workspace."""
        super().train(mode)
        if not mode:
            self.workspace.clear()
        return self

    def recycle_grads(self) -> None:
        """Hand the encoder's and decoder's ``.grad`` to the workspace for the next sparse backward, and set them to
        None. Call it after the optimizer step (the trainer does); references kept to those gradients go stale."""
        if not self.fast or backend_for(self.W_dec_FMLD.device) != "cpu":  # the GPU kernels allocate (cached)
            return
        for name, p in (("W_enc", self.W_enc_FMLD), ("W_dec", self.W_dec_FMLD)):
            if p.grad is not None:
                self.workspace.give(name, p.grad)
                p.grad = None

    def _tie_shared_grad(self, g_FMLD: Tensor) -> Tensor:
        S = self.cfg.n_shared
        g_FMLD = g_FMLD.clone()
        g_FMLD[:S] = g_FMLD[:S].sum(dim=1, keepdim=True)
        return g_FMLD

    def normalise(self, x_BMLD: Float[Tensor, "B M L D"]) -> Float[Tensor, "B X"]:
        """Raw activations -> normalised, flattened input x_n_BX."""
        if x_BMLD.ndim != 4 or tuple(x_BMLD.shape[1:]) != (self.cfg.n_models, self.cfg.n_hooks, self.cfg.d_model):
            want = f"[batch, {self.cfg.n_models}, {self.cfg.n_hooks}, {self.cfg.d_model}]"
            raise DataError(
                f"activation batch has shape {list(x_BMLD.shape)} but the crosscoder expects {want} "
                "(batch, models, hooks, d_model); use activations harvested for this model set and hooks"
            )
        return (x_BMLD * self.scale_ML[:, :, None]).reshape(x_BMLD.shape[0], -1)

    def decoder_norms_FML(self) -> Float[Tensor, "F M L"]:
        """||d_{j,m,l}|| per latent, model and hook, in normalised space."""
        W: Tensor = self.W_dec_FMLD
        if not bool((self.fold_ML == 1).all()):
            W = W * self.fold_ML[None, :, :, None]
        return W.norm(dim=-1)

    def decoder_norms_FM(self) -> Float[Tensor, "F M"]:
        """Per-latent per-model decoder norm: sum over hooks of ||d_{j,m,l}|| (normalised space)."""
        return self.decoder_norms_FML().sum(-1)

    def _dec_norm_F(self) -> Tensor:
        return self.decoder_norms_FML().sum(dim=(1, 2))

    # ------------------------------------------------------------------ public API (raw space in and out)
    def encode(self, x_BMLD: Float[Tensor, "B M L D"], k: int | None = None) -> Float[Tensor, "B F"]:
        """Latent activations of raw activations. In eval mode BatchTopK uses its trained threshold."""
        pre_BF = torch.addmm(self.b_enc_F, self.normalise(x_BMLD), self.W_enc_XF)
        return self.sparsity.activate(pre_BF, self._dec_norm_F(), self.share_F, k or self.cfg.k)

    def decode(self, f_BF: Float[Tensor, "B F"]) -> Float[Tensor, "B M L D"]:
        """Reconstruction in raw space."""
        xhat_BX = torch.addmm(self.b_dec_MLD.reshape(-1), f_BF, self.W_dec_FX)
        return xhat_BX.view(-1, self.cfg.n_models, self.cfg.n_hooks, self.cfg.d_model) / self.scale_ML[:, :, None]

    def forward(self, x_BMLD: Float[Tensor, "B M L D"]) -> tuple[Float[Tensor, "B M L D"], Float[Tensor, "B F"]]:
        f_BF = self.encode(x_BMLD)
        return self.decode(f_BF), f_BF

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def init_from_batch(self, x_n_BX: Tensor, reduce_mean: Callable[[Tensor], Tensor] = lambda t: t) -> None:
        """Data-dependent start from the first (normalised) batch: b_dec = the batch mean, plus the architecture's
        own initialisation (JumpReLU thresholds). ``reduce_mean`` averages over DDP ranks."""
        self.b_dec_MLD.copy_(reduce_mean(x_n_BX.mean(0)).view_as(self.b_dec_MLD))
        pre_BF = torch.addmm(self.b_enc_F, x_n_BX, self.W_enc_XF)
        self.sparsity.init_from_batch(pre_BF, reduce_mean)

    def loss_terms(
        self,
        x_n_BX: Float[Tensor, "B X"],
        *,
        k: int,
        sparsity_coeff: float,
        dead_F: Tensor | None = None,
        aux_k: int = 0,
        aux_coeff: float = 0.0,
        reduce_sum: Callable[[Tensor], Tensor] | None = None,
    ) -> LossTerms:
        """Training loss on a normalised batch, plus detached statistics for the metrics (:class:`LossTerms`).

        ``dead_F`` marks dead latents for the auxiliary-k loss (TopK-style only). ``reduce_sum`` (DDP) sums a tensor
        over ranks; the auxiliary loss's normaliser is a batch statistic, so it is taken over the global batch and
        the loss rescaled so the ranks' mean gradient equals one process's. The sparse path runs when
        :attr:`fast` (see :mod:`crosscoder.xc.loss`).
        """
        return loss_terms(
            self,
            x_n_BX,
            k=k,
            sparsity_coeff=sparsity_coeff,
            dead_F=dead_F,
            aux_k=aux_k,
            aux_coeff=aux_coeff,
            reduce_sum=reduce_sum,
        )

    # ------------------------------------------------------------------ persistence
    def tensors(self) -> dict[str, Tensor]:
        """State dict as contiguous CPU tensors (what :meth:`save` writes)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

    def load_tensors(self, tensors: dict[str, Tensor], source: str) -> None:
        """Load a state dict, refusing missing, unexpected, mis-shaped or non-finite tensors (named by source)."""
        own = self.state_dict()
        missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
        if missing or extra:
            raise DataError(
                f"{source} does not match this crosscoder (missing {missing}, unexpected {extra}); "
                "load it with the config.json saved beside it"
            )
        for name, t in tensors.items():
            if tuple(t.shape) != tuple(own[name].shape):
                raise DataError(f"{source}: tensor {name} has shape {list(t.shape)}, expected {list(own[name].shape)}")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise NumericsError(f"{source}: tensor {name} holds NaN/inf values; use an earlier checkpoint")
        with torch.no_grad():
            for name, t in tensors.items():
                own[name].copy_(t)
        S = self.cfg.n_shared
        if S and not torch.allclose(self.W_dec_FMLD[:S], self.W_dec_FMLD[:S, :1].expand(-1, self.cfg.n_models, -1, -1)):
            raise DataError(f"{source}: the shared latents' decoders differ across models; the file is corrupt")
        self.sparsity.check_weights(self, source)

    def save(self, folder: str | Path) -> Path:
        """Write ``crosscoder.safetensors`` and ``config.json`` into ``folder`` (each atomically)."""
        folder = Path(folder)
        atomic_save_safetensors(folder / WEIGHTS, self.tensors(), metadata={"format": FORMAT})
        atomic_write_json(folder / CONFIG, {"format": FORMAT, "crosscoder": asdict(self.cfg)})
        return folder

    @staticmethod
    def read_config(folder: str | Path) -> CrosscoderConfig:
        """The CrosscoderConfig saved in ``folder/config.json``."""
        path = Path(folder) / CONFIG
        meta: Any = read_json(path)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("crosscoder"), dict):
            raise DataError(
                f"{path} is not a crosscoder config ({FORMAT}); point at a folder written by Crosscoder.save"
            )
        known = {f.name for f in fields(CrosscoderConfig)}
        unknown = sorted(set(meta["crosscoder"]) - known)
        if unknown:
            raise DataError(f"{path} has unknown crosscoder fields {unknown}; it was written by a newer version")
        return CrosscoderConfig(**meta["crosscoder"])

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> Crosscoder:
        """Load a crosscoder saved by :meth:`save` (safetensors only, nothing unpickled), in eval mode."""
        folder = Path(folder)
        cc = cls(cls.read_config(folder))
        cc.load_tensors(load_safetensors(folder / WEIGHTS), str(folder / WEIGHTS))
        return cc.to(device).eval()

    def fold_scale(self) -> Crosscoder:
        """A copy with ``scale_ML`` folded into the weights: it maps raw activations with scale 1 (SAELens export).

        Outputs are unchanged: W_enc absorbs the scale, W_dec and b_dec its inverse, and ``fold_ML`` remembers it so
        decoder norms (and hence TopK scores and the L1 penalty) stay those of the normalised space.
        """
        out = type(self)(copy.deepcopy(self.cfg)).to(self.scale_ML.device)
        out.load_state_dict(self.state_dict())
        out.train(self.training)
        s_ML = self.scale_ML.detach()
        with torch.no_grad():
            out.W_enc_FMLD.mul_(s_ML[None, :, :, None])
            out.W_dec_FMLD.div_(s_ML[None, :, :, None])
            out.b_dec_MLD.div_(s_ML[:, :, None])
            out.fold_ML.mul_(s_ML)
            out.scale_ML.fill_(1.0)
        return out

    @property
    def threshold(self) -> Tensor | None:
        """BatchTopK inference threshold (None for other architectures)."""
        return self.sparsity.threshold if isinstance(self.sparsity, BatchTopK) else None
