"""Edit a model's residual stream at a hook point, only inside a context manager.

The primitive behind steering (analysis), preventative steering during fine-tuning and persona monitoring (personas):
a PyTorch forward hook on the HF decoder layer behind a TransformerLens hook name (the layer's output for
``blocks.<l>.hook_resid_post``, its input for ``hook_resid_pre``), so both HF ``generate`` / training and the
TransformerBridge (which runs the same modules) see it; a separate HookedTransformer gets a TransformerLens hook too.
Every hook is removed when the ``with`` block exits, also when registering a later hook or the body raises, and no
weight is ever modified.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from jaxtyping import Float
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from crosscoder.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel

_HOOK = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")
Edit = Callable[[Tensor], Tensor]
"""Maps a residual-stream tensor [..., D] to its edited value."""


def parse_resid_hook(hook: str) -> tuple[int, str]:
    """``blocks.<l>.hook_resid_post|pre`` -> (l, "post"|"pre"); a one-line ConfigError for anything else."""
    m = _HOOK.match(hook)
    if m is None:
        raise ConfigError(
            f"hook {hook!r}: a residual-stream edit needs a residual hook (blocks.<l>.hook_resid_post|pre); pick one"
        )
    return int(m.group(1)), m.group(2)


def decoder_layers(hf: nn.Module) -> nn.ModuleList:
    """The list of decoder layers of an HF causal LM (also behind a PEFT wrapper)."""
    base = getattr(hf, "base_model", hf)
    for path in (("layers",), ("model", "layers"), ("model", "model", "layers"), ("h",), ("transformer", "h")):
        obj: object = base
        for attr in path:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ModelError(f"cannot find the decoder layers of {type(hf).__name__} to edit; use a Llama/GPT-style model")


def _register(layer_module: nn.Module, kind: str, edit: Edit) -> RemovableHandle:
    if kind == "post":

        def post(_mod: nn.Module, _inp: object, out: object) -> object:
            if isinstance(out, tuple):
                return (edit(out[0]), *out[1:])
            assert isinstance(out, Tensor)
            return edit(out)

        return layer_module.register_forward_hook(post)

    def pre(
        _mod: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]
    ) -> tuple[tuple[object, ...], dict[str, object]]:
        if args:
            assert isinstance(args[0], Tensor)
            return (edit(args[0]), *args[1:]), kwargs
        kwargs = dict(kwargs)
        hidden = kwargs["hidden_states"]
        assert isinstance(hidden, Tensor)
        kwargs["hidden_states"] = edit(hidden)
        return args, kwargs

    return layer_module.register_forward_pre_hook(pre, with_kwargs=True)


@contextmanager
def edit_hf_residual(hf: nn.Module, hook: str, edit: Edit) -> Iterator[None]:
    """Apply `edit` at `hook` of a plain (or PEFT-wrapped) HF model inside the block; the hook is removed on exit."""
    layer, kind = parse_resid_hook(hook)
    layers = decoder_layers(hf)
    if layer >= len(layers):
        raise ConfigError(f"hook {hook}: the model has only {len(layers)} layers; pick a layer below {len(layers)}")
    handle = _register(layers[layer], kind, edit)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def edit_residual(model: LoadedModel, hook: str, edit: Edit) -> Iterator[None]:
    """Apply `edit` to a loaded model's residual stream at `hook` (HF modules and TransformerLens alike)."""
    parse_resid_hook(hook)
    with ExitStack() as stack:
        hf = getattr(model, "hf", None)
        if hf is not None:
            stack.enter_context(edit_hf_residual(hf, hook, edit))
        if hf is None or type(model.tl).__name__ != "TransformerBridge":  # a separate HookedTransformer
            stack.enter_context(model.tl.hooks(fwd_hooks=[(hook, lambda act, hook=None: edit(act))]))
        yield


def steer_vector(direction_D: Float[Tensor, " D"], strength: float) -> Edit:
    """An edit adding ``strength * direction`` at every position."""
    v = direction_D.detach().float()

    def edit(x: Tensor) -> Tensor:
        return x + (strength * v).to(x.dtype).to(x.device)

    return edit
