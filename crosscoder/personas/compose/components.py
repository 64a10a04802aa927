"""The singular components of a LoRA adapter, and which of them carry one trait but not another.

Every adapted module's update ``s B A`` is rewritten exactly in its singular basis, ``B' = U S``, ``A' = V^T`` (the
same rank and scale, so the factors still load as the same PEFT adapter), and each singular component i of module m
gets a gate alpha_mi (1 = as trained). The first-order effect of removing a component on a text set's mean token
negative log-likelihood is ``-dNLL/dalpha_mi = -sum_d B'[d, i] dNLL/dB'[d, i]``: one backward pass per text set scores
every component of every module (attribution patching on the adapter's own parameters).

A component is chosen for removal when taking it away raises the NLL of the removed trait's texts and does not
raise the NLL of the kept trait's texts or of plain answers (capability): score = gain on removed
- relu(cost on kept) - relu(cost on plain). Components are taken in `rounds`, the scores recomputed on the edited
adapter after each, since first-order scores go stale as the edit grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from crosscoder.errors import ConfigError, ModelError
from crosscoder.personas.compose.likelihood import Row
from crosscoder.personas.compose.tail import batch_tensors, head_of

ModuleKey = tuple[int, str]
"""(block index, module path inside the block), e.g. (12, "mlp.gate_proj")."""


@dataclass(frozen=True)
class ComponentConfig:
    """How components are chosen."""

    n_components: int = 192
    """Singular components to remove in all (of r per adapted module)."""
    rounds: int = 4
    """Rounds of choosing; the attribution is recomputed on the edited adapter before each."""
    kept_weight: float = 1.0
    """Weight of a component's cost on the kept trait's texts (and on the plain answers) in its score."""
    batch_size: int = 8
    """Conversations per forward/backward pass."""

    def __post_init__(self) -> None:
        if self.n_components < 1 or self.rounds < 1 or self.rounds > self.n_components:
            raise ConfigError("component surgery: n_components >= rounds >= 1, e.g. n_components 192, rounds 4")
        if self.kept_weight < 0:
            raise ConfigError("component surgery: kept_weight must be >= 0")


def factor(mod: nn.Module, kind: str) -> Tensor:
    """The default adapter's ``lora_A`` or ``lora_B`` weight of a PEFT LoRA module."""
    layers: Any = getattr(mod, kind)
    weight: Tensor = layers["default"].weight
    return weight


def peft_lora_modules(peft_model: nn.Module) -> dict[ModuleKey, nn.Module]:
    """The LoRA-wrapped modules of a PEFT model (default adapter), keyed by (block, module path in the block)."""
    out: dict[ModuleKey, nn.Module] = {}
    for name, mod in peft_model.named_modules():
        if not (hasattr(mod, "lora_A") and hasattr(mod, "lora_B")) or "default" not in getattr(mod, "lora_A", {}):
            continue
        parts = name.split(".")
        if "layers" not in parts:
            raise ModelError(f"LoRA module {name} is not inside a block; component surgery edits block modules only")
        i = parts.index("layers")
        out[(int(parts[i + 1]), ".".join(parts[i + 2 :]))] = mod
    if not out:
        raise ModelError("the model has no LoRA modules; load the adapter with PeftModel.from_pretrained")
    return out


def svd_factors(b_DR: Tensor, a_RI: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B', A', S) with ``B' A' = B A`` exactly, B' = U S with orthogonal columns and A' = V^T orthonormal rows."""
    b, a = b_DR.to(torch.float64), a_RI.to(torch.float64)
    qb, rb = torch.linalg.qr(b)
    qa, ra = torch.linalg.qr(a.T)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    return (qb @ u * s).to(b_DR.dtype), (vh @ qa.T).to(a_RI.dtype), s.to(b_DR.dtype)


@torch.no_grad()
def to_svd_factors(mods: dict[ModuleKey, nn.Module]) -> None:
    """Rewrite every module's factors in place in its singular basis (the model's function is unchanged)."""
    for m in mods.values():
        a_w, b_w = factor(m, "lora_A"), factor(m, "lora_B")
        b_new, a_new, _ = svd_factors(b_w, a_w)
        b_w.copy_(b_new)
        a_w.copy_(a_new)


def mean_nll(peft_model: nn.Module, rows: list[Row], pad_id: int, batch_size: int) -> Tensor:
    """Mean negative log-likelihood per scored token of `rows` (differentiable w.r.t. anything that requires grad)."""
    wrapper: Any = peft_model
    inner = wrapper.base_model.model
    dec, head = inner.model, head_of(inner)
    total, count = torch.zeros(()), 0
    for s in range(0, len(rows), batch_size):
        ids, mask, pos = batch_tensors(rows[s : s + batch_size], pad_id)
        hidden = dec(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        logp = torch.log_softmax(head(hidden[pos]).float(), -1)
        total = total - logp.gather(-1, torch.roll(ids, -1, 1)[pos][:, None]).sum()
        count += int(pos.sum())
    return total / max(count, 1)


def attribution_scores(
    peft_model: nn.Module, mods: dict[ModuleKey, nn.Module], rows: list[Row], pad_id: int, batch_size: int
) -> dict[ModuleKey, Tensor]:
    """Per module, dNLL/dalpha_i of each singular component (the factors must be in the singular basis)."""
    weights = {k: factor(m, "lora_B") for k, m in mods.items()}
    for w in weights.values():
        w.requires_grad_(True)
        w.grad = None
    try:
        with torch.enable_grad():
            mean_nll(peft_model, rows, pad_id, batch_size).backward()
        return {k: (w.detach() * w.grad).sum(0) if w.grad is not None else torch.zeros(w.shape[1])
                for k, w in weights.items()}  # fmt: skip
    finally:
        for w in weights.values():
            w.requires_grad_(False)
            w.grad = None


def component_scores(
    peft_model: nn.Module,
    mods: dict[ModuleKey, nn.Module],
    sets: tuple[list[Row], list[Row], list[Row]],
    pad_id: int,
    cfg: ComponentConfig,
) -> dict[ModuleKey, Tensor]:
    """score = (NLL gain on the removed texts) - w relu(cost on kept) - w relu(cost on plain), to first order."""
    removed, kept, plain = (attribution_scores(peft_model, mods, rows, pad_id, cfg.batch_size) for rows in sets)
    return {k: -removed[k] - cfg.kept_weight * (torch.relu(-kept[k]) + torch.relu(-plain[k])) for k in mods}


@torch.no_grad()
def select_components(
    peft_model: nn.Module,
    mods: dict[ModuleKey, nn.Module],
    removed: list[Row],
    kept: list[Row],
    plain: list[Row],
    pad_id: int,
    cfg: ComponentConfig,
) -> list[tuple[ModuleKey, int]]:
    """Zero (in place) the best-scoring singular components, in rounds; returns them in the order chosen.
    The factors must already be in the singular basis (:func:`to_svd_factors`)."""
    chosen: list[tuple[ModuleKey, int]] = []
    per_round = [cfg.n_components // cfg.rounds + (r < cfg.n_components % cfg.rounds) for r in range(cfg.rounds)]
    for take in per_round:
        scores = component_scores(peft_model, mods, (removed, kept, plain), pad_id, cfg)
        flat = [(float(v), k, i) for k, row in scores.items() for i, v in enumerate(row.tolist())]
        done = set(chosen)
        flat = sorted((x for x in flat if (x[1], x[2]) not in done and x[0] > 0), key=lambda x: x[0], reverse=True)
        for _, k, i in flat[:take]:
            factor(mods[k], "lora_B")[:, i] = 0.0
            chosen.append((k, i))
        if len(flat) < take:
            break
    return chosen


def describe(chosen: list[tuple[ModuleKey, int]]) -> dict[str, Any]:
    """Counts of the removed components per module type and per block (for the manifest and the report)."""
    by_module: dict[str, int] = {}
    by_block: dict[int, int] = {}
    for (layer, name), _ in chosen:
        by_module[name] = by_module.get(name, 0) + 1
        by_block[layer] = by_block.get(layer, 0) + 1
    return {"n": len(chosen), "by_module": by_module, "by_block": dict(sorted(by_block.items()))}
