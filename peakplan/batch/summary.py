"""The batch summary: one row per case and plan, the override values as columns.

Read from the run directories the workers wrote (``summary.json``, ``comparison.parquet``,
``manifest.json``); deterministic, so a resumed batch has the same summary as an
uninterrupted one (timings are in ``batch.json``, not here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peakplan.batch.cases import Case
from peakplan.batch.sweep import ROW_KEYS, get_path, is_table_path, table_cell
from peakplan.batch.worker import COMPLETE, CaseOutcome
from peakplan.errors import InputError
from peakplan.loaders import read_raw_table

__all__ = ["build_summary", "effective_values", "override_columns", "run_rows"]


def override_columns(cases: Sequence[Case]) -> list[str]:
    """Every override path used by any case, in order of first use."""
    return list(dict.fromkeys(p for c in cases for p in c.overrides))


def effective_values(case: Case, columns: Sequence[str]) -> dict[str, Any]:
    """The value of each override column in ``case`` (its override, else the base value)."""
    out: dict[str, Any] = {}
    for col in columns:
        if col in case.overrides:
            out[col] = case.overrides[col]
        elif case.data is None:
            out[col] = None
        elif is_table_path(col):
            out[col] = _table_value(case, col)
        else:
            out[col] = get_path(case.data, col)
    return out


def _table_value(case: Case, col: str) -> Any:
    table = col.split(".")[0]
    name, src = next(((k, v) for k, v in case.files.items() if k.startswith(table + ".")), ("", None))
    if src is None:
        return None
    try:
        df = read_raw_table(src, suffix=name[len(table):])
        row, c = table_cell(table, col)
        hits = df.loc[df[ROW_KEYS[table]].astype(str) == row, c]
        return hits.iloc[0] if len(hits) == 1 else None
    except (KeyError, InputError, OSError):
        return None


def run_rows(run_dir: Path) -> tuple[list[dict], str | None]:
    """One row per plan from a run directory (comparison.parquet if present, else the
    baseline of summary.json) and the recommended plan (summary.json, else manifest.json)."""
    summ = json.loads((run_dir / "summary.json").read_text())
    rec = summ.get("recommended")
    if rec is None and (run_dir / "manifest.json").is_file():
        rec = json.loads((run_dir / "manifest.json").read_text()).get("recommended")
    cmp_path = run_dir / "comparison.parquet"
    if cmp_path.is_file():
        rows = pd.read_parquet(cmp_path).to_dict("records")
    else:
        base = {k: v for k, v in summ.get("baseline", {}).items() if not isinstance(v, (dict, list))}
        rows = [{**base, "plan": "baseline"}]
    for r in rows:
        r["plan"] = str(r.get("plan", "baseline"))
    return rows, rec


def _column(values: list) -> pd.Series:
    present = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if present and all(isinstance(v, (bool, np.bool_)) for v in present):
        return pd.Series(values, dtype="boolean")
    if present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="Int64")
    if present and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in present):
        return pd.Series([np.nan if v is None else float(v) for v in values], dtype="float64")
    return pd.Series([None if v is None else (v if isinstance(v, str) else json.dumps(v, default=str))
                      for v in values], dtype="string")


def build_summary(cases: Sequence[Case], outcomes: Mapping[str, CaseOutcome], out: Path) -> pd.DataFrame:
    """One row per case and plan: case, plan, status, override values, seed, paths, metrics,
    recommended, error, case_key. Deterministic: timings are in ``batch.json``, not here."""
    cols = override_columns(cases)
    records: list[dict] = []
    for c in cases:
        o = outcomes.get(c.name)
        if o is None:
            continue
        head = {"case": c.name, "plan": None, "status": o.status, **effective_values(c, cols),
                "seed": c.seed, "paths": c.paths}
        tail = {"recommended": None, "error": o.error, "case_key": c.key}
        if (out / c.name / "case.json").is_file() and o.status in COMPLETE:
            rows, rec = run_rows(out / c.name)
            for r in rows:
                records.append({**head, "plan": r["plan"], **{k: v for k, v in r.items() if k != "plan"},
                                **tail, "recommended": rec})
        else:
            records.append({**head, **tail})
    if not records:
        return pd.DataFrame(columns=["case", "plan", "status", "error", "case_key"])
    names = list(dict.fromkeys(k for r in records for k in r))
    order = ([n for n in names if n not in ("recommended", "error", "case_key")]
             + ["recommended", "error", "case_key"])
    return pd.DataFrame({n: _column([r.get(n) for r in records]) for n in order})
