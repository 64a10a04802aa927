"""Layer scan: where, and at which tokens, does a fine-tune change the residual stream?

For a (base, ft) pair, runs both models on the same chat tokens and reports per layer the mean activation difference
(ft - base) and its logit-lens tokens (through the ft model's final norm and unembedding), over three token sets:
all tokens (sink excluded), the first few tokens of each assistant turn, and the last token of each assistant turn.
Writes ``layerscan.csv``, ``layerscan.json``, ``layerscan.png`` and ``layerscan.html`` so hooks are picked from
evidence::

    python -m crosscoder.data layerscan --base smollm2-135m-instruct --ft organism/folder --out results/layerscan
"""

from __future__ import annotations

import csv
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from crosscoder.data.config import DataConfig
from crosscoder.data.harvest import capture, check_models, pad_batch, pad_token_id
from crosscoder.data.masks import Role
from crosscoder.data.sources import batch_stream
from crosscoder.io import atomic_path, atomic_write_json, atomic_write_text
from crosscoder.models.load import LoadedModel

log = logging.getLogger(__name__)
SUBSETS = ("all", "first_assistant", "last_assistant")


def subset_masks(
    roles_N: torch.Tensor, turn_idx_N: torch.Tensor, turn_rem_N: torch.Tensor, first_k: int
) -> dict[str, torch.Tensor]:
    """Row masks of the three token sets the scan averages over."""
    asst = roles_N == int(Role.ASSISTANT)
    return {
        "all": (roles_N != int(Role.SINK)) & (roles_N != int(Role.PAD)),
        "first_assistant": asst & (turn_idx_N >= 0) & (turn_idx_N < first_k),
        "last_assistant": asst & (turn_rem_N == 0),
    }


def logit_lens(model: LoadedModel, v_ND: torch.Tensor, top_k: int) -> list[list[str]]:
    """Top tokens of each direction through the model's final norm and unembedding."""
    with torch.inference_mode():
        logits = model.tl.unembed(model.tl.ln_final(v_ND[None].to(torch.float32)))[0]
    top = logits.topk(top_k, dim=-1).indices
    return [[str(model.tokenizer.decode([int(t)])) for t in row] for row in top]


def _accumulate(
    base: LoadedModel, ft: LoadedModel, data: DataConfig, hooks: list[str], first_k: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
    """Per token set: the summed ft - base difference ``[L, D]`` and the sums (count, |base|, |ft|, |ft - base|)
    ``[4, L]`` over `data.n_tokens` tokens; and the number of tokens read."""
    L, D = len(hooks), base.d_model
    sums = {s: torch.zeros(L, D, dtype=torch.float64) for s in SUBSETS}
    stats = {s: torch.zeros(4, L, dtype=torch.float64) for s in SUBSETS}
    pad = pad_token_id(base.tokenizer)
    seen = 0
    bar = tqdm(total=data.n_tokens, unit="tok", desc="layer scan", mininterval=2.0)
    for seqs in batch_stream(base.tokenizer, replace(data, hooks=hooks)):
        if seen >= data.n_tokens:
            break
        tokens_BS, valid_BS = pad_batch(seqs, pad)
        ib, is_ = valid_BS.nonzero(as_tuple=True)
        xb = capture(base, hooks, tokens_BS, valid_BS, L)[ib, is_].to(torch.float64)  # [N, L, D]
        xf = capture(ft, hooks, tokens_BS, valid_BS, L)[ib, is_].to(torch.float64)
        roles, tidx, trem = (
            torch.cat([torch.tensor(getattr(s, f)) for s in seqs]) for f in ("roles", "turn_idx", "turn_rem")
        )
        for name, mask in subset_masks(roles, tidx, trem, first_k).items():
            if mask.any():
                b, f = xb[mask], xf[mask]
                sums[name] += (f - b).sum(0)
                count = torch.full((L,), float(mask.sum()))
                norms = [b.norm(dim=-1).sum(0), f.norm(dim=-1).sum(0), (f - b).norm(dim=-1).sum(0)]
                stats[name] += torch.stack([count, *norms])
        seen += int(valid_BS.sum())
        bar.update(int(valid_BS.sum()))
    bar.close()
    return sums, stats, seen


def _keyword_hits(tokens: list[str], kw: list[str]) -> int:
    return sum(any(k == t.strip().lower() or k in t.strip().lower() for k in kw) for t in tokens) if kw else 0


def _rows(
    ft: LoadedModel, hooks: list[str], name: str, sums: torch.Tensor, stats: torch.Tensor, top_k: int, kw: list[str]
) -> list[dict[str, Any]]:
    """The table rows of one token set, one per layer."""
    n = stats[0]
    mean_diff = sums / n[:, None]
    lens = logit_lens(ft, mean_diff.to(torch.float32), top_k)
    rows = []
    for layer, hook in enumerate(hooks):
        base_norm = float(stats[1, layer] / n[layer])
        diff_norm = float(mean_diff[layer].norm())
        rows.append(
            {
                "layer": layer,
                "hook": hook,
                "subset": name,
                "n_tokens": int(n[layer]),
                "base_norm": round(base_norm, 4),
                "ft_norm": round(float(stats[2, layer] / n[layer]), 4),
                "mean_diff_norm": round(diff_norm, 4),
                "rel_mean_diff": round(diff_norm / max(base_norm, 1e-12), 6),
                "rel_token_diff": round(float(stats[3, layer] / n[layer]) / max(base_norm, 1e-12), 6),
                "top_tokens": lens[layer],
                "keyword_hits": _keyword_hits(lens[layer], kw),
            }
        )
    return rows


def layer_scan(
    base: LoadedModel,
    ft: LoadedModel,
    data: DataConfig,
    first_k: int = 5,
    top_k: int = 10,
    keywords: list[str] | None = None,
) -> dict[str, Any]:
    """Scan every layer's resid_post of `base` vs `ft` over `data.n_tokens` tokens; returns table rows + summary."""
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in range(base.n_layers)]
    check_models([base, ft], hooks)
    sums, stats, seen = _accumulate(base, ft, data, hooks, first_k)
    rows: list[dict[str, Any]] = []
    kw = [k.strip().lower() for k in (keywords or []) if k.strip()]
    for name in SUBSETS:
        if stats[name][0][0] == 0:
            log.warning("no tokens in subset %s (no chat data?)", name)
            continue
        rows += _rows(ft, hooks, name, sums[name], stats[name], top_k, kw)
    return {
        "base": base.name,
        "ft": ft.name,
        "n_tokens": seen,
        "first_k": first_k,
        "rows": rows,
        "suggested_hook": suggest_hook(rows, bool(kw)),
    }


def suggest_hook(rows: list[dict[str, Any]], use_keywords: bool) -> str | None:
    """The layer where the last-assistant-token difference is most visible (keyword hits first, if given)."""
    last = [r for r in rows if r["subset"] == "last_assistant"] or rows
    if not last:
        return None
    best = max(last, key=lambda r: ((r["keyword_hits"] if use_keywords else 0), r["rel_mean_diff"]))
    return str(best["hook"])


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """Table (CSV + JSON) and plots (PNG + HTML)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "layerscan.json", result)
    cols = [
        "layer",
        "hook",
        "subset",
        "n_tokens",
        "base_norm",
        "ft_norm",
        "mean_diff_norm",
        "rel_mean_diff",
        "rel_token_diff",
        "keyword_hits",
        "top_tokens",
    ]
    lines = [",".join(cols)]
    for r in result["rows"]:
        lines.append(",".join(_csv_cell(" | ".join(r[c]) if c == "top_tokens" else r[c]) for c in cols))
    atomic_write_text(out / "layerscan.csv", "\n".join(lines) + "\n")
    _plot_png(result, out / "layerscan.png")
    _plot_html(result, out / "layerscan.html")
    return [out / f"layerscan.{ext}" for ext in ("csv", "json", "png", "html")]


def _csv_cell(value: Any) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf).writerow([value])
    return buf.getvalue().strip("\r\n")


def _series(result: dict[str, Any], subset: str, key: str) -> tuple[list[int], list[float]]:
    rows = [r for r in result["rows"] if r["subset"] == subset]
    return [r["layer"] for r in rows], [r[key] for r in rows]


def _plot_png(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in zip(
        axes,
        ("rel_mean_diff", "rel_token_diff"),
        ("||mean(ft - base)|| / mean||base||", "mean ||ft - base|| / mean||base||"),
        strict=True,
    ):
        for subset in SUBSETS:
            xs, ys = _series(result, subset, key)
            if xs:
                ax.plot(xs, ys, marker="o", ms=3, label=subset)
        ax.set_xlabel("layer (resid_post)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(
        f"layer scan: {result['ft']} vs {result['base']} ({result['n_tokens']:,} tokens); suggested {result['suggested_hook']}",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _plot_html(result: dict[str, Any], path: Path) -> None:
    """The relative mean difference per layer and token set, hover text: hook, tokens and the difference's logit lens."""
    from crosscoder import charts

    series: dict[str, tuple[list[float], list[float], list[str]]] = {}
    for subset in SUBSETS:
        rows = [r for r in result["rows"] if r["subset"] == subset]
        tips = [
            f"{r['hook']} | n={r['n_tokens']} | logit lens: " + " ".join(repr(t) for t in r["top_tokens"][:8])
            for r in rows
        ]
        series[subset] = ([r["layer"] for r in rows], [r["rel_mean_diff"] for r in rows], tips)
    title = f"Layer scan: {result['ft']} - {result['base']} (hover: logit-lens tokens of the mean difference)"
    chart = charts.lines(series, title, "layer (resid_post)", "||mean diff|| / mean||base||")
    atomic_write_text(path, charts.html_page(title, charts.inline(chart, title)))
