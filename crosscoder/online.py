"""Checks for the one online service the framework talks to, W&B, made before any work (issue 19).

`logging.wandb_mode=online` (train.py) or `export.wandb_mode=online` (analyze.py) without an API key or without a
route to the W&B server used to fail inside `wandb.init`, after the harvest and training, with a wandb traceback.
`check_wandb` refuses both in one line before anything is loaded, naming the offline alternative.
"""

from __future__ import annotations

import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from crosscoder.errors import ConfigError

DEFAULT_BASE_URL = "https://api.wandb.ai"
CONNECT_TIMEOUT_S = 5.0


def _has_key(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        auth = netrc.netrc(str(path)).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def check_wandb(mode: str, field: str) -> None:
    """Refuse `mode` = online (the WANDB_MODE environment variable wins) without an API key or a reachable server."""
    mode = os.environ.get("WANDB_MODE", mode)
    if mode != "online":
        return
    base = os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)
    url = urlparse(base)
    host = url.hostname or "api.wandb.ai"
    fix = f"or use {field}=offline and upload later with `wandb sync`"
    if not _has_key(host):
        raise ConfigError(f"{field}=online: no W&B API key for {host}; run `wandb login` or set WANDB_API_KEY, {fix}")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(
            f"{field}=online: cannot reach the W&B server {base} ({err}); check the network, {fix}"
        ) from err
