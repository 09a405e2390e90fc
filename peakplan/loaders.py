"""The only reader of user files: scenario YAML and CSV/Parquet tables.

Every problem is reported with the file, the row (data rows count from 1, the header is
not a row), the column, the value found and the rule broken; all problems of a table are
listed together, not only the first.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from peakplan.config import Scenario, parse_scenario
from peakplan.errors import InputError
from peakplan.schemas import SCHEMAS, TableSchema

__all__ = ["file_sha256", "input_files", "load_scenario", "load_tables", "read_table"]

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (YAML, safe-loaded); table paths resolve beside it."""
    p = Path(path)
    data = read_yaml(p, "scenario")
    if data is None:
        raise InputError(f"{p}: the scenario file is empty; expected a mapping with name, calendar, segments, ...")
    if isinstance(data, dict):
        data = {**data, "base_dir": str(p.resolve().parent)}
    scn = parse_scenario(data, source=str(p))
    for name in ("forecast", "capacity", "levers", "history", "committed"):
        tp = scn.path(name)
        if tp is not None and not tp.exists():
            raise InputError(f"{p}: tables.{name}: file not found: {tp}")
    return scn


def input_files(scn: Scenario) -> dict[str, Path]:
    """The tables a scenario names, by table name."""
    out = {}
    for name in ("forecast", "capacity", "levers", "history", "committed"):
        tp = scn.path(name)
        if tp is not None:
            out[name] = tp
    return out


def _raw(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputError(f"{path}: unsupported table format '{suffix}'; expected .csv or .parquet")
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        else:
            df = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the table is empty; expected a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot parse the table: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # pyarrow errors on corrupt Parquet
        raise InputError(f"{path}: cannot read the table: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _blank(series: pd.Series) -> pd.Series:
    s = series.astype("string")
    return s.isna() | (s.str.strip() == "")


def read_table(path: str | Path, schema: TableSchema | str) -> pd.DataFrame:
    """Read a CSV/Parquet table and validate it against ``schema``.

    Returns a DataFrame with typed columns (``date`` as ``datetime64``, numbers as float or
    Int64, strings stripped) plus a ``_row`` column holding the 1-based data row number.
    Raises :class:`InputError` listing every problem found.
    """
    path = Path(path)
    schema = SCHEMAS[schema] if isinstance(schema, str) else schema
    if not path.exists():
        raise InputError(f"{path}: {schema.name} table not found")
    df = _raw(path)
    name = path.name
    problems: list[str] = []
    known = {c.name for c in schema.columns}
    missing = [c.name for c in schema.columns if c.required and c.name not in df.columns]
    if missing:
        raise InputError(f"{name}: missing required column(s) {missing}; found columns {list(df.columns)}")
    unknown = [c for c in df.columns if c not in known]
    if unknown:
        problems.append(f"{name}: unknown column(s) {unknown}; allowed columns are {sorted(known)}")
    if len(df) == 0:
        raise InputError(f"{name}: the table has a header but no data rows")
    if schema.one_of and not any(all(c in df.columns for c in grp) for grp in schema.one_of):
        groups = " or ".join("(" + ", ".join(g) + ")" for g in schema.one_of)
        raise InputError(f"{name}: needs the columns {groups}; found {list(df.columns)}")
    out = pd.DataFrame({"_row": np.arange(1, len(df) + 1)})
    for col in schema.columns:
        if col.name not in df.columns:
            continue
        raw = df[col.name]
        blank = _blank(raw)
        if col.required:
            for i in np.flatnonzero(blank.to_numpy()):
                problems.append(f"{name} row {i + 1}, column '{col.name}': empty; a value is required")
        if col.dtype == "date":
            if pd.api.types.is_datetime64_any_dtype(raw):
                vals = pd.to_datetime(raw, errors="coerce")
            else:
                vals = pd.to_datetime(raw.astype("string").where(~blank), errors="coerce", format="ISO8601")
            bad = vals.isna() & ~blank
            for i in np.flatnonzero(bad.to_numpy()):
                problems.append(f"{name} row {i + 1}, column '{col.name}': found {raw.iloc[i]!r}; expected an ISO date YYYY-MM-DD")
            out[col.name] = vals.dt.normalize()
        elif col.dtype in ("float", "int"):
            vals = pd.to_numeric(raw.where(~blank), errors="coerce")
            bad = vals.isna() & ~blank
            for i in np.flatnonzero(bad.to_numpy()):
                problems.append(f"{name} row {i + 1}, column '{col.name}': found {raw.iloc[i]!r}; expected a number")
            ok = ~vals.isna()
            if col.dtype == "int":
                frac = ok & (vals != np.round(vals))
                for i in np.flatnonzero(frac.to_numpy()):
                    problems.append(f"{name} row {i + 1}, column '{col.name}': found {raw.iloc[i]!r}; expected a whole number")
            if col.max is not None:
                for i in np.flatnonzero((ok & (vals > col.max)).to_numpy()):
                    problems.append(f"{name} row {i + 1}, column '{col.name}': found {vals.iloc[i]:g}; must be at most {col.max:g}")
            # minimums on demand/capacity are anomaly flags (impossible negatives), others are errors
            if col.min is not None and schema.name in ("levers", "committed"):
                for i in np.flatnonzero((ok & (vals < col.min)).to_numpy()):
                    problems.append(f"{name} row {i + 1}, column '{col.name}': found {vals.iloc[i]:g}; must be at least {col.min:g}")
            out[col.name] = vals.astype(float)
        else:
            vals = raw.astype("string").str.strip()
            if col.choices:
                bad = ~vals.isin(col.choices) & ~blank
                for i in np.flatnonzero(bad.to_numpy()):
                    problems.append(f"{name} row {i + 1}, column '{col.name}': found {raw.iloc[i]!r}; expected one of {list(col.choices)}")
            out[col.name] = vals.where(~blank, None)
    if schema.one_of:
        groups = [g for g in schema.one_of if all(c in out.columns for c in g)]
        have = np.zeros(len(out), dtype=bool)
        for g in groups:
            have |= out[list(g)].notna().all(axis=1).to_numpy()
        for i in np.flatnonzero(~have):
            alts = " or ".join("(" + ", ".join(g) + ")" for g in groups)
            problems.append(f"{name} row {i + 1}: needs values in {alts}")
    if schema.name == "forecast" and not problems:
        problems += _check_quantiles(name, out)
    if schema.name == "levers" and not problems:
        problems += _check_levers(name, out)
    if problems:
        raise InputError(f"{name}: {len(problems)} problem(s) in the {schema.name} table", problems)
    return out


def _where(df: pd.DataFrame, i: int) -> str:
    parts = []
    if "period" in df.columns and pd.notna(df["period"].iloc[i]):
        parts.append(f"period {df['period'].iloc[i].date()}")
    if "segment" in df.columns:
        parts.append(f'segment "{df["segment"].iloc[i]}"')
    return ", ".join(parts)


def _check_quantiles(name: str, df: pd.DataFrame) -> list[str]:
    problems = []
    qs = [q for q in ("p10", "p50", "p90") if q in df.columns]
    for lo, hi in itertools.pairwise(qs):
        bad = (df[hi] < df[lo]).to_numpy()
        for i in np.flatnonzero(bad):
            problems.append(f"{name} row {df['_row'].iloc[i]} ({_where(df, i)}): {hi}={df[hi].iloc[i]:g} is below "
                            f"{lo}={df[lo].iloc[i]:g}; quantiles must increase")
    return problems


def parse_tiers(text: str) -> tuple[tuple[float, float], ...]:
    """Parse ``'up_to@price;up_to@price'`` into ``((up_to, price), ...)``; raise ValueError."""
    steps = []
    for part in str(text).split(";"):
        part = part.strip()
        if not part:
            continue
        upto, _, price = part.partition("@")
        steps.append((float(upto), float(price)))
    if not steps:
        raise ValueError("no steps")
    for (u0, c0), (u1, c1) in itertools.pairwise(steps):
        if u1 <= u0 or c1 < c0:
            raise ValueError("steps must have increasing up_to and non-decreasing prices (a convex curve)")
    return tuple(steps)


def _check_levers(name: str, df: pd.DataFrame) -> list[str]:
    problems = []
    dup = df["name"].duplicated(keep=False).to_numpy()
    for i in np.flatnonzero(dup):
        problems.append(f"{name} row {df['_row'].iloc[i]}, column 'name': lever {df['name'].iloc[i]!r} appears more than once; names must be unique")
    if "tiers" in df.columns:
        for i, t in enumerate(df["tiers"]):
            if t is None or pd.isna(t):
                continue
            try:
                parse_tiers(t)
            except ValueError as exc:
                problems.append(f"{name} row {df['_row'].iloc[i]}, column 'tiers': found {t!r}; {exc} "
                                "(format 'up_to@price;up_to@price')")
    return problems


def read_run_comparison(run_dir: str | Path) -> pd.DataFrame:
    """The comparison table of a written run directory, with a ``run`` column."""
    d = Path(run_dir)
    if not (d / "manifest.json").exists():
        raise InputError(f"{d}: not a run directory (no manifest.json); expected a folder written by `peakplan run`")
    p = d / "comparison.parquet"
    if not p.exists():
        raise InputError(f"{d}: has no comparison.parquet; re-run it with a peakplan that scores plans")
    df = pd.read_parquet(p)
    df.insert(0, "run", d.name)
    return df


def load_tables(scn: Scenario) -> dict[str, pd.DataFrame]:
    """Read and validate every table a scenario names."""
    return {name: read_table(path, name) for name, path in input_files(scn).items()}


def with_base_dir(scn: Scenario, base_dir: str | Path) -> Scenario:
    """A copy of ``scn`` whose table paths resolve against ``base_dir``."""
    return replace(scn, base_dir=str(base_dir))


# ------------------------------------------------------------------------------------
# Raw reads for tools that rewrite inputs before they are validated (peakplan.batch:
# sweep specs, scenario overrides, table-cell overrides)
# ------------------------------------------------------------------------------------
def read_yaml(path: str | Path, what: str) -> object:
    """Safe-load a YAML file as plain data, not validated (``None`` for an empty file).

    ``what`` names the file in messages (``"scenario"``, ``"sweep spec"``); the messages are
    :func:`load_scenario`'s: a missing file, a folder, text that is not UTF-8, and a YAML
    syntax error with its line and column.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: {what} file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder; expected a {what} YAML file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text (byte {exc.start}); save the {what} as UTF-8") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read the {what} file: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{p}:{where}: YAML syntax error: {problem}") from None


def load_sweep_yaml(path: str | Path) -> dict:
    """Read a sweep spec file (YAML: a mapping with a ``base:`` key) as plain data.

    Only the file is checked here (readable, YAML, a mapping); the spec itself is validated
    by :func:`peakplan.batch.load_sweep`.
    """
    p = Path(path)
    data = read_yaml(p, "sweep spec")
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise InputError(f"{p}: a sweep spec is a mapping with a 'base:' key (the scenario to vary) and a grid "
                         f"and/or cases; found {found}")
    return data


def read_raw_table(source: str | Path | bytes, suffix: str | None = None) -> pd.DataFrame:
    """A CSV/Parquet table as stored, not validated: CSV cells as text (blanks as ``''``,
    nothing converted), Parquet with its own types; column names stripped.

    ``source`` is a table file, or the bytes of one held in memory, then with its ``suffix``
    (``.csv``, ``.parquet``, ``.pq``). For tools that rewrite a table and write it back (the
    batch runner's table-cell overrides); :func:`read_table` reads a table to use it.
    """
    if not isinstance(source, bytes):
        p = Path(source)
        if not p.is_file():
            raise InputError(f"{p}: table not found")
        return _raw(p)
    import io

    kind = (suffix or "").lower()
    if kind not in TABLE_SUFFIXES:
        raise InputError(f"table bytes: unsupported table format '{kind}'; expected .csv or .parquet")
    try:
        if kind == ".csv":
            df = pd.read_csv(io.BytesIO(source), dtype=str, keep_default_na=False, skipinitialspace=True)
        else:
            df = pd.read_parquet(io.BytesIO(source))
    except Exception as exc:
        raise InputError(f"table bytes ({kind}): cannot read the table: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0]}") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df
