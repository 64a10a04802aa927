"""The latent-basis adapter: a fine-tune described as a k-sparse set of crosscoder latents.

The adapter is a constant bias added to the *base* model's residual stream at the crosscoder's hook, written in the
latent basis: ``v = s * sum_j c_j a_j`` with s the typical residual norm there and each atom a_j a unit residual
direction of one latent, either its fine-tuned decoder d_j,ft (``ft``: "latent j, switched on") or its decoder
change d_j,ft - d_j,base (``diff``: "latent j, as the fine-tune rewrote it"; only latents whose decoder moved by at
least `min_diff` of its norm, so a numerically unchanged decoder is not an atom).

It is fitted to reproduce the fine-tuned model's *behaviour*: the loss is KL(p_ft || p_base+v), the divergence of
the next-token distributions over the assistant tokens of the organism's own conversations. Latents are chosen by
gradient pursuit, nested: the atoms most aligned with the loss gradient are added (1, then up to 4, then up to 16
...), and after each addition all coefficients are refitted (L-BFGS). A dense bias (any v, 576 numbers) is fitted
the same way as the ceiling of any bias at this hook.

Reported on held-out conversations: behaviour_recovered(k) = 1 - KL(ft || base+v_k) / KL(ft || base), the share of
the fine-tune's behavioural change (in this divergence) that the k latents reproduce.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from crosscoder.errors import ConfigError
from crosscoder.models.residual import edit_hf_residual, parse_resid_hook
from crosscoder.personas.compose.likelihood import Row, chat_rows, pad_id_of
from crosscoder.personas.compose.tail import TailModel, _decoder, batch_tensors, capture_resid, head_of

log = logging.getLogger(__name__)


@dataclass
class LatentAdapterConfig:
    """How the latent-basis adapter is fitted."""

    ks: tuple[int, ...] = (1, 4, 16)
    """Sparsity levels (nested: each set contains the previous one)."""
    n_fit: int = 32
    """Organism conversations the adapter is fitted on."""
    n_eval: int = 24
    """Held-out organism conversations it is scored on."""
    steps: int = 20
    """L-BFGS iterations after each addition of latents (and for the dense bias); each may evaluate the loss more
    than once (line search)."""
    atoms: str = "both"
    """ft (fine-tuned decoders) | diff (decoder changes) | both."""
    min_diff: float = 0.05
    """A decoder change counts as an atom only when its norm is at least this fraction of the latent's decoder norm."""
    batch_size: int = 8
    """Conversations per forward pass."""
    max_len: int = 192
    """Conversations are truncated to this many tokens."""
    seed: int = 0
    """Seed of the fit / held-out split."""
    extra_hooks: tuple[str, ...] = ()
    """More resid_post hooks where the same k latents' atoms are added, each hook with its own coefficients (a bias
    at one late hook reaches only the last blocks). Empty: the crosscoder's hook only."""

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks) or list(self.ks) != sorted(set(self.ks)):
            raise ConfigError("latent_adapter.ks: increasing positive sizes, e.g. [1, 4, 16]")
        if self.atoms not in ("ft", "diff", "both"):
            raise ConfigError(f"latent_adapter.atoms: {self.atoms!r}; use ft, diff or both")
        if self.n_fit < 1 or self.n_eval < 1 or self.steps < 1:
            raise ConfigError("latent_adapter: n_fit, n_eval and steps must be >= 1")


@dataclass
class LatentTerm:
    """One latent of a fitted adapter."""

    latent: int
    kind: str
    """ft (its fine-tuned decoder) or diff (its decoder change)."""
    coefficient: float
    """Weight of the unit atom at the crosscoder's hook, in units of the typical residual norm at the first hook."""
    per_hook: dict[str, float] = field(default_factory=dict)
    """With extra hooks: the atom's weight at every hook (same units)."""
    top_tokens: list[str] = field(default_factory=list)
    """Logit lens of the signed atom (through the final norm's weight and the unembedding)."""


@dataclass
class LatentFit:
    """The adapter at one sparsity (k None: the dense bias)."""

    k: int | None
    terms: list[LatentTerm]
    kl_fit: float
    kl_heldout: float
    behaviour_recovered: float
    vector_norm_fraction: float
    """||v|| / typical residual norm at the first hook (with several hooks: the root of the summed squares)."""


@dataclass
class LatentAdapterResult:
    hook: str
    """The crosscoder's hook (where the atoms live)."""
    typical_norm: float
    kl_base_heldout: float
    """KL(ft || base) per assistant token on the held-out conversations: the change to recover."""
    n_atoms: int
    dense: LatentFit
    fits: list[LatentFit]
    vectors: dict[str, Tensor] = field(default_factory=dict)
    """The fitted bias of each k (key str(k), and "dense"), [len(hooks), D], for steering checks."""
    hooks: list[str] = field(default_factory=list)
    """The hooks the biases are added at, in block order (rows of each vector)."""


class _Batches:
    """Cached base residuals at the hook and the ft model's log-probabilities at the scored positions."""

    def __init__(self, base: Any, ft: Any, rows: list[Row], hooks: list[str], batch_size: int) -> None:
        pad = pad_id_of(base.tokenizer)
        hook, self.later = hooks[0], hooks[1:]
        self.items: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = []
        dec_ft, head_ft = _decoder(ft.hf), head_of(ft.hf)
        with torch.no_grad():
            for s in range(0, len(rows), batch_size):
                ids, mask, pos = batch_tensors(rows[s : s + batch_size], pad)
                resid = capture_resid(base.hf, hook, ids, mask)
                hidden = dec_ft(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
                logp_ft = torch.log_softmax(head_ft(hidden[pos]).float(), -1).half()
                self.items.append((ids, mask, pos, resid, logp_ft))
        self.n_pos = sum(int(p.sum()) for _, _, p, _, _ in self.items)

    def kl(self, tail: TailModel, v: Tensor | None, backward: bool = False) -> float:
        """Mean KL(ft || base+v) per scored token, v [H, D] (row 0 at the cached hook, the others at `later`); with
        `backward`, its gradient accumulates into v."""
        total = 0.0
        leaf = v.detach().requires_grad_(True) if backward and v is not None else v
        for ids, mask, pos, resid, logp_ft in self.items:
            later = [] if leaf is None else list(zip(self.later, leaf[1:], strict=True))
            with torch.set_grad_enabled(backward), _added(tail.hf, later):
                first = None if leaf is None else leaf[0]
                logq = torch.log_softmax(tail.logits(resid, ids, mask, pos, first).float(), -1)
                p = logp_ft.float().exp()
                kl = (p * (logp_ft.float() - logq)).sum() / self.n_pos
                if backward:
                    kl.backward()  # one batch's graph at a time; the gradient gathers in `leaf`
            total += float(kl.detach())
        if backward and v is not None and leaf is not None and leaf.grad is not None:
            v.backward(leaf.grad)
        return total


@contextlib.contextmanager
def _added(hf: nn.Module, terms: list[tuple[str, Tensor]]) -> Iterator[None]:
    """Add each (differentiable) vector at its hook inside the block (hooks removed on exit, exceptions included)."""
    with contextlib.ExitStack() as stack:
        for hook, vec in terms:
            stack.enter_context(edit_hf_residual(hf, hook, _plus(vec)))
        yield


def _plus(vec: Tensor) -> Callable[[Tensor], Tensor]:
    """An edit adding `vec` without detaching it (gradients reach it)."""
    return lambda x: x + vec


def adapter_hooks(hook: str, extra: tuple[str, ...]) -> list[str]:
    """The crosscoder's hook and the extra ones, resid_post only, in block order."""
    for h in (hook, *extra):
        if parse_resid_hook(h)[1] != "post":
            raise ConfigError(f"latent adapter hook {h}: use blocks.L.hook_resid_post hooks")
    return sorted({hook, *extra}, key=lambda h: parse_resid_hook(h)[0])


def atom_matrix(
    dec_ft_FD: Tensor, dec_base_FD: Tensor, cfg: LatentAdapterConfig
) -> tuple[Tensor, list[tuple[int, str]]]:
    """Unit atoms [N, D] and (latent, kind) of each, from raw-basis decoders of the fine-tuned and base model."""
    rows, labels = [], []
    if cfg.atoms in ("ft", "both"):
        norms = dec_ft_FD.norm(dim=-1)
        keep = (norms > 1e-8).nonzero().flatten().tolist()
        rows.append(dec_ft_FD[keep] / norms[keep, None])
        labels += [(j, "ft") for j in keep]
    if cfg.atoms in ("diff", "both"):
        diff = dec_ft_FD - dec_base_FD
        scale = torch.maximum(dec_ft_FD.norm(dim=-1), dec_base_FD.norm(dim=-1)).clamp_min(1e-12)
        keep = (diff.norm(dim=-1) >= cfg.min_diff * scale).nonzero().flatten().tolist()
        rows.append(diff[keep] / diff[keep].norm(dim=-1, keepdim=True))
        labels += [(j, "diff") for j in keep]
    return torch.cat(rows), labels


def _fit(
    loss: Callable[[Tensor, bool], float], make_v: Callable[[Tensor], Tensor], c: Tensor, cfg: LatentAdapterConfig
) -> float:
    """Minimise the loss over the coefficients `c` (in place) by L-BFGS with a strong-Wolfe line search: no step size
    to tune between 1 and 576 parameters. Returns the last loss evaluated."""
    c.requires_grad_(True)
    opt = torch.optim.LBFGS([c], lr=1.0, max_iter=cfg.steps, history_size=10, line_search_fn="strong_wolfe")
    last = [float("nan")]

    def closure() -> Tensor:
        opt.zero_grad()
        last[0] = loss(make_v(c), True)
        return torch.tensor(last[0])

    opt.step(closure)
    c.requires_grad_(False)
    return float(loss(make_v(c), False))


def split_conversations(
    convs: list[list[dict[str, str]]], cfg: LatentAdapterConfig
) -> tuple[list[list[dict[str, str]]], list[list[dict[str, str]]]]:
    """A seeded (fit, held-out) split of the organism's conversations."""
    if len(convs) < cfg.n_fit + cfg.n_eval:
        raise ConfigError(f"latent adapter: {len(convs)} conversations, need n_fit + n_eval = {cfg.n_fit + cfg.n_eval}")
    order = list(range(len(convs)))
    random.Random(cfg.seed).shuffle(order)
    return [convs[i] for i in order[: cfg.n_fit]], [convs[i] for i in order[cfg.n_fit : cfg.n_fit + cfg.n_eval]]


def _pursuit(g_HD: Tensor, atoms_ND: Tensor, exclude: list[int], m: int) -> list[int]:
    """`m` atoms by matching pursuit on the gradient [H, D] (one row per hook; an atom's alignment is the norm of its
    dot products over the hooks): the best-aligned atom, then the best for what it leaves, ..."""
    g = g_HD.reshape(-1, g_HD.shape[-1]).clone()
    picked: list[int] = []
    for _ in range(m):
        scores = (atoms_ND @ g.T).norm(dim=1)
        scores[exclude + picked] = -1.0
        j = int(scores.argmax())
        picked.append(j)
        g = g - (g @ atoms_ND[j])[:, None] * atoms_ND[j][None, :]
    return picked


def _lens(model: Any, atom_D: Tensor, n: int = 5) -> list[str]:
    dec = _decoder(model.hf)
    norm = getattr(dec, "norm", None)
    gamma = norm.weight.detach() if norm is not None and hasattr(norm, "weight") else torch.ones_like(atom_D)
    with torch.no_grad():
        logits = head_of(model.hf)(atom_D * gamma)
    return [model.tokenizer.decode([int(t)]) for t in logits.topk(n).indices]


def _linear(scale: float, basis_KD: Tensor) -> Callable[[Tensor], Tensor]:
    """c [K, H] -> scale * c^T @ basis, the biases [H, D]."""
    return lambda c: scale * (c.T @ basis_KD)


def _typical_norm(batches: _Batches) -> float:
    norms = []
    for _, mask, _, resid, _ in batches.items:
        real = mask.bool().clone()
        real[:, 0] = False
        norms.append(resid[real].norm(dim=-1))
    return float(torch.cat(norms).median())


def fit_latent_adapter(
    base: Any,
    ft: Any,
    conversations: list[list[dict[str, str]]],
    dec_ft_FD: Tensor,
    dec_base_FD: Tensor,
    hook: str,
    cfg: LatentAdapterConfig,
) -> LatentAdapterResult:
    """Fit the dense bias and the nested k-sparse latent adapters of `ft` over `base` (LoadedModels): atoms from the
    crosscoder at `hook`, added there and at `cfg.extra_hooks`."""
    hooks = adapter_hooks(hook, cfg.extra_hooks)
    fit_convs, eval_convs = split_conversations(conversations, cfg)
    fit = _Batches(base, ft, chat_rows(base.tokenizer, fit_convs, cfg.max_len), hooks, cfg.batch_size)
    held = _Batches(base, ft, chat_rows(base.tokenizer, eval_convs, cfg.max_len), hooks, cfg.batch_size)
    tail = TailModel(base.hf, hooks[0])
    typical = _typical_norm(fit)
    kl0_fit, kl0_eval = fit.kl(tail, None), held.kl(tail, None)
    log.info("latent adapter: KL(ft || base) %.4f fit, %.4f held-out per token; typical norm %.1f; hooks %s", kl0_fit,
             kl0_eval, typical, hooks)  # fmt: skip

    def done(k: int | None, v: Tensor, kl_fit: float, terms: list[LatentTerm]) -> LatentFit:
        kl_eval = held.kl(tail, v)
        rec = 1.0 - kl_eval / kl0_eval if kl0_eval > 0 else float("nan")
        log.info("latent adapter k=%s: KL fit %.4f, held-out %.4f, recovered %.3f", k, kl_fit, kl_eval, rec)
        return LatentFit(k, terms, kl_fit, kl_eval, rec, float(v.norm()) / typical)

    def loss(v: Tensor, backward: bool) -> float:
        return fit.kl(tail, v, backward)

    n_h = len(hooks)
    w = torch.zeros(n_h, base.d_model)
    kl_dense = _fit(loss, lambda c: typical * c, w, cfg)
    result = LatentAdapterResult(hook, typical, kl0_eval, 0, done(None, typical * w, kl_dense, []), [], hooks=hooks)
    result.vectors["dense"] = typical * w
    atoms, labels = atom_matrix(dec_ft_FD.float(), dec_base_FD.float(), cfg)
    result.n_atoms = len(labels)
    chosen: list[int] = []
    c = torch.zeros(0, n_h)
    for k in cfg.ks:
        v0 = (typical * (c.T @ atoms[chosen]) if chosen else torch.zeros(n_h, base.d_model)).requires_grad_(True)
        loss(v0, True)
        assert v0.grad is not None
        chosen = chosen + _pursuit(v0.grad, atoms, chosen, min(k, len(labels)) - len(chosen))
        c = torch.cat([c.detach(), torch.zeros(len(chosen) - len(c), n_h)])
        kl_k = _fit(loss, _linear(typical, atoms[chosen]), c, cfg)
        v = typical * (c.T @ atoms[chosen])
        result.fits.append(done(k, v.detach(), kl_k, _terms(ft, chosen, c, atoms, labels, hooks, hook)))
        result.vectors[str(k)] = v.detach()
    return result


def _terms(
    ft: Any, chosen: list[int], c_KH: Tensor, atoms: Tensor, labels: list[tuple[int, str]], hooks: list[str], hook: str
) -> list[LatentTerm]:
    """The chosen latents with their coefficient at the crosscoder's hook (and at every hook when there are several)
    and the logit lens of the signed atom."""
    at = hooks.index(hook)
    out = []
    for i, row in zip(chosen, c_KH, strict=True):
        per_hook = {h: float(x) for h, x in zip(hooks, row, strict=True)} if len(hooks) > 1 else {}
        sign = torch.sign(row[at]) if float(row[at]) != 0 else torch.sign(row.sum())
        out.append(LatentTerm(labels[i][0], labels[i][1], float(row[at]), per_hook, _lens(ft, sign * atoms[i])))
    return out
