"""Sweep specs and overrides: what each case of a batch changes in its base scenario.

A sweep spec (a YAML file with a ``base:`` key, see ``docs/batch.md``) is a base scenario
plus a grid and/or a list of named cases of overrides. An override is a dot path into the
scenario (``constraints.budget``; list items by their ``name``:
``events.black_friday_cyber_week.uplift.mode``) or a table cell
(``levers.temp_pickers_east.lead_time`` rewrites a copy of the lever table).
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from peakplan.errors import InputError
from peakplan.loaders import load_sweep_yaml

__all__ = [
    "ROW_KEYS",
    "TABLES",
    "CaseSpec",
    "SweepSpec",
    "apply_overrides",
    "get_path",
    "is_sweep",
    "is_table_path",
    "load_sweep",
    "override_table",
    "set_path",
    "table_cell",
]

#: Input tables a scenario may name; the first segment of a table-cell override.
TABLES = ("forecast", "capacity", "levers", "history", "committed")
#: Column that names a row, per table, for table-cell overrides.
ROW_KEYS = {"levers": "name", "committed": "lever"}

_SPEC_CFG = ConfigDict(extra="forbid")


class GridAxis(BaseModel):
    """One grid axis given as a mapping: the values and a short name for case names."""

    model_config = _SPEC_CFG
    values: list[Any] = Field(min_length=1, description="Values to try.")
    name: str | None = Field(default=None, description="Short name in case names (default: last path segment).")


class SweepCase(BaseModel):
    """A named case of a sweep."""

    model_config = _SPEC_CFG
    name: str = Field(description="Case name: the run directory's name.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Dot path -> value.")
    seed: int | None = Field(default=None, ge=0, description="Seed of this case.")
    paths: int | None = Field(default=None, ge=1, description="Monte Carlo paths of this case.")


class SweepSpec(BaseModel):
    """A sweep: a base scenario, overrides for all, a grid and/or named cases."""

    model_config = _SPEC_CFG
    base: str = Field(description="Base scenario file, relative to the sweep file.")
    name: str | None = Field(default=None, description="Sweep name.")
    description: str = Field(default="", description="Free text.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Overrides applied to every case.")
    grid: dict[str, Annotated[list[Any], Field(min_length=1)] | GridAxis] = Field(default_factory=dict,
                                                  description="Dot path -> values; every combination is a case.")
    grid_name: str | None = Field(default=None, description="Name template of grid cases, e.g. 'u{mode}_b{budget}'.")
    cases: list[SweepCase] = Field(default_factory=list, description="Named cases.")
    seed: int | None = Field(default=None, ge=0, description="Seed of every case (default: the scenario's).")
    paths: int | None = Field(default=None, ge=1, description="Paths of every case (default: the scenario's).")


@dataclass(frozen=True)
class CaseSpec:
    """A case before resolution: where it starts and what it changes."""

    name: str
    source: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    paths: int | None = None


def _label(value: Any, index: int) -> str:
    if isinstance(value, (bool, int, np.integer)):
        text = str(value)
    elif isinstance(value, (float, np.floating)):
        text = f"{value:g}"
    elif isinstance(value, (str, dt.date)):
        text = str(value)
    else:
        return f"v{index}"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or f"v{index}"


def is_sweep(data: Any) -> bool:
    """Whether a parsed YAML document is a sweep spec (a mapping with ``base``)."""
    return isinstance(data, dict) and "base" in data and "calendar" not in data


def load_sweep(path: str | Path, data: Any = None) -> list[CaseSpec]:
    """The cases of a sweep spec: grid combinations first (in axis order), then named cases."""
    path = Path(path)
    data = load_sweep_yaml(path) if data is None else data
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()]
        raise InputError(f"{path}: {len(problems)} problem(s) in the sweep spec", problems) from None
    base = Path(spec.base)
    base = (base if base.is_absolute() else path.parent / base).resolve()
    if not base.is_file():
        raise InputError(f"{path}: base: scenario file not found: {base}")
    out: list[CaseSpec] = []
    if spec.grid:
        axes = [(p, a.values, a.name) if isinstance(a, GridAxis) else (p, a, None) for p, a in spec.grid.items()]
        aliases = [alias or p.split(".")[-1] for p, _, alias in axes]
        for combo in itertools.product(*[list(enumerate(v)) for _, v, _ in axes]):
            labels = {al: _label(v, i) for al, (i, v) in zip(aliases, combo, strict=True)}
            if spec.grid_name:
                try:
                    name = spec.grid_name.format(**labels)
                except (KeyError, IndexError, ValueError) as exc:
                    raise InputError(f"{path}: grid_name {spec.grid_name!r} names {exc}; the axis names are "
                                     f"{aliases}") from None
            else:
                name = "_".join(f"{al}-{lab}" for al, lab in labels.items())
            over = {**spec.overrides, **{p: v for (p, _, _), (_, v) in zip(axes, combo, strict=True)}}
            out.append(CaseSpec(name, base, over, spec.seed, spec.paths))
    for c in spec.cases:
        out.append(CaseSpec(c.name, base, {**spec.overrides, **c.overrides},
                            spec.seed if c.seed is None else c.seed, spec.paths if c.paths is None else c.paths))
    if not out:
        raise InputError(f"{path}: the sweep has no cases; give a grid, a list of cases, or both")
    return out


def is_table_path(path: str) -> bool:
    """Whether an override path addresses a table cell (its first segment names a table)."""
    return path.split(".", 1)[0] in TABLES


def _list_index(node: list, parts: list[str], path: str) -> tuple[int, list[str]]:
    """Find the list item named by the leading parts (longest name first); or a digit index."""
    for k in range(len(parts), 0, -1):
        want = ".".join(parts[:k])
        hits = [i for i, item in enumerate(node) if isinstance(item, dict) and str(item.get("name")) == want]
        if hits:
            return hits[0], parts[k:]
    if parts[0].isdigit() and int(parts[0]) < len(node):
        return int(parts[0]), parts[1:]
    names = [str(item.get("name")) for item in node if isinstance(item, dict) and "name" in item]
    raise InputError(f"override {path!r}: no item named {parts[0]!r}; items are {names}")


def set_path(data: dict, path: str, value: Any) -> None:
    """Set ``path`` (dot separated; list items by ``name`` or index) in ``data``, in place.

    Missing mapping keys are created (the scenario schema then rejects unknown keys).
    """
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise InputError(f"override {path!r}: empty path segment; write paths like constraints.budget")
    if parts[0] == "base_dir":
        raise InputError(f"override {path!r}: base_dir is set by the loader and cannot be overridden")
    node: Any = data
    while parts:
        if isinstance(node, dict):
            key = parts.pop(0)
            if not parts:
                node[key] = copy.deepcopy(value)
                return
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        elif isinstance(node, list):
            i, parts = _list_index(node, parts, path)
            if not parts:
                node[i] = copy.deepcopy(value)
                return
            node = node[i]
        else:
            raise InputError(f"override {path!r}: cannot go into {parts[0]!r}: the value there is {node!r}, "
                             f"not a mapping or list")


def get_path(data: Any, path: str) -> Any:
    """The value at ``path`` (as :func:`set_path` addresses it), ``None`` if absent."""
    parts = path.split(".")
    node = data
    while parts:
        if isinstance(node, dict):
            node = node.get(parts.pop(0))
        elif isinstance(node, list):
            try:
                i, parts = _list_index(node, parts, path)
            except InputError:
                return None
            node = node[i]
        else:
            return None
    return node


def table_cell(table: str, path: str) -> tuple[str, str]:
    """The row name and column of a table-cell override path ``<table>.<row name>.<column>``."""
    rest = path.split(".")[1:]
    if len(rest) < 2:
        raise InputError(f"override {path!r}: a table cell is {table}.<row name>.<column>, e.g. "
                         f"levers.temp_pickers_east.lead_time")
    return ".".join(rest[:-1]), rest[-1]


def _is_text(col: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(col) or pd.api.types.is_object_dtype(col)


def override_table(df: pd.DataFrame, table: str, cells: Mapping[str, Any]) -> pd.DataFrame:
    """A copy of ``df`` with table-cell overrides ``{'<table>.<row>.<column>': value}`` applied.

    Rows are addressed by :data:`ROW_KEYS` (``levers`` by ``name``); the row must be unique.
    """
    key = ROW_KEYS.get(table)
    if key is None or key not in df.columns:
        raise InputError(f"override {next(iter(cells))!r}: cell overrides address rows by name; the {table} table "
                         f"has no name column (tables with one: {sorted(ROW_KEYS)})")
    out = df.copy()
    for path, value in cells.items():
        row, col = table_cell(table, path)
        hits = np.flatnonzero(out[key].astype(str).str.strip().to_numpy() == row)
        if len(hits) != 1:
            names = sorted(set(out[key].astype(str)))
            what = "no row" if not len(hits) else f"{len(hits)} rows"
            raise InputError(f"override {path!r}: {what} with {key}={row!r} in the {table} table; "
                             f"a cell override needs exactly one; rows are {names}")
        text = all(_is_text(out[c]) for c in out.columns)  # a CSV table read as text
        if col not in out.columns:
            out[col] = "" if text else None
        if text or _is_text(out[col]):
            out[col] = out[col].astype(object)
            out.iloc[hits[0], out.columns.get_loc(col)] = "" if value is None else str(value)
        else:
            out[col] = out[col].astype(object)
            out.iloc[hits[0], out.columns.get_loc(col)] = value
    return out


def apply_overrides(data: dict, overrides: Mapping[str, Any]) -> tuple[dict, dict[str, dict[str, Any]]]:
    """Apply scenario overrides to a deep copy of ``data``; return it and the table-cell
    overrides grouped by table (``{'levers': {'levers.x.lead_time': 2}}``)."""
    out = copy.deepcopy(data)
    cells: dict[str, dict[str, Any]] = {}
    for path, value in overrides.items():
        if is_table_path(path):
            table_cell(path.split(".")[0], path)
            cells.setdefault(path.split(".")[0], {})[path] = value
        else:
            set_path(out, path, value)
    return out, cells
