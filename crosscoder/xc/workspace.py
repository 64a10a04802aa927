"""Reusable buffers of the sparse training step, so a step allocates no full-size tensor.

On CPU every fresh tensor larger than glibc's mmap threshold (32 MB at most) is mapped page by page on first touch.
At 16,384 latents and batch 1,024 the step's temporaries (pre-activations and scores, B x F) and its gradients
(2 x F x X) are 64-75 MB each; mapping them anew costs 10-90 ms per tensor on a busy virtual machine and makes step
times vary (issue 24). A :class:`Workspace` keeps them:

* **scratch buffers** (:meth:`Workspace.scratch`): forward temporaries owned by the workspace and overwritten by the
  next step (nothing may hold them across steps; the sparse step reads them only before its backward returns);
* **gradient buffers** (:meth:`Workspace.take` / :meth:`Workspace.give`): the sparse backward takes a buffer, writes
  the whole gradient into it and hands it to autograd, which stores it as ``param.grad`` without a copy (the
  workspace keeps no reference meanwhile). After the optimizer step :meth:`Crosscoder.recycle_grads` gives the
  ``.grad`` tensors back and sets them to ``None``: any reference kept to an old ``.grad`` after that call sees its
  values overwritten by the next backward.

Only the CPU path uses the workspace; on CUDA the caching allocator already reuses memory.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Workspace:
    """Named scratch buffers and a pool of gradient buffers, reallocated only when shape, dtype or device change."""

    def __init__(self) -> None:
        self._scratch: dict[str, Tensor] = {}
        self._pool: dict[str, Tensor] = {}

    def scratch(self, name: str, shape: tuple[int, ...], like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """A buffer of ``shape`` with ``like``'s device and dtype (or ``dtype``), reused across calls (contents
        undefined)."""
        dtype = dtype or like.dtype
        buf = self._scratch.get(name)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != dtype or buf.device != like.device:
            buf = torch.empty(shape, dtype=dtype, device=like.device)
            self._scratch[name] = buf
        return buf

    def take(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A gradient buffer the caller will overwrite entirely (contents undefined, e.g. the last step's gradient);
        ownership passes to the caller (and autograd)."""
        buf = self._pool.pop(name, None)
        if buf is not None and buf.numel() == _numel(shape) and buf.dtype == like.dtype and buf.device == like.device:
            return buf.view(shape)
        return torch.empty(shape, dtype=like.dtype, device=like.device)

    def give(self, name: str, buf: Tensor) -> None:
        """Return a gradient buffer for the next :meth:`take` (contiguous tensors only; others are dropped)."""
        if buf.is_contiguous() and not buf.is_sparse:
            self._pool[name] = buf

    def clear(self) -> None:
        """Drop every buffer (frees the memory)."""
        self._scratch.clear()
        self._pool.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held by the workspace."""
        return sum(t.numel() * t.element_size() for t in [*self._scratch.values(), *self._pool.values()])


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
