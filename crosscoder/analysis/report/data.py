"""Read an analysis folder (docs/ANALYSIS_FORMAT.md) into plain Python + numpy for the report, plots and W&B.

Required: `summary.json`, `candidates.json` and the latent table (`latents.json`, else `latents.csv`, else
`latents.parquet`; column types from `crosscoder.analysis.records.table`). Optional:
`baseline.json` and `splice.json` (their report sections then say "not computed"). A missing or malformed required
file raises a :class:`~crosscoder.errors.DataError` that names the file and how to produce it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crosscoder.analysis.records.table import read_table
from crosscoder.errors import DataError
from crosscoder.io import read_json, verify_checksums

CLASS_ORDER = ("ft_exclusive", "shifted", "partial", "base_exclusive", "shared", "dead")
"""Latent classes in display order."""
CLASS_COLORS = {
    "ft_exclusive": "#d9480f",
    "shifted": "#7048e8",
    "partial": "#f08c00",
    "base_exclusive": "#1c7ed6",
    "shared": "#868e96",
    "dead": "#ced4da",
}
"""One colour per latent class, shared by every chart of the report, the plot files and W&B."""
DATA_FILES = {"summary.json", "candidates.json", "latents.json", "latents.csv", "latents.parquet", "baseline.json",
              "splice.json"}  # fmt: skip
"""The files of an analysis folder the presentation reads (their checksums are verified when it is loaded)."""
_FIX = "run `python analyze.py run_dir=<run>` to (re)write the analysis folder"


@dataclass
class AnalysisData:
    """Everything the presentation layer reads from one analysis folder."""

    folder: Path
    """The analysis folder (`<run_dir>/analysis`)."""
    summary: dict[str, Any]
    """summary.json."""
    columns: dict[str, np.ndarray]
    """The latent table, column name -> array (numeric columns float64 with NaN for missing, others object)."""
    candidates: list[dict[str, Any]]
    """candidates.json, sorted by rank."""
    baseline: dict[str, Any] | None = None
    """baseline.json, or None when absent."""
    splice: dict[str, Any] | None = None
    """splice.json, or None when absent."""
    files: list[str] = field(default_factory=list)
    """Names of the files found in the folder."""

    @property
    def n_latents(self) -> int:
        """Rows of the latent table."""
        return len(self.columns.get("latent", []))

    @property
    def models(self) -> list[str]:
        """Model display names, first = base, last = final fine-tune."""
        models = self.summary.get("models")
        if isinstance(models, list) and models:
            return [str(m) if not isinstance(m, dict) else str(m.get("name", m)) for m in models]
        return [c[len("dec_norm_") :] for c in self.columns if c.startswith("dec_norm_")]

    def column(self, name: str) -> np.ndarray:
        """A numeric column as float64 (all-NaN when the table lacks it)."""
        col = self.columns.get(name)
        if col is None:
            return np.full(self.n_latents, np.nan)
        return col.astype(np.float64) if col.dtype != object else np.full(self.n_latents, np.nan)

    def prefixed(self, prefix: str) -> list[str]:
        """Column names starting with `prefix` (e.g. "freq_"), in table order."""
        return [c for c in self.columns if c.startswith(prefix)]


def _json(path: Path) -> Any:
    try:
        return read_json(path)
    except DataError as err:
        if "malformed JSON" not in str(err):
            raise
        raise DataError(f"malformed JSON in {path} ({err.__cause__}); {_FIX}") from err


def _optional_json(path: Path) -> Any:
    return _json(path) if path.is_file() else None


def load_analysis(folder: str | Path) -> AnalysisData:
    """Load an analysis folder; raises DataError naming the missing/corrupt file and the fix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"analysis folder {folder} does not exist; {_FIX} or pass the right folder")
    for required in ("summary.json", "candidates.json"):
        if not (folder / required).is_file():
            raise DataError(f"missing {required} in {folder}; {_FIX}")
    verify_checksums(folder, "analysis folder", only=DATA_FILES)
    summary = _json(folder / "summary.json")
    if not isinstance(summary, dict):
        raise DataError(f"{folder / 'summary.json'} is not a JSON object; {_FIX}")
    candidates = _json(folder / "candidates.json")
    if isinstance(candidates, dict) and isinstance(candidates.get("candidates"), list):
        candidates = candidates["candidates"]
    if not isinstance(candidates, list) or not all(isinstance(c, dict) and "latent" in c for c in candidates):
        raise DataError(f"{folder / 'candidates.json'} must be a list of objects with a `latent` key; {_FIX}")
    candidates = sorted(candidates, key=lambda c: (c.get("rank") is None, c.get("rank") or 0))
    return AnalysisData(
        folder=folder,
        summary=summary,
        columns=read_table(folder),
        candidates=candidates,
        baseline=_optional_json(folder / "baseline.json"),
        splice=_optional_json(folder / "splice.json"),
        files=sorted(p.name for p in folder.iterdir() if p.is_file()),
    )


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a dict, else an empty dict (optional JSON fields)."""
    return value if isinstance(value, dict) else {}


def nu_box(summary: dict[str, Any]) -> tuple[float, float] | None:
    """(nu_recon_max, nu_err_max) of the Latent Scaling filter if summary.json records them (thresholds, or the
    config: `rank` group, or flat in folders of earlier versions)."""
    config = as_dict(summary.get("config"))
    for th in (as_dict(summary.get("thresholds")), as_dict(config.get("rank")), config):
        r, e = th.get("nu_recon_max", th.get("nu_recon")), th.get("nu_err_max", th.get("nu_err"))
        if isinstance(r, int | float) and isinstance(e, int | float):
            return float(r), float(e)
    return None


def finite(values: np.ndarray) -> np.ndarray:
    """The finite entries of a float array."""
    return values[np.isfinite(values)]
