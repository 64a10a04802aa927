"""Run only the blocks after a hook, from residual activations cached at it: the fast path of every optimisation
over a steering vector (latent-basis adapter, receive-side audit).

Adding a constant vector v at ``blocks.L.hook_resid_post`` leaves blocks 0..L unchanged, so their output is cached
once and each step runs blocks L+1.. (the HF decoder with its block list cut, fed the cached residual + v as
``inputs_embeds``: masks and positions are made exactly as in a full forward), the final norm, and the unembedding
at the scored positions only. `TailModel.check` compares that against a full forward with a residual hook (the plain
reference, :func:`full_logits`); `TailModel(exact=False)` switches to the reference everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from crosscoder.errors import ModelError
from crosscoder.models.residual import decoder_layers, edit_hf_residual, parse_resid_hook
from crosscoder.personas.compose.steer import add_edit


def _decoder(hf: nn.Module) -> nn.Module:
    getter = getattr(hf, "get_decoder", None)
    dec = getter() if callable(getter) else getattr(hf, "model", None)
    if not isinstance(dec, nn.Module) or not isinstance(getattr(dec, "layers", None), nn.ModuleList):
        raise ModelError(
            f"{type(hf).__name__}: no decoder with a .layers list; the tail shortcut needs a Llama-style model"
        )
    return dec


def head_of(hf: nn.Module) -> nn.Module:
    """The output embedding (unembedding) of an HF causal LM."""
    head = hf.get_output_embeddings()  # type: ignore[operator]
    if not isinstance(head, nn.Module):
        raise ModelError(f"{type(hf).__name__} has no output embedding; use a causal LM")
    return head


@contextlib.contextmanager
def _cut_layers(decoder: nn.Module, start: int, stop: int | None = None) -> Iterator[None]:
    """Inside the block the decoder runs only blocks ``start:stop`` (restored on exit, exceptions included)."""
    full = decoder.layers
    assert isinstance(full, nn.ModuleList)
    decoder.layers = nn.ModuleList(list(full)[start:stop])
    try:
        yield
    finally:
        decoder.layers = full


@torch.no_grad()
def capture_resid(hf: nn.Module, hook: str, ids_BS: Tensor, mask_BS: Tensor) -> Float[Tensor, "B S D"]:
    """The residual at `hook` for a right-padded batch (one full forward of the blocks up to the hook)."""
    got: list[Tensor] = []

    def keep(x: Tensor) -> Tensor:
        got.append(x.detach().clone())
        return x

    layer, _ = parse_resid_hook(hook)
    dec = _decoder(hf)
    with edit_hf_residual(hf, hook, keep), _cut_layers(dec, 0, layer + 1):  # the blocks after the hook are not needed
        dec(input_ids=ids_BS, attention_mask=mask_BS, use_cache=False)
    if not got:
        raise ModelError(f"no activation was captured at {hook}; check the hook name")
    return got[0]


def full_logits(
    hf: nn.Module, hook: str, ids_BS: Tensor, mask_BS: Tensor, pos_BS: Tensor, vector_D: Tensor | None
) -> Float[Tensor, "N V"]:
    """Reference: logits at the positions `pos_BS` (bool) of a full forward with `vector_D` added at `hook`."""
    ctx = edit_hf_residual(hf, hook, add_edit(vector_D)) if vector_D is not None else contextlib.nullcontext()
    with ctx:
        hidden = _decoder(hf)(input_ids=ids_BS, attention_mask=mask_BS, use_cache=False).last_hidden_state
    return head_of(hf)(hidden[pos_BS])


class TailModel:
    """The blocks after `hook` of an HF causal LM, run from cached residuals (see the module docstring)."""

    def __init__(self, hf: nn.Module, hook: str, *, exact: bool = True) -> None:
        layer, kind = parse_resid_hook(hook)
        n = len(decoder_layers(hf))
        self.hf, self.hook, self.exact = hf, hook, exact
        self.start = layer + 1 if kind == "post" else layer
        if self.start > n:
            raise ModelError(f"hook {hook}: the model has only {n} blocks")
        if kind == "pre":
            raise ModelError(
                f"hook {hook}: the tail shortcut caches block outputs; use blocks.{layer - 1}.hook_resid_post"
            )
        for p in hf.parameters():
            p.requires_grad_(False)

    def logits(
        self,
        resid_BSD: Tensor,
        ids_BS: Int[Tensor, "B S"],
        mask_BS: Tensor,
        pos_BS: Tensor,
        vector_D: Tensor | None = None,
    ) -> Float[Tensor, "N V"]:
        """Logits at `pos_BS` with `vector_D` (may require grad) added to the cached residual `resid_BSD`."""
        if not self.exact:
            return full_logits(self.hf, self.hook, ids_BS, mask_BS, pos_BS, vector_D)
        x = resid_BSD if vector_D is None else resid_BSD + vector_D
        dec = _decoder(self.hf)
        with _cut_layers(dec, self.start):
            hidden = dec(inputs_embeds=x, attention_mask=mask_BS, use_cache=False).last_hidden_state
        return head_of(self.hf)(hidden[pos_BS])

    @torch.no_grad()
    def check(self, ids_BS: Tensor, mask_BS: Tensor, pos_BS: Tensor, tol: float = 1e-3) -> float:
        """Max |tail - full| of the logits on a batch (a random vector added); refuses a mismatch above `tol`."""
        resid = capture_resid(self.hf, self.hook, ids_BS, mask_BS)
        v = torch.randn(resid.shape[-1], generator=torch.Generator().manual_seed(0))
        diff = self.logits(resid, ids_BS, mask_BS, pos_BS, v) - full_logits(
            self.hf, self.hook, ids_BS, mask_BS, pos_BS, v
        )
        err = float(diff.abs().max())
        if err > tol:
            raise ModelError(
                f"the tail shortcut differs from a full forward by {err:.2e} on {type(self.hf).__name__}; use exact=False"
            )
        return err


def batch_tensors(rows: list[tuple[list[int], list[bool]]], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ids, attention mask and a bool mask of the positions whose *next* token is scored."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.bool)
    for r, (tok, scored) in enumerate(rows):
        ids[r, : len(tok)] = torch.tensor(tok)
        mask[r, : len(tok)] = 1
        for t in range(1, len(tok)):
            pos[r, t - 1] = bool(scored[t])
    return ids, mask, pos


def targets(ids_BS: Tensor, pos_BS: Tensor) -> Tensor:
    """The token ids predicted at the scored positions (the next token of each)."""
    nxt = torch.roll(ids_BS, shifts=-1, dims=1)
    return nxt[pos_BS]


def any_module(obj: Any) -> nn.Module:
    """`obj` as an nn.Module (a LoadedModel's HF model or the module itself)."""
    hf = getattr(obj, "hf", obj)
    if not isinstance(hf, nn.Module):
        raise ModelError("this needs an HF model (LoadedModel.hf); load the model with load_model(spec)")
    return hf
