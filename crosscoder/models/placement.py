"""Where and in which precision the language models run: one device, or several GPUs through an accelerate map.

`resolve_placement` turns the config (``models.device``, ``models.dtype``, ``models.device_map``) and this process's
DDP local rank into a `Placement`, refusing what cannot work before anything loads:

- ``cuda`` where no GPU is visible, or ``cuda:N`` beyond the visible GPUs (one line naming the fix);
- ``dtype=auto`` is float32 on the CPU (bf16 matmuls are hundreds of times slower on most CPUs) and bfloat16 on a
  GPU (float16 where the GPU lacks bf16). An explicit bfloat16 / float16 on the CPU is honoured, with a warning;
- ``device_map`` (auto | balanced | balanced_low_0 | sequential) spreads one model over all visible GPUs, for models
  that do not fit one; it needs a GPU and a single process per node (each DDP rank would claim every GPU).

Under DDP, ``cuda`` means ``cuda:LOCAL_RANK``: every rank runs its own copy of the models on its own GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from crosscoder.errors import ConfigError
from crosscoder.models.config import DEVICE_MAPS, DEVICE_RE, MODEL_DTYPES, check_config

__all__ = ["DEVICE_MAPS", "DEVICE_RE", "MODEL_DTYPES", "Placement", "check_config", "check_gpu", "resolve_dtype",
           "resolve_placement"]  # fmt: skip

log = logging.getLogger(__name__)

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Placement:
    """A resolved placement for loading models."""

    device: str
    """Device of the inputs (and of the whole model without a device map): cpu, cuda:N or mps."""
    dtype: torch.dtype
    """Dtype of the model weights and activations."""
    device_map: str | None = None
    """accelerate device map spreading each model over several GPUs, or None."""

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def hf_kwargs(self) -> dict[str, Any]:
        """`load_hf` keyword arguments: the dtype, and a device map that loads the weights straight onto the GPU(s)."""
        if self.device_map:
            return {"dtype": self.dtype, "device_map": self.device_map}
        if self.on_gpu:
            return {"dtype": self.dtype, "device_map": {"": self.device}}
        return {"dtype": self.dtype, "device_map": None}

    def describe(self) -> str:
        where = f"device_map={self.device_map}" if self.device_map else self.device
        return f"{where}, {self.dtype_name}"


def check_gpu(device: str, field: str) -> None:
    """A one-line error when `device` names a GPU this process cannot see."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{field}: {device} requested but no GPU is visible (torch.cuda.is_available() is False); "
            f"set {field}=cpu, or run on a GPU node with a CUDA build of torch"
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"{field}: {device} requested but only {torch.cuda.device_count()} GPU(s) are visible; "
            f"use cuda:0..cuda:{torch.cuda.device_count() - 1}"
        )


def resolve_dtype(dtype: str, device: str, field: str = "models.dtype") -> torch.dtype:
    """The torch dtype for `dtype` on `device` (auto: float32 on CPU, bfloat16 / float16 on GPU)."""
    if dtype == "auto":
        if not device.startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype != "float32" and not device.startswith("cuda"):
        log.warning(
            "%s=%s on %s: reduced-precision matmuls are far slower than float32 on most CPUs (and change the "
            "activations); use %s=float32 or auto unless you mean it",
            field,
            dtype,
            device,
            field,
        )
    return TORCH_DTYPES[dtype]


def resolve_placement(
    device: str, dtype: str = "auto", device_map: str | None = None, local_rank: int = 0, world_size: int = 1
) -> Placement:
    """The placement of one process's models (see the module docstring for the rules)."""
    check_config(device, dtype, device_map)
    check_gpu(device, "models.device")
    if device == "cuda":
        device = f"cuda:{local_rank if world_size > 1 else 0}"
        check_gpu(device, "models.device")
    if device_map is not None and world_size > 1:
        raise ConfigError(
            f"models.device_map: {device_map} spreads each model over all GPUs, but {world_size} DDP processes run "
            "on this job; use one process per node (torchrun --nproc_per_node=1) or models.device_map=null"
        )
    return Placement(device=device, dtype=resolve_dtype(dtype, device), device_map=device_map)
