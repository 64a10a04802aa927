"""The latent dashboards in W&B: the table `latent_dashboards` (one row per dashboard: numbers, logit lens, the top
and quantile-band contexts as HTML cells), the histogram `hist/log10_density` of every latent's activation density,
and the page `dashboards` (dashboards.html, when it is under `MAX_PAGE_MB`). The files go into the analysis artifact
under dashboards/ (`crosscoder.analysis.export.wandb_log`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crosscoder.analysis.report.html import CSS, highlighted_tokens
from crosscoder.io import read_json

MAX_PAGE_MB = 20.0
"""dashboards.html is logged as a wandb.Html panel only below this size (it is always in the artifact)."""
COLUMNS = ("latent", "class", "label", "rank", "density", "max_act", "rel_norm", "cos", "lens_ft", "lens_diff",
           "top_contexts", "band_contexts")  # fmt: skip


def _contexts(examples: list[dict[str, Any]], scale: float) -> str:
    return "".join(highlighted_tokens(e["tokens"], e["acts"], e["max_pos"], scale, (12, 3)) for e in examples)


def _tokens(lens: dict[str, Any] | None) -> str:
    return " ".join(str(t) for t, _ in (lens or {}).get("promoted", [])[:8])


def dashboard_payload(analysis_dir: Path) -> dict[str, Any]:
    """What the dashboards add to the analysis run's `run.log` ({} without dashboards)."""
    import wandb

    from crosscoder.analysis.dashboards.build import DATA_FILE, FOLDER, PAGE_FILE

    folder = Path(analysis_dir) / FOLDER
    if not (folder / DATA_FILE).is_file():
        return {}
    data = read_json(folder / DATA_FILE)
    ft = data["models"][-1]
    rows = []
    for d in data["latents"]:
        scale = float(d["max_act"]) or 1.0
        bands = [e for band in reversed(d["bands"]) for e in band[:1]]  # one example per band, highest band first
        rows.append([d["latent"], d["cls"], d["label"], d["rank"], d["density"], d["max_act"], d["rel_norm"], d["cos"],
                     _tokens(d["lens"].get(ft)), _tokens(d["lens"].get("diff")),
                     wandb.Html(f"<style>{CSS}</style>{_contexts(d['top'][:3], scale)}", inject=False),
                     wandb.Html(f"<style>{CSS}</style>{_contexts(bands, scale)}", inject=False)])  # fmt: skip
    payload: dict[str, Any] = {"latent_dashboards": wandb.Table(columns=list(COLUMNS), data=rows)}
    density = np.asarray(data.get("density_all") or [], dtype=float)
    if (density > 0).any():
        payload["hist/log10_density"] = wandb.Histogram(np.log10(density[density > 0]).tolist(), num_bins=50)
    page = folder / PAGE_FILE
    if page.is_file() and page.stat().st_size < MAX_PAGE_MB * 1e6:
        payload["dashboards"] = wandb.Html(page.read_text(encoding="utf-8"), inject=False)
    return payload


def dashboard_files(analysis_dir: Path) -> list[Path]:
    """The dashboard files for the analysis artifact."""
    from crosscoder.analysis.dashboards.build import DATA_FILE, FOLDER, PAGE_FILE

    folder = Path(analysis_dir) / FOLDER
    return [folder / f for f in (DATA_FILE, PAGE_FILE) if (folder / f).is_file()]
