"""Sparse crosscoders over N models x L hooks: architectures, fast TopK path, trainer, checkpoints, metrics, DDP."""

from crosscoder.xc import dfc, matryoshka  # noqa: F401  (register the dfc and matryoshka architectures)
from crosscoder.xc.architectures import ARCHITECTURES, Sparsity, register
from crosscoder.xc.config import CrosscoderConfig, LoggingConfig, TrainerConfig
from crosscoder.xc.model import Crosscoder
from crosscoder.xc.trainer import TrainResult, train

__all__ = [
    "ARCHITECTURES",
    "Crosscoder",
    "CrosscoderConfig",
    "LoggingConfig",
    "Sparsity",
    "TrainResult",
    "TrainerConfig",
    "register",
    "train",
]
