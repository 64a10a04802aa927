"""Validation of where and in what precision models load (config layer: imported by the config dataclasses).

`crosscoder.models.placement` resolves these values against the hardware; here only their form is checked.
"""

from __future__ import annotations

import re

from crosscoder.errors import ConfigError

MODEL_DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


def check_config(device: str, dtype: str, device_map: str | None, where: str = "models") -> None:
    """Refuse malformed values (used by the config's __post_init__; the hardware is checked by resolve_placement)."""
    if not DEVICE_RE.match(device):
        raise ConfigError(f"{where}.device: unknown device {device!r}; use cpu, cuda or cuda:N")
    if dtype not in MODEL_DTYPES:
        raise ConfigError(f"{where}.dtype: {dtype!r}; use one of {', '.join(MODEL_DTYPES)}")
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise ConfigError(f"{where}.device_map: {device_map!r}; use null or one of {', '.join(DEVICE_MAPS)}")
    if device_map is not None and not device.startswith("cuda"):
        raise ConfigError(
            f"{where}.device_map: {device_map} spreads a model over GPUs but {where}.device is {device}; "
            f"set {where}.device=cuda or {where}.device_map=null"
        )
