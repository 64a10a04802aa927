"""The latent table (latents.parquet / .csv / .json): its explicit column schema, the writer and the reader.

One row per latent; the columns are listed in docs/ANALYSIS_FORMAT.md. Each column's type follows from its name
(`column_type`): the writer stores the Parquet file with that schema and every reader (the report, the plots, W&B)
converts the JSON or CSV copy with the same rules, so no reader guesses a type from the values.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crosscoder.errors import DataError
from crosscoder.io import atomic_path, atomic_write_text, read_json

TEXT_COLUMNS = ("present_in", "ls_artifact", "class", "score_slice", "label", "runner_up", "peak_at")
"""Text columns ("" when empty)."""
INT_COLUMNS = ("latent", "rank", "series_rank")
"""Integer columns (`rank` / `series_rank` 0 = not eligible; `rank` null in latents.json)."""
BOOL_COLUMNS = ("is_candidate",)
FLOAT64_COLUMNS = ("score", "score_uncontrolled", "label_confidence")
"""Double-precision columns; every other column is a float32 statistic of the crosscoder (NaN when undefined)."""
TABLE_FILES = ("latents.parquet", "latents.json", "latents.csv")
_FIX = "run `python analyze.py run_dir=<run>` to (re)write the analysis folder"


def column_type(name: str) -> pa.DataType:
    """The Parquet type of a latent-table column, from its name."""
    if name in TEXT_COLUMNS:
        return pa.large_string()
    if name in INT_COLUMNS:
        return pa.int64()
    if name in BOOL_COLUMNS:
        return pa.bool_()
    if name in FLOAT64_COLUMNS:
        return pa.float64()
    return pa.float32()


def latent_schema(columns: list[str]) -> pa.Schema:
    """The schema of a latent table with these columns (in this order)."""
    return pa.schema([pa.field(c, column_type(c)) for c in columns])


def _clean(v: Any) -> Any:
    if isinstance(v, np.floating | float):
        f = float(v)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def table_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN -> null, numpy scalars -> Python; rank 0 -> null)."""
    out = []
    cols = list(df.columns)
    for row in df.itertuples(index=False, name=None):
        rec = {c: _clean(v) for c, v in zip(cols, row, strict=True)}
        rec["rank"] = rec["rank"] or None
        out.append(rec)
    return out


def write_table(df: pd.DataFrame, out_dir: Path) -> None:
    """latents.parquet (with `latent_schema`), latents.csv and latents.json in `out_dir`, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, schema=latent_schema(list(df.columns)), preserve_index=False)
    with atomic_path(out_dir / "latents.parquet") as tmp:
        pq.write_table(table, tmp)
    atomic_write_text(out_dir / "latents.csv", df.to_csv(index=False))
    atomic_write_text(out_dir / "latents.json", json.dumps(table_records(df), separators=(",", ":")) + "\n")


def _to_float(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _column(name: str, raw: list[Any], source: Path) -> np.ndarray:
    """One column of JSON or CSV values as the reader's array: numbers as float64 (NaN for null), text as str
    objects ("" for null), booleans as bool."""
    kind = column_type(name)
    if kind == pa.bool_():
        return np.array([v is True or str(v).lower() in ("true", "1") for v in raw], dtype=bool)
    if kind == pa.large_string():
        return np.array(["" if v is None else str(v) for v in raw], dtype=object)
    nums = np.array([_to_float(v) for v in raw], dtype=np.float64)
    bad = [
        v for v, n in zip(raw, nums, strict=True) if math.isnan(n) and v not in (None, "") and str(v).lower() != "nan"
    ]
    if bad:
        raise DataError(f"{source}: column {name!r} holds {bad[0]!r}, not a number; {_FIX}")
    return nums


def _records(folder: Path) -> tuple[list[dict[str, Any]], Path]:
    js, cs = folder / "latents.json", folder / "latents.csv"
    if js.is_file():
        obj = _json(js)
        if isinstance(obj, dict) and "data" in obj and "columns" in obj:  # pandas orient="split"
            return [dict(zip(obj["columns"], row, strict=True)) for row in obj["data"]], js
        if isinstance(obj, dict):  # orient="list": column -> values
            keys = list(obj)
            return [dict(zip(keys, vals, strict=True)) for vals in zip(*(obj[k] for k in keys), strict=True)], js
        if isinstance(obj, list):
            return obj, js
        raise DataError(f"{js} is neither a list of rows nor a column mapping; {_FIX}")
    with open(cs, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh)), cs


def _json(path: Path) -> Any:
    try:
        return read_json(path)
    except DataError as err:
        if "malformed JSON" not in str(err):
            raise
        raise DataError(f"malformed JSON in {path} ({err.__cause__}); {_FIX}") from err


def _parquet_records(path: Path) -> list[dict[str, Any]]:
    rows = pq.read_table(path).to_pylist()
    for r in rows:
        r["rank"] = r.get("rank") or None  # as latents.json writes it
    return rows


def read_table(folder: Path) -> dict[str, np.ndarray]:
    """The latent table of an analysis folder, column name -> array (see `_column`), from latents.json, else
    latents.csv, else latents.parquet; a DataError names a missing, empty or malformed table."""
    if (folder / "latents.json").is_file() or (folder / "latents.csv").is_file():
        records, source = _records(folder)
    elif (folder / "latents.parquet").is_file():
        source = folder / "latents.parquet"
        records = _parquet_records(source)
    else:
        raise DataError(f"no latent table (latents.json, latents.csv or latents.parquet) in {folder}; {_FIX}")
    if not records:
        raise DataError(f"{source} has no rows: the latent table is empty; {_FIX}")
    out = {name: _column(name, [r.get(name) for r in records], source) for name in records[0]}
    if "latent" not in out:
        raise DataError(f"{source} has no `latent` column; {_FIX}")
    return out
