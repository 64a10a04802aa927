"""What the later stages read of an activation set, as a Protocol: `ActivationSet` (a cache folder, or harvested
in memory) and the synthetic sets of `crosscoder.testing.synthetic` both satisfy it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from crosscoder.data.api import RowBatch


class RowSource(Protocol):
    """Random access to stored rows."""

    def gather(self, rows: np.ndarray) -> Tensor:
        """Raw fp32 ``x [len(rows), n_models, n_hooks, d_model]`` of the given (sorted) row indices."""
        ...


class Activations(Protocol):
    """Paired activations of a model set at some hooks, rows in (sequence, position) order."""

    @property
    def hooks(self) -> list[str]: ...

    @property
    def model_names(self) -> list[str]: ...

    @property
    def d_model(self) -> int: ...

    @property
    def n_rows(self) -> int: ...

    @property
    def n_seqs(self) -> int: ...

    @property
    def scale_ML(self) -> Tensor:
        """Per model and hook, the factor bringing the mean activation norm to sqrt(d_model)."""
        ...

    @property
    def path(self) -> Path | None:
        """The cache folder (None in memory)."""
        ...

    @property
    def rows(self) -> RowSource: ...

    def iter_rows(self, batch_size: int) -> Iterator[RowBatch]:
        """Every stored row in order, with its masks; the last batch may be smaller."""
        ...

    def sequence_tokens(self, seq: int) -> list[int]:
        """Token ids of sequence `seq`."""
        ...
