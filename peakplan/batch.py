"""Many runs at once: scenario files, globs and sweeps; a process pool or Dask; resume.

Stages, in order:

1. **Plan** (:func:`plan_batch`): every input becomes one or more :class:`Case` objects. A
   scenario file is one case (named after the file); a *sweep spec* (a YAML file with a
   ``base:`` key, see ``docs/batch.md``) is a base scenario plus a grid and/or a list of
   named cases of overrides. Overrides are dot paths into the scenario
   (``constraints.budget``; list items by their ``name``:
   ``events.black_friday_cyber_week.uplift.mode``) or table cells
   (``levers.temp_pickers_east.lead_time`` rewrites a copy of the lever table). Each case
   is validated and keyed by :func:`case_key`: the SHA-256 of the resolved scenario, the
   bytes of every input table, the seed, the number of paths and the peakplan version.
2. **Run** (:func:`run_batch`): cases whose run directory is complete with the same key
   are skipped; the others are materialised under ``<out>/.inputs/<key>/`` (the scenario
   and its tables, so workers need no access to the original data) and run by
   :func:`run_case` in a local process pool (default), on a Dask cluster, or in process.
   A run directory is staged under ``<out>/.staging/`` and renamed to ``<out>/<case>``
   only when complete, ``case.json`` included, so it is complete or absent at any moment.
3. **Record**: each finished run is appended to the ledger ``<out>/ledger.sqlite`` (by
   this process only); a failed case (bad input, infeasible, crashed worker) is recorded
   with its error and the batch goes on.
4. **Summarise**: ``summary.parquet`` and ``summary.csv``, one row per case and plan,
   the override values as columns; ``batch.json`` holds the batch's timings.

:func:`simulate_distributed` splits one large Monte Carlo run over workers in blocks of
:data:`peakplan.rng.BLOCK_PATHS` paths, with the same numbers as a single process.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import glob
import hashlib
import io
import itertools
import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from peakplan import report
from peakplan.config import Scenario, parse_scenario
from peakplan.errors import InfeasibleError, InputError, PeakplanError
from peakplan.ledger import Ledger, LedgerEntry, canonical_json

__all__ = [
    "EXIT_FAILED",
    "BatchResult",
    "Case",
    "CaseOutcome",
    "CaseTask",
    "add_cli",
    "apply_overrides",
    "case_key",
    "load_sweep",
    "plan_batch",
    "run_batch",
    "run_case",
    "simulate_distributed",
]

EXIT_OK, EXIT_INPUT, EXIT_FAILED = 0, 2, 4
#: Input tables a scenario may name; the first segment of a table-cell override.
TABLES = ("forecast", "capacity", "levers", "history", "committed")
#: Column that names a row, per table, for table-cell overrides.
ROW_KEYS = {"levers": "name", "committed": "lever"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_RESERVED = {"ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "summary.parquet", "summary.csv",
             "batch.json"}
_SCENARIO_ADAPTER = TypeAdapter(Scenario)
#: case.json statuses of a complete run directory (an infeasible run is written with its diagnosis).
_COMPLETE = ("ok", "infeasible")


def peakplan_version() -> str:
    """The installed peakplan version (``unknown`` when running from an uninstalled tree)."""
    try:
        return version("peakplan")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def usable_cores() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


# =====================================================================================
# Sweep specs and overrides
# =====================================================================================
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


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_yaml_cache: dict[tuple[str, int, int], Any] = {}


def _read_yaml(path: Path) -> Any:
    """Safe-load a YAML file (a fresh copy each call; parsed once per file version)."""
    try:
        st = path.stat()
        k = (str(path), st.st_mtime_ns, st.st_size)
        if k not in _yaml_cache:
            _yaml_cache[k] = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
        return copy.deepcopy(_yaml_cache[k])
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read YAML: {str(exc).splitlines()[0]}") from None


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
    data = _read_yaml(path) if data is None else data
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


def _is_table_path(path: str) -> bool:
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


def _read_raw_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.read_parquet(path)


def _table_bytes(df: pd.DataFrame, suffix: str) -> bytes:
    if suffix == ".csv":
        return df.to_csv(index=False).encode()
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


def _cell(table: str, path: str) -> tuple[str, str]:
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
        row, col = _cell(table, path)
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
        if _is_table_path(path):
            _cell(path.split(".")[0], path)
            cells.setdefault(path.split(".")[0], {})[path] = value
        else:
            set_path(out, path, value)
    return out, cells


# =====================================================================================
# Cases: resolution and keys
# =====================================================================================
def case_key(scenario: Mapping[str, Any], table_hashes: Mapping[str, str], seed: int, paths: int,
             peakplan: str) -> str:
    """SHA-256 of a case: resolved scenario (without paths), table bytes, seed, paths, version.

    ``scenario`` is the validated scenario as JSON data; its ``tables`` and ``base_dir``
    (locations, not content) are replaced by ``table_hashes`` (SHA-256 of each table's bytes).
    """
    body = {k: v for k, v in scenario.items() if k not in ("tables", "base_dir")}
    payload = {"scenario": body, "tables": dict(table_hashes), "seed": int(seed), "paths": int(paths),
               "peakplan": peakplan}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


@dataclass(frozen=True)
class Case:
    """A resolved case: what will run, under which key."""

    name: str
    """Case name: the run directory's name under ``--out``."""
    source: Path
    """Scenario file the case starts from."""
    overrides: dict[str, Any]
    """Overrides applied, in order (empty for a plain scenario file)."""
    key: str
    """:func:`case_key` (for a case that failed to resolve: a hash of its inputs as given)."""
    seed: int | None
    """Root seed (None when resolution failed before it was known)."""
    paths: int | None
    """Monte Carlo paths."""
    scenario: str | None = None
    """Scenario name."""
    error: str | None = None
    """Why the case cannot run (bad input found while resolving), else None."""
    files: dict[str, Path | bytes] = field(default_factory=dict, repr=False)
    """Materialised inputs: file name -> source path to copy or bytes to write."""
    hashes: dict[str, str] = field(default_factory=dict, repr=False)
    """SHA-256 of each materialised input, by file name (``scenario.yaml`` included)."""
    data: dict | None = field(default=None, repr=False)
    """The resolved scenario mapping (overrides applied)."""


_sha_cache: dict[tuple[str, int, int], str] = {}


def _sha_file(path: Path) -> str:
    st = path.stat()
    k = (str(path), st.st_mtime_ns, st.st_size)
    if k not in _sha_cache:
        _sha_cache[k] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _sha_cache[k]


def _fallback_key(spec: CaseSpec, seed: int | None, paths: int | None, ver: str) -> str:
    try:
        src = _sha_file(spec.source)
    except OSError:
        src = None
    body = {"source": src, "overrides": spec.overrides, "seed": seed, "paths": paths, "peakplan": ver}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def resolve_case(spec: CaseSpec, *, seed: int | None = None, paths: int | None = None) -> Case:
    """Validate a case and key it; bad input gives a :class:`Case` with ``error`` set.

    ``seed``/``paths`` (the command line's) win over the case's, which win over the scenario's.
    """
    ver = peakplan_version()
    seed = spec.seed if seed is None else seed
    paths = spec.paths if paths is None else paths
    try:
        raw = _read_yaml(spec.source)
        if not isinstance(raw, dict):
            from peakplan.loaders import load_scenario

            load_scenario(spec.source)  # raises the loader's message
            raise InputError(f"{spec.source}: the scenario must be a mapping")
        data, cells = apply_overrides(raw, spec.overrides)
        where = f"{spec.source}" + (f" (case {spec.name} with its overrides)" if spec.overrides else "")
        scn = parse_scenario({**data, "base_dir": str(spec.source.parent)}, source=where)
        files: dict[str, Path | bytes] = {}
        hashes: dict[str, str] = {}
        local: dict[str, str] = {}
        for t in TABLES:
            p = scn.path(t)
            if p is None:
                continue
            if not p.is_file():
                raise InputError(f"{where}: tables.{t}: file not found: {p}")
            fname = t + p.suffix.lower()
            local[t] = fname
            if t in cells:
                try:
                    df = _read_raw_table(p)
                except Exception as exc:
                    raise InputError(f"{p}: cannot read the table: {str(exc).splitlines()[0]}") from None
                blob = _table_bytes(override_table(df, t, cells[t]), p.suffix.lower())
                files[fname], hashes[fname] = blob, hashlib.sha256(blob).hexdigest()
            else:
                files[fname], hashes[fname] = p, _sha_file(p)
        missing = sorted(set(cells) - set(local))
        if missing:
            raise InputError(f"{where}: overrides name table(s) {missing} the scenario does not use; "
                             f"its tables are {sorted(local)}")
        seed = scn.simulation.seed if seed is None else int(seed)
        paths = scn.simulation.paths if paths is None else int(paths)
        doc = _SCENARIO_ADAPTER.dump_python(scn, mode="json")
        key = case_key(doc, {t: hashes[f] for t, f in local.items()}, seed, paths, ver)
        mat = {**data, "tables": local}
        blob = yaml.dump(mat, Dumper=_Dumper, sort_keys=False, allow_unicode=True).encode()
        files["scenario.yaml"], hashes["scenario.yaml"] = blob, hashlib.sha256(blob).hexdigest()
        return Case(spec.name, spec.source, dict(spec.overrides), key, seed, paths, scn.name, None, files, hashes,
                    data)
    except InputError as exc:
        return Case(spec.name, spec.source, dict(spec.overrides), _fallback_key(spec, seed, paths, ver),
                    seed, paths, None, str(exc))


def _expand(inputs: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        text = str(item)
        if glob.has_magic(text):
            hits = sorted(glob.glob(text, recursive=True))
            if not hits:
                raise InputError(f"{text}: the pattern matches no file")
            files += [Path(h) for h in hits if Path(h).is_file()]
        else:
            p = Path(text)
            if not p.is_file():
                raise InputError(f"{p}: " + ("is a folder; give scenario files or a glob such as "
                                              f"'{p}/*.yaml'" if p.is_dir() else "file not found"))
            files.append(p)
    seen: set[Path] = set()
    out = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def plan_batch(inputs: Sequence[str | Path], *, seed: int | None = None, paths: int | None = None) -> list[Case]:
    """Resolve scenario files, globs and sweep specs into cases (in input order).

    Raises :class:`InputError` for a missing file, a pattern that matches nothing, a bad
    sweep spec, or clashing case names; a case whose scenario is bad is returned with
    ``error`` set so it fails alone.
    """
    specs: list[CaseSpec] = []
    for f in _expand(inputs):
        try:
            data = _read_yaml(f)
        except InputError:
            data = None  # the case fails alone with the loader's message
        if is_sweep(data):
            specs += load_sweep(f, data)
        else:
            specs.append(CaseSpec(f.stem, f))
    problems = []
    names = [s.name for s in specs]
    counts = Counter(names)
    for n in sorted(n for n, k in counts.items() if k > 1):
        problems.append(f"case name {n!r} is used {counts[n]} times "
                        f"({', '.join(str(s.source) for s in specs if s.name == n)}); case names must be unique")
    for n in names:
        if not _NAME.fullmatch(n) or n in _RESERVED:
            problems.append(f"case name {n!r}: use 1-120 letters, digits, '.', '_' or '-', starting with a letter "
                            f"or digit, and not one of {sorted(_RESERVED)}")
    if problems:
        raise InputError(f"{len(problems)} problem(s) with the batch's case names", problems)
    cases = [resolve_case(s, seed=seed, paths=paths) for s in specs]
    return cases


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
        elif _is_table_path(col):
            out[col] = _table_value(case, col)
        else:
            out[col] = get_path(case.data, col)
    return out


def _table_value(case: Case, col: str) -> Any:
    table = col.split(".")[0]
    src = next((v for k, v in case.files.items() if k.startswith(table + ".")), None)
    if src is None:
        return None
    try:
        df = _read_raw_table(src) if isinstance(src, Path) else (
            pd.read_csv(io.BytesIO(src), dtype=str, keep_default_na=False) if src[:4] != b"PAR1"
            else pd.read_parquet(io.BytesIO(src)))
        row, c = _cell(table, col)
        hits = df.loc[df[ROW_KEYS[table]].astype(str) == row, c]
        return hits.iloc[0] if len(hits) == 1 else None
    except (KeyError, InputError, OSError):
        return None


# =====================================================================================
# The worker side
# =====================================================================================
@dataclass(frozen=True)
class CaseTask:
    """What a worker needs to run one case (plain, picklable)."""

    name: str
    key: str
    out: str
    """The batch output folder (absolute)."""
    inputs: str
    """Folder with the materialised ``scenario.yaml`` and tables."""
    seed: int
    paths: int
    chunk_size: int | None = None
    threads: int | None = None
    """Numba threads per case (``PEAKPLAN_THREADS``); None keeps the worker's default."""
    meta: dict = field(default_factory=dict)
    """Written into ``case.json`` (source, overrides, hashes, version)."""


@dataclass(frozen=True)
class CaseOutcome:
    """What a worker reports back."""

    name: str
    key: str
    status: str
    """``ok``, ``failed`` or ``infeasible``."""
    error: str | None = None
    elapsed_s: float = 0.0
    timings: dict = field(default_factory=dict)


def _replace_dir(src: Path, final: Path, trash_root: Path) -> None:
    """Rename ``src`` to ``final``, replacing an earlier batch run dir there."""
    if final.exists():
        if not (final / "case.json").is_file():
            raise InputError(f"{final}: exists and is not a batch run directory (no case.json); "
                             f"remove it or choose another --out")
        trash_root.mkdir(parents=True, exist_ok=True)
        trash = trash_root / f"{final.name}.{uuid.uuid4().hex[:8]}.old"
        os.replace(final, trash)
        os.replace(src, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, final)


def run_case(task: CaseTask) -> CaseOutcome:
    """Run one case and install its run directory atomically; never raises for a case error."""
    t0 = time.perf_counter()
    if task.threads:
        os.environ["PEAKPLAN_THREADS"] = str(task.threads)
    out = Path(task.out)
    stage = out / ".staging" / f"{task.name}.{uuid.uuid4().hex[:8]}"
    status, error, timings = "ok", None, {}
    try:
        from peakplan import pipeline

        stage.mkdir(parents=True)
        run_dir = stage / "run"
        res = pipeline.run(Path(task.inputs) / "scenario.yaml", run_dir, paths=task.paths, seed=task.seed,
                           chunk_size=task.chunk_size)
        timings = {k: float(v) for k, v in res.manifest.get("timings", {}).items()}
        if res.manifest.get("status") == "infeasible":  # written with its diagnosis, but no plan
            status = "infeasible"
            error = "; ".join(e.get("message", "") for e in res.extras.get("escalations", [])) or "infeasible"
        shutil.copytree(task.inputs, run_dir / "inputs")
        timings["case_s"] = time.perf_counter() - t0
        report.write_json(run_dir / "case.json", {
            **task.meta, "name": task.name, "case_key": task.key, "status": status, "error": error,
            "seed": task.seed, "paths": task.paths, "timings": timings,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
        _replace_dir(run_dir, out / task.name, out / ".staging")
    except InfeasibleError as exc:
        status, error = "infeasible", f"{type(exc).__name__}: {exc}"
    except PeakplanError as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        status, error = "failed", f"{type(exc).__name__}: {exc} (at {Path(tb.filename).name}:{tb.lineno})"
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return CaseOutcome(task.name, task.key, status, error, time.perf_counter() - t0, timings)


# =====================================================================================
# Progress
# =====================================================================================
class BatchProgress:
    """Done, running, failed and ETA: a rich live bar on a terminal, plain lines in logs."""

    def __init__(self, total: int, *, skipped: int = 0, label: str = "batch", stream=None,
                 live: bool | None = None, enabled: bool = True) -> None:
        self.total, self.skipped, self.enabled = total, skipped, enabled
        self.stream = sys.stderr if stream is None else stream
        self.live = bool(self.stream.isatty()) if live is None else live
        self.done = self.failed = self.running = 0
        self.t0 = time.perf_counter()
        self._bar = None
        if not enabled:
            return
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[running]} running"),
                                 TextColumn("[red]{task.fields[failed]} failed"),
                                 TextColumn("ETA {task.fields[eta]}"), TimeElapsedColumn(),
                                 console=Console(file=self.stream), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, completed=skipped, running=0, failed=0, eta="?")
        else:
            self._line(f"{label}: {total} case(s), {skipped} already complete (skipped), "
                       f"{total - skipped} to run")

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def eta(self) -> str:
        left = self.total - self.skipped - self.done
        if self.done == 0:
            return "?"
        secs = left * (time.perf_counter() - self.t0) / self.done
        return str(dt.timedelta(seconds=round(secs)))

    def started(self, name: str) -> None:
        self.running += 1
        self._refresh()

    def finished(self, name: str, status: str, elapsed: float, error: str | None = None) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.failed += status != "ok"
        if not self.enabled:
            return
        first = (error or "").splitlines()[0] if error else ""
        if self._bar is not None:
            if status != "ok":
                self._bar.console.print(f"[red]{status}[/red] {name}: {first}")
            self._refresh()
            return
        n = self.skipped + self.done
        self._line(f"[{n:>{len(str(self.total))}}/{self.total}] {status:<10} {name} ({elapsed:.1f} s) | "
                   f"running {self.running}, failed {self.failed}, ETA {self.eta()}"
                   + (f"\n    {first}" if first else ""))

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.skipped + self.done, running=self.running,
                             failed=self.failed, eta=self.eta())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# =====================================================================================
# Executors
# =====================================================================================
def _mp_context():
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["peakplan.batch", "peakplan.pipeline"])
        return ctx
    return mp.get_context("spawn")  # pragma: no cover - non-POSIX


class _SlotPool:
    """``n`` single-process executors: a crashed worker breaks only its own slot's case."""

    def __init__(self, n: int) -> None:
        self.ctx = _mp_context()
        self.slots = [ProcessPoolExecutor(1, mp_context=self.ctx) for _ in range(n)]

    def renew(self, i: int) -> None:
        self.slots[i].shutdown(wait=False, cancel_futures=True)
        self.slots[i] = ProcessPoolExecutor(1, mp_context=self.ctx)

    def shutdown(self, wait_: bool = True) -> None:
        for ex in self.slots:
            ex.shutdown(wait=wait_, cancel_futures=not wait_)


def _crash_error(exc: BaseException) -> str:
    return (f"worker process died while running this case ({type(exc).__name__}: {exc}); "
            f"the machine may be out of memory, or the process was killed")


def _run_local(tasks: list[CaseTask], workers: int, runner: Callable, on_start, on_done) -> None:
    pending = deque(tasks)
    pool = _SlotPool(min(workers, len(tasks)))
    free = list(range(len(pool.slots)))[::-1]
    inflight: dict = {}
    ok = False
    try:
        while pending or inflight:
            while pending and free:
                slot, task = free.pop(), pending.popleft()
                inflight[pool.slots[slot].submit(runner, task)] = (slot, task, time.perf_counter())
                on_start(task)
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            outcomes = []
            for fut in done:
                slot, task, t0 = inflight.pop(fut)
                try:
                    outcomes.append(fut.result())
                except BrokenProcessPool as exc:
                    outcomes.append(CaseOutcome(task.name, task.key, "failed", _crash_error(exc),
                                                time.perf_counter() - t0))
                    pool.renew(slot)
                except Exception as exc:
                    outcomes.append(CaseOutcome(task.name, task.key, "failed", f"{type(exc).__name__}: {exc}",
                                                time.perf_counter() - t0))
                free.append(slot)
            while pending and free:  # refill first, so the progress line counts what runs now
                slot, task = free.pop(), pending.popleft()
                inflight[pool.slots[slot].submit(runner, task)] = (slot, task, time.perf_counter())
                on_start(task)
            for outcome in outcomes:
                on_done(outcome)
        ok = True
    finally:
        pool.shutdown(wait_=ok)


def _run_dask(tasks: list[CaseTask], client, runner: Callable, on_start, on_done) -> None:
    from distributed import as_completed

    futs = {}
    for task in tasks:
        fut = client.submit(runner, task, key=f"peakplan-case-{task.name}-{uuid.uuid4().hex[:8]}", pure=False)
        futs[fut] = (task, time.perf_counter())
    n_workers = max(1, sum(client.nthreads().values()))  # tasks that can run at once
    for task in tasks[:n_workers]:
        on_start(task)
    started = min(n_workers, len(tasks))
    for fut in as_completed(list(futs)):
        task, t0 = futs[fut]
        try:
            outcome = fut.result()
        except Exception as exc:  # KilledWorker, lost connection, ...
            outcome = CaseOutcome(task.name, task.key, "failed", _crash_error(exc) if "Killed" in type(exc).__name__
                                  else f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
        on_done(outcome)
        if started < len(tasks):
            on_start(tasks[started])
            started += 1


def _run_inline(tasks: list[CaseTask], runner: Callable, on_start, on_done) -> None:
    for task in tasks:
        on_start(task)
        on_done(runner(task))


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, local_workers: int | None = None) -> Iterator:
    """A Dask client on ``scheduler`` (``tcp://host:port``) or on a new LocalCluster; closed after."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("Dask is not installed; install peakplan[dask] (dask[distributed]) or use --workers") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise InputError(f"--dask-scheduler {scheduler}: cannot connect: {exc}") from None
        with client:
            yield client
        return
    n = int(local_workers or usable_cores())
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


# =====================================================================================
# The batch
# =====================================================================================
@dataclass
class BatchResult:
    """What :func:`run_batch` did."""

    out: Path
    batch_id: str
    cases: list[Case]
    outcomes: dict[str, CaseOutcome]
    """Outcome per case name (skipped cases: status ``ok``, elapsed 0)."""
    skipped: list[str]
    """Cases found complete with the same key and not run again."""
    summary: pd.DataFrame
    wall_s: float

    @property
    def failed(self) -> list[str]:
        """Names of the cases that did not finish ok."""
        return [n for n, o in self.outcomes.items() if o.status != "ok"]

    @property
    def exit_code(self) -> int:
        """0 if every case is ok, else :data:`EXIT_FAILED` (4)."""
        return EXIT_FAILED if self.failed else EXIT_OK


def _lock(out: Path):
    """Hold ``<out>/.batch.lock`` so two batches never write one folder at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def held():
        fh = open(out / ".batch.lock", "a+")  # noqa: SIM115 - held for the whole batch
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(f"{out}: another batch is writing to this folder; wait for it to finish or "
                                 f"choose another --out") from None
            yield
        finally:
            fh.close()

    return held()


def case_status(case: Case, out: Path) -> str:
    """``done`` (complete, same key), ``changed`` (complete, other key), ``new`` or ``error``."""
    if case.error:
        return "error"
    cj = out / case.name / "case.json"
    if not cj.is_file():
        return "new"
    try:
        info = json.loads(cj.read_text())
    except (OSError, ValueError):
        return "changed"
    return "done" if info.get("case_key") == case.key and info.get("status") in _COMPLETE else "changed"


def _materialise(case: Case, out: Path) -> Path:
    """Write the case's scenario and tables to ``<out>/.inputs/<key16>/`` (content addressed)."""
    final = out / ".inputs" / case.key[:16]
    if (final / "scenario.yaml").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = out / ".inputs" / f".{case.key[:16]}.{uuid.uuid4().hex[:8]}.partial"
    tmp.mkdir()
    for fname, src in case.files.items():
        if isinstance(src, Path):
            shutil.copyfile(src, tmp / fname)
        else:
            (tmp / fname).write_bytes(src)
    try:
        os.rename(tmp, final)
    except OSError:  # another process won the race; the content is the same
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _run_rows(run_dir: Path) -> tuple[list[dict], str | None]:
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


def _metrics(rows: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for r in rows:
        out[r["plan"]] = {k: v for k, v in r.items() if k != "plan" and isinstance(v, (int, float, np.number))
                          and not isinstance(v, bool)}
    return out


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
        if (out / c.name / "case.json").is_file() and o.status in _COMPLETE:
            rows, rec = _run_rows(out / c.name)
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


def _ledger_entry(case: Case, outcome: CaseOutcome, out: Path, batch_id: str, run_id: str) -> LedgerEntry:
    metrics: dict = {}
    recommended = None
    if outcome.status in _COMPLETE and (out / case.name / "case.json").is_file():
        rows, recommended = _run_rows(out / case.name)
        metrics = _metrics(rows)
        if recommended not in metrics:
            recommended = None
    return LedgerEntry(
        scenario=case.scenario or case.name, status=outcome.status, run_id=run_id,
        scenario_hash=case.hashes.get("scenario.yaml"),
        input_hashes={k: v for k, v in case.hashes.items() if k != "scenario.yaml"},
        seed=case.seed, version=peakplan_version(), metrics=metrics, recommended=recommended,
        timings={k: v for k, v in {"case_s": outcome.elapsed_s, **outcome.timings}.items() if v is not None},
        error=(outcome.error or "unknown error") if outcome.status != "ok" else None,
        batch_id=batch_id, case_key=case.key)


def _append(ledger: Ledger, case: Case, outcome: CaseOutcome, out: Path, batch_id: str) -> None:
    run_id = f"{case.name}-{case.key[:12]}"
    if outcome.status == "failed" or ledger.find(run_id=run_id):
        run_id = f"{run_id}-{uuid.uuid4().hex[:8]}"
    ledger.append(_ledger_entry(case, outcome, out, batch_id, run_id))


def run_batch(inputs: Sequence[str | Path], out: str | Path, *, paths: int | None = None, seed: int | None = None,
              chunk_size: int | None = None, workers: int | None = None, dask_scheduler: str | None = None,
              dask_local: int | None = None, client=None, force: bool = False, progress: bool = True,
              live: bool | None = None, runner: Callable[[CaseTask], CaseOutcome] = run_case) -> BatchResult:
    """Run every case of ``inputs`` into ``out``; skip cases already complete; write the summary.

    Executors: ``client`` (a Dask client), ``dask_scheduler`` (address of a running Dask
    scheduler), ``dask_local`` (a LocalCluster with that many workers), else a local process
    pool of ``workers`` processes (default: every usable core; ``0`` runs in this process).
    ``force`` re-runs complete cases. ``runner`` runs one case in a worker (a module-level
    function; tests inject failures with it). Bad input in the batch itself raises
    :class:`InputError`; a failing case is recorded and the rest goes on.
    """
    t_start = time.perf_counter()
    out = Path(out).resolve()
    if workers is not None and workers < 0:
        raise InputError(f"--workers must be a positive integer, got {workers}")
    cases = plan_batch(inputs, seed=seed, paths=paths)
    out.mkdir(parents=True, exist_ok=True)
    batch_id = f"batch-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    outcomes: dict[str, CaseOutcome] = {}
    skipped: list[str] = []
    by_name = {c.name: c for c in cases}
    n_work = usable_cores() if workers is None else workers
    parallel = dask_local or n_work or 1
    with _lock(out), Ledger(out / "ledger.sqlite") as ledger:
        shutil.rmtree(out / ".staging", ignore_errors=True)  # what a killed batch left half-done
        for partial in (out / ".inputs").glob(".*.partial"):
            shutil.rmtree(partial, ignore_errors=True)
        todo: list[Case] = []
        for c in cases:
            st = case_status(c, out)
            if st == "done" and not force:
                skipped.append(c.name)
                info = json.loads((out / c.name / "case.json").read_text())
                timings = info.get("timings", {})
                outcomes[c.name] = CaseOutcome(c.name, c.key, info["status"], info.get("error"),
                                               timings.get("case_s", 0.0), timings)
                if not ledger.find(case_key=c.key, status=info["status"]):  # finished, killed before its row
                    _append(ledger, c, outcomes[c.name], out, batch_id)
            else:
                todo.append(c)
        prog = BatchProgress(len(cases), skipped=len(skipped), live=live, enabled=progress)

        def on_start(task: CaseTask) -> None:
            prog.started(task.name)

        def on_done(o: CaseOutcome) -> None:
            outcomes[o.name] = o
            _append(ledger, by_name[o.name], o, out, batch_id)
            prog.finished(o.name, o.status, o.elapsed_s, o.error)

        threads = max(1, usable_cores() // max(1, parallel)) if client is None and not dask_scheduler else None
        tasks = []
        try:
            for c in todo:
                if c.error:
                    on_start(CaseTask(c.name, c.key, str(out), "", 0, 0))
                    on_done(CaseOutcome(c.name, c.key, "failed", c.error))
                    continue
                meta = {"source": str(c.source), "overrides": c.overrides, "scenario": c.scenario,
                        "input_hashes": c.hashes, "peakplan": peakplan_version()}
                tasks.append(CaseTask(c.name, c.key, str(out), str(_materialise(c, out)), c.seed, c.paths,
                                      chunk_size, threads, json.loads(json.dumps(meta, default=str))))
            if tasks:
                if client is not None:
                    _run_dask(tasks, client, runner, on_start, on_done)
                elif dask_scheduler or dask_local:
                    with dask_client(dask_scheduler, dask_local) as cl:
                        _run_dask(tasks, cl, runner, on_start, on_done)
                elif n_work == 0:
                    _run_inline(tasks, runner, on_start, on_done)
                else:
                    _run_local(tasks, n_work, runner, on_start, on_done)
        finally:
            prog.close()
        with contextlib.suppress(OSError):
            (out / ".staging").rmdir()  # only when empty
        summary = build_summary(cases, outcomes, out)
        report.write_parquet(out / "summary.parquet", summary)
        report.write_csv(out / "summary.csv", summary)
        wall = time.perf_counter() - t_start
        executor = ("dask:" + str(dask_scheduler) if dask_scheduler else f"dask-local:{dask_local}" if dask_local
                    else "dask:client" if client is not None else f"processes:{n_work}")
        report.write_json(out / "batch.json", {
            "batch_id": batch_id, "executor": executor, "wall_s": wall, "n_cases": len(cases),
            "n_skipped": len(skipped), "n_failed": sum(o.status != "ok" for o in outcomes.values()),
            "peakplan": peakplan_version(),
            "cases": [{"name": c.name, "case_key": c.key, "status": outcomes[c.name].status,
                       "skipped": c.name in skipped, "elapsed_s": outcomes[c.name].elapsed_s} for c in cases]})
    return BatchResult(out, batch_id, cases, outcomes, skipped, summary, wall)


# =====================================================================================
# Splitting one large run over workers
# =====================================================================================
def simulate_distributed(pack, plan, n_paths: int, seed, client_or_executor, blocks_per_task: int = 8):
    """Simulate ``n_paths`` paths with tasks of ``blocks_per_task`` blocks on ``client_or_executor``.

    ``client_or_executor`` is a Dask ``Client`` or a ``concurrent.futures`` executor. Every
    block of :data:`~peakplan.rng.BLOCK_PATHS` paths draws from its own spawned stream, so
    the result equals ``mc.simulate(pack, plan, n_paths, seed, engine="numpy")`` exactly,
    for every ``blocks_per_task`` and worker count. ``plan=None`` is the do-nothing baseline.
    """
    from peakplan.rng import BLOCK_PATHS, root_entropy, seed_sequence
    from peakplan.simulate import mc

    n = int(n_paths)
    if n <= 0:
        raise ValueError(f"n_paths must be positive, got {n}")
    if int(blocks_per_task) < 1:
        raise ValueError(f"blocks_per_task must be a positive integer, got {blocks_per_task}")
    ss = seed_sequence(pack.seed if seed is None else seed)
    plan = mc.plan_inputs(pack) if plan is None else plan
    nblocks = -(-n // BLOCK_PATHS)
    spans = [(b0, min(nblocks, b0 + int(blocks_per_task))) for b0 in range(0, nblocks, int(blocks_per_task))]
    ex = client_or_executor
    if hasattr(ex, "scatter"):  # Dask: send the pack and plan once to every worker
        pack_ref = ex.scatter(pack, broadcast=True, hash=False)
        plan_ref = ex.scatter(plan, broadcast=True, hash=False)
        futs = [ex.submit(mc.simulate_blocks, pack_ref, plan_ref, ss, b0, b1, n, pure=False) for b0, b1 in spans]
    else:
        futs = [ex.submit(mc.simulate_blocks, pack, plan, ss, b0, b1, n) for b0, b1 in spans]
    metrics = np.concatenate([f.result() for f in futs])
    return mc.SimResult(metrics=metrics, seed=root_entropy(ss), n_paths=n,
                        chunk_size=int(blocks_per_task) * BLOCK_PATHS)


# =====================================================================================
# Command line
# =====================================================================================
def _left(width: int) -> Callable[[Any], str]:
    return lambda v: f"{'' if v is None or v is pd.NA else v!s:<{width}}"


def _print_rows(df: pd.DataFrame, title: str) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for c in df.columns:
            table.add_column(str(c))
        for _, row in df.iterrows():
            table.add_row(*[f"{v:,.4g}" if isinstance(v, float) else ("" if v is None or v is pd.NA else str(v))
                            for v in row])
        Console(width=200).print(table)
    else:
        print(title)
        text = {c: df[c].astype(str).str.len().max() if len(df) else 0 for c in df.columns
                if not pd.api.types.is_numeric_dtype(df[c])}
        fmt = {c: _left(max(w, len(str(c)))) for c, w in text.items()}
        print(df.to_string(index=False, formatters=fmt, justify="left"))


def cmd_batch(args) -> int:
    """``peakplan batch``: exit 0 if every case is ok, 4 if any failed, 2 for bad input."""
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be a positive integer, got {args.workers}")
    if args.dask_local is not None and args.dask_local < 1:
        raise InputError(f"--dask-local must be a positive integer, got {args.dask_local}")
    if args.dry_run:
        cases = plan_batch(args.inputs, seed=args.seed, paths=args.paths)
        rows = []
        for c in cases:
            rows.append({"case": c.name, "key": c.key[:16],
                         "status": case_status(c, args.out.resolve()) if args.out else ("error" if c.error else "new"),
                         "seed": c.seed, "paths": c.paths,
                         "overrides": json.dumps(c.overrides, default=str) if c.overrides else "",
                         "error": (c.error or "").splitlines()[0] if c.error else ""})
        df = pd.DataFrame(rows)
        if not df["error"].astype(bool).any():
            df = df.drop(columns="error")
        _print_rows(df, f"{len(cases)} case(s) (dry run: nothing is run or written)")
        return EXIT_FAILED if any(c.error for c in cases) else EXIT_OK
    if args.out is None:
        raise InputError("peakplan batch needs --out DIR (or --dry-run)")
    res = run_batch(args.inputs, args.out, paths=args.paths, seed=args.seed, chunk_size=args.chunk_size,
                    workers=args.workers, dask_scheduler=args.dask_scheduler, dask_local=args.dask_local,
                    force=args.force, progress=not args.quiet)
    cols = [c for c in ("case", "plan", "status", "cost_mean", "fill_mean", "p_breach", "lost_mean")
            if c in res.summary.columns]
    if not args.quiet:
        _print_rows(res.summary[cols], f"batch {res.batch_id}: {len(res.cases)} case(s), {len(res.skipped)} skipped, "
                                        f"{len(res.failed)} failed, {res.wall_s:.1f} s")
    for name in res.failed:
        err = res.outcomes[name].error or ""
        print(f"FAILED {name}: {err.splitlines()[0] if err else res.outcomes[name].status}", file=sys.stderr)
    print(f"summary: {res.out / 'summary.parquet'} (+ .csv); ledger: {res.out / 'ledger.sqlite'}")
    return res.exit_code


def _ledger_path(p: Path) -> Path:
    path = p / "ledger.sqlite" if p.is_dir() else p
    if not path.is_file():
        raise InputError(f"{path}: no ledger here; give a ledger.sqlite file or a batch --out folder")
    return path


def cmd_ledger_list(args) -> int:
    """``peakplan ledger list``."""
    with Ledger(_ledger_path(args.ledger)) as led:
        df = led.list_runs(status=args.status, scenario=args.scenario, batch_id=args.batch_id,
                           case_key=args.case_key)
    if args.last:
        df = df.tail(args.last)
    if args.json:
        print(df.to_json(orient="records", indent=1, date_format="iso"))
        return EXIT_OK
    view = df[["seq", "run_id", "created_at", "scenario", "status", "recommended", "case_key", "error"]].copy()
    view["case_key"] = view["case_key"].map(lambda k: k[:12] if isinstance(k, str) else k)
    view["error"] = view["error"].map(lambda e: e.splitlines()[0][:80] if isinstance(e, str) else "")
    _print_rows(view, f"{len(df)} run(s)")
    return EXIT_OK


def cmd_ledger_show(args) -> int:
    """``peakplan ledger show RUN_ID``."""
    with Ledger(_ledger_path(args.ledger)) as led:
        print(json.dumps(led.show(args.run_id), indent=2, default=str))
    return EXIT_OK


def cmd_ledger_verify(args) -> int:
    """``peakplan ledger verify``: exit 0 if the hash chain checks out, 1 if not."""
    with Ledger(_ledger_path(args.ledger)) as led:
        res = led.verify(expected_head=args.expected_head)
    print(str(res))
    return EXIT_OK if res.ok else 1


def add_cli(subparsers) -> None:
    """Register ``batch`` and ``ledger list|show|verify`` on an argparse subparsers object."""
    s = subparsers.add_parser(
        "batch", help="run many scenarios or a sweep (process pool or Dask), resumable",
        description="Run scenario files, globs (quote them) or sweep specs; one run directory per case under "
                    "--out, a summary (summary.parquet/.csv) and a ledger (ledger.sqlite). Re-running skips "
                    "complete cases. Exit 0 if every case is ok, 4 if any failed, 2 for bad input.")
    s.add_argument("inputs", nargs="+", help="scenario files, globs or sweep specs (YAML with a 'base:' key)")
    s.add_argument("--out", type=Path, default=None, help="batch folder (required unless --dry-run)")
    s.add_argument("--paths", type=int, default=None, help="Monte Carlo paths of every case")
    s.add_argument("--seed", type=int, default=None, help="root seed of every case")
    s.add_argument("--chunk-size", type=int, default=None, help="paths per chunk (memory; never changes results)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    g.add_argument("--dask-scheduler", default=None, metavar="ADDR",
                   help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    g.add_argument("--dask-local", type=int, default=None, metavar="N", help="start a Dask LocalCluster of N workers")
    s.add_argument("--dry-run", action="store_true", help="list the cases (name, key, overrides); run nothing")
    s.add_argument("--force", action="store_true", help="re-run cases that are already complete")
    s.add_argument("--quiet", action="store_true", help="no progress or table output")
    s.set_defaults(func=cmd_batch)

    ledger = subparsers.add_parser("ledger", help="list, show or verify a run ledger")
    sub = ledger.add_subparsers(dest="ledger_command", required=True)
    lp = sub.add_parser("list", help="list runs (filters are equality tests)")
    lp.add_argument("ledger", type=Path, help="ledger.sqlite or a batch --out folder")
    for opt in ("status", "scenario", "batch-id", "case-key"):
        lp.add_argument(f"--{opt}", default=None)
    lp.add_argument("--last", type=int, default=None, help="only the last N runs")
    lp.add_argument("--json", action="store_true", help="JSON records instead of a table")
    lp.set_defaults(func=cmd_ledger_list)
    sp = sub.add_parser("show", help="show one run (a unique run_id prefix works)")
    sp.add_argument("ledger", type=Path)
    sp.add_argument("run_id")
    sp.set_defaults(func=cmd_ledger_show)
    vp = sub.add_parser("verify", help="check every hash and link of the chain (exit 1 if broken)")
    vp.add_argument("ledger", type=Path)
    vp.add_argument("--expected-head", default=None, help="record_hash the chain must end at")
    vp.set_defaults(func=cmd_ledger_verify)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m peakplan.batch ARGS`` = ``peakplan batch ARGS``."""
    from peakplan.cli import main as cli_main

    return cli_main(["batch", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
